"""``persona-engine``: the command-line face of the package.

Every command is a thin layer over a package function, so the CLI, the app and
a notebook do the same thing. Errors in the user's input print one line and
exit with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from persona_engine.errors import DataError


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return args.run(args) or 0
    except DataError as error:
        if args.debug:
            raise
        print(f"persona-engine: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("persona-engine: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # an unexpected failure still gets one readable line
        if args.debug:
            raise
        print(f"persona-engine: unexpected error: {type(error).__name__}: {error} "
              "(run again with --debug for details)", file=sys.stderr)
        return 1


# ----------------------------------------------------------------- commands
def _fit(args: argparse.Namespace) -> int:
    from persona_engine.study import fit_study

    data = _read_data(args)
    print(f"Read {data!r}", file=sys.stderr)
    with _StageBars() as bars:
        study = fit_study(
            data, model=args.model, dim=args.dim, n_cohorts=_k(args.k),
            cohort_method=args.cohort_method, min_cohort_size=args.min_cohort_size,
            random_state=args.seed, progress=bars,
        )
    study.save(args.out)
    summary = study.summary()
    print(f"Saved study to {args.out}: {summary['respondents']} respondents, "
          f"{summary['questions']} questions, {summary['cohorts']} cohorts "
          f"(sizes {summary['cohort_sizes']})")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from persona_engine.quality import quality_table

    source = Path(args.source)
    if (source / "manifest.json").is_file():
        from persona_engine.study import Study

        study = Study.load(source)
        data, params = study.data, study.manifest.get("parameters", {})
        dim = params.get("dim", args.dim)
        cohort_method = params.get("cohort_method", args.cohort_method)
        n_cohorts = params.get("n_cohorts", _k(args.k))
    else:
        data, dim, cohort_method, n_cohorts = _read_data(args), args.dim, args.cohort_method, _k(args.k)
    with _StageBars() as bars:
        table = quality_table(
            data, dim=dim, n_cohorts=n_cohorts, cohort_method=cohort_method,
            seeds=args.seeds, progress=bars,
        )
    if args.json:
        print(json.dumps({"data": data.summary(), "results": table.to_dict(orient="records")}, indent=2))
    else:
        print(f"Held-out macro accuracy on {data.source.name} "
              f"({int(table['respondents'].iloc[0])} respondents scored, "
              f"20% of each respondent's answers hidden, seeds {args.seeds}):")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


def _profile(args: argparse.Namespace) -> int:
    from persona_engine.profiles import cohort_overview, distinctive_answers, consensus_questions
    from persona_engine.study import Study

    study = Study.load(args.study)
    overview = cohort_overview(study.data, study.labels)
    cohorts = range(study.n_cohorts) if args.cohort is None else [args.cohort]
    if args.cohort is not None and not 0 <= args.cohort < study.n_cohorts:
        raise DataError(f"no cohort {args.cohort}", expected=f"0 to {study.n_cohorts - 1}")
    with pd.option_context("display.max_colwidth", 60, "display.width", 160):
        print(overview.to_string(index=False))
        distinctive = distinctive_answers(study.data, study.labels, top=args.top)
        for cohort in cohorts:
            print(f"\nCohort {cohort}: most distinctive answers")
            print(distinctive[distinctive["cohort"] == cohort].drop(columns="cohort").to_string(index=False))
        if args.cohort is None:
            print("\nConsensus questions (every cohort leans the same way)")
            print(consensus_questions(study.data, study.labels).head(args.top).to_string(index=False))
    return 0


def _info(args: argparse.Namespace) -> int:
    from persona_engine.study import Study

    study = Study.load(args.study)
    summary = study.summary()
    if args.json:
        print(json.dumps({**summary, "manifest": study.manifest}, indent=2, default=str))
    else:
        width = max(len(k) for k in summary)
        for key, value in summary.items():
            print(f"{key:<{width}}  {value}")
    return 0


# ------------------------------------------------------------------ helpers
def _read_data(args: argparse.Namespace):
    from persona_engine.ingest import read_opinions

    return read_opinions(args.source, codebook=args.codebook, format=args.format)


def _k(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        k = int(value)
    except ValueError:
        raise DataError(f"--k must be 'auto' or a whole number, got '{value}'") from None
    if k < 1:
        raise DataError(f"--k must be at least 1, got {k}")
    return k


class _StageBars:
    """tqdm bars for ``progress(stage, step, total)`` callbacks, one bar per stage."""

    def __enter__(self):
        self._bars = {}
        return self

    def __call__(self, stage: str, step: int, total: int) -> None:
        from tqdm.auto import tqdm

        bar = self._bars.get(stage)
        if bar is None:
            for other in self._bars.values():  # stages run one after another
                other.close()
            bar = self._bars[stage] = tqdm(total=total, desc=stage, file=sys.stderr)
        if bar.total != total:
            bar.total = total
        bar.n = step
        bar.refresh()

    def __exit__(self, *exc):
        for bar in self._bars.values():
            bar.close()
        return False


def _build_parser() -> argparse.ArgumentParser:
    from persona_engine import __version__

    parser = argparse.ArgumentParser(
        prog="persona-engine",
        description="Find latent opinion cohorts in survey data and steer a language model toward them.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show a traceback on error")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", dest="command")

    data_args = argparse.ArgumentParser(add_help=False)
    data_args.add_argument("--codebook", help="codebook file (CSV or JSON) with question text and option order")
    data_args.add_argument("--format", default="auto", choices=["auto", "polis", "wide", "long", "pew"],
                           help="input format (default: detected)")
    model_args = argparse.ArgumentParser(add_help=False)
    model_args.add_argument("--dim", type=int, default=16, help="embedding dimensions (default 16)")
    model_args.add_argument("--k", default="auto", help="number of cohorts, or 'auto' (default)")
    model_args.add_argument("--cohort-method", default="kmeans", choices=["kmeans", "gmm"],
                            help="clustering method (default kmeans)")

    fit = sub.add_parser("fit", parents=[common, data_args, model_args],
                         help="embed respondents, find cohorts, draw the map; save a study folder",
                         description="Read DATA, fit embeddings, cohorts and the map, and save a study folder.")
    fit.add_argument("source", metavar="DATA", help="a file, folder or zip (Polis export, wide or long table, Pew wave)")
    fit.add_argument("--out", required=True, metavar="STUDY", help="study folder to write")
    fit.add_argument("--model", default="softmax", choices=["softmax", "paper"],
                     help="collaborative filter: softmax (default) or the paper's MSE factorization")
    fit.add_argument("--min-cohort-size", type=int, default=None, help="smallest allowed cohort")
    fit.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    fit.set_defaults(run=_fit)

    evaluate = sub.add_parser(
        "evaluate", parents=[common, data_args, model_args],
        help="print the held-out quality table (majority, paper MF, default model, cohort majority)",
        description="Hide 20%% of each respondent's answers (respondents with at least 5), predict them, "
                    "and print per-respondent macro accuracy for each method.")
    evaluate.add_argument("source", metavar="DATA|STUDY", help="input data, or a study folder")
    evaluate.add_argument("--seeds", type=int, nargs="+", default=[0], help="split seeds to average over")
    evaluate.add_argument("--json", action="store_true", help="print JSON for scripts")
    evaluate.set_defaults(run=_evaluate)

    profile = sub.add_parser("profile", parents=[common], help="print cohort profiles",
                             description="Print each cohort's size, label, distinctive answers and consensus.")
    profile.add_argument("study", metavar="STUDY")
    profile.add_argument("--cohort", type=int, default=None, help="only this cohort")
    profile.add_argument("--top", type=int, default=5, help="how many answers/questions to list (default 5)")
    profile.set_defaults(run=_profile)

    info = sub.add_parser("info", parents=[common], help="summarise a study folder",
                          description="Print what a study holds and how it was made.")
    info.add_argument("study", metavar="STUDY")
    info.add_argument("--json", action="store_true", help="print the summary and manifest as JSON")
    info.set_defaults(run=_info)
    return parser


if __name__ == "__main__":
    sys.exit(main())
