"""The codebook command: write out the codebook a reading of DATA used, to edit and pass back."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``persona-engine codebook`` (``parents``: the common and data options)."""
    codebook = sub.add_parser(
        "codebook", parents=parents, help="print the codebook inferred for DATA, as JSON",
        description="Read DATA as fit would and print the codebook that reading used, in the JSON form "
                    "--codebook reads: each question's text, options in order, codes and missing codes, and "
                    "the id, weight, metadata and ignored columns. For an SPSS, Stata or SAS file or a "
                    "Qualtrics export it is the one the file carries. Edit it and pass it back with "
                    "--codebook; unchanged, it reads DATA exactly as before.")
    codebook.add_argument("source", metavar="DATA", help="a table, an SPSS/Stata/SAS file or a Qualtrics export")
    codebook.add_argument("--out", "-o", metavar="FILE", default=None,
                          help="write the codebook to FILE instead of standard output")
    codebook.set_defaults(run=run_codebook)


def run_codebook(args: argparse.Namespace) -> int:
    from persona_engine.ingest import codebook_text, infer_codebook

    text = codebook_text(infer_codebook(args.source, codebook=args.codebook, format=args.format))
    if args.out is None:
        sys.stdout.write(text)
    else:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"Wrote the codebook of {args.source} to {args.out}", file=sys.stderr)
    return 0
