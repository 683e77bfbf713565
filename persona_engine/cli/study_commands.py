"""The study commands: fit, evaluate, profile, info."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import pandas as pd

from persona_engine.cli.progress import ProgressBars
from persona_engine.errors import DataError


def add_parsers(sub, common: argparse.ArgumentParser, data_args: argparse.ArgumentParser) -> None:
    """Register fit, evaluate, profile and info (``common``: every command's options; ``data_args``: reading DATA)."""
    model_args = argparse.ArgumentParser(add_help=False)
    model_args.add_argument("--dim", type=int, default=16, help="embedding dimensions (default 16)")
    model_args.add_argument("--k", default="auto", help="number of cohorts, or 'auto' (default)")
    model_args.add_argument("--cohort-method", default="kmeans", choices=["kmeans", "gmm"],
                            help="clustering method (default kmeans)")
    model_args.add_argument("--cohort-space", default="auto", choices=["auto", "embedding", "answers"],
                            help="find cohorts among the embeddings or the answers; auto (default) "
                                 "picks the one whose cohorts predict held-out answers better")

    fit = sub.add_parser("fit", parents=[common, data_args, model_args],
                         help="embed respondents, find cohorts, draw the map; save a study folder",
                         description="Read DATA, fit embeddings, cohorts and the map, and save a study folder.")
    fit.add_argument("source", metavar="DATA", help="a file, folder or zip (Polis export, wide or long table, Pew "
                                                    "wave, SPSS/Stata/SAS file, Qualtrics export)")
    fit.add_argument("--out", required=True, metavar="STUDY", help="study folder to write")
    fit.add_argument("--model", default="softmax", choices=["softmax", "paper"],
                     help="collaborative filter: softmax (default) or the paper's MSE factorization")
    fit.add_argument("--min-cohort-size", type=int, default=None, help="smallest allowed cohort")
    fit.add_argument("--map-3d", action="store_true", help="also lay out a 3-D map")
    fit.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    fit.set_defaults(run=run_fit)

    evaluate = sub.add_parser(
        "evaluate", parents=[common, data_args, model_args],
        help="print the held-out quality table (majority, paper MF, default model, cohort majority)",
        description="Hide 20% of each respondent's answers (respondents with at least 5), predict them, "
                    "and print per-respondent macro accuracy for each method.")
    evaluate.add_argument("source", metavar="DATA|STUDY", help="input data, or a study folder")
    evaluate.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4],
                          help="split seeds to average over (default 0 1 2 3 4)")
    evaluate.add_argument("--json", action="store_true", help="print JSON for scripts")
    evaluate.set_defaults(run=run_evaluate)

    profile = sub.add_parser("profile", parents=[common], help="print cohort profiles",
                             description="Print each cohort's size, label, distinctive answers and consensus.")
    profile.add_argument("study", metavar="STUDY")
    profile.add_argument("--cohort", type=int, default=None, help="only this cohort")
    profile.add_argument("--top", type=int, default=5, help="how many answers/questions to list (default 5)")
    profile.add_argument("--unweighted", action="store_true",
                         help="ignore the survey weights (by default a study's weights weigh every share)")
    profile.set_defaults(run=run_profile)

    info = sub.add_parser("info", parents=[common], help="summarise a study folder",
                          description="Print what a study holds and how it was made.")
    info.add_argument("study", metavar="STUDY")
    info.add_argument("--json", action="store_true", help="print the summary and manifest as JSON")
    info.set_defaults(run=run_info)


def run_fit(args: argparse.Namespace) -> int:
    from persona_engine.study import fit_study

    data = _read_data(args)
    print(f"Read {data!r}", file=sys.stderr)
    with ProgressBars() as bars:
        study = fit_study(
            data, model=args.model, dim=args.dim, n_cohorts=_k(args.k),
            cohort_method=args.cohort_method, cohort_space=args.cohort_space, min_cohort_size=args.min_cohort_size,
            map_3d=args.map_3d, random_state=args.seed, progress=bars,
        )
    study.save(args.out)
    summary = study.summary()
    print(f"Saved study to {args.out}: {summary['respondents']} respondents, "
          f"{summary['questions']} questions, {summary['cohorts']} cohorts "
          f"(sizes {summary['cohort_sizes']})")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from persona_engine.evaluation.quality_table import paired_difference, quality_table

    source = Path(args.source)
    if (source / "manifest.json").is_file():
        from persona_engine.study import Study

        study = Study.load(source)
        data, parameters = study.data, study.manifest.get("parameters", {})
    else:
        data = _read_data(args)
        parameters = {"dim": args.dim, "n_cohorts": _k(args.k), "cohort_method": args.cohort_method,
                      "cohort_space": args.cohort_space}
    with ProgressBars() as bars:
        table = quality_table(data, parameters, seeds=args.seeds, progress=bars)
    paired = paired_difference(table)
    one_split = not math.isfinite(paired["standard_error"])
    if args.json:
        from persona_engine.evaluation.report import json_ready

        paired_json = {**paired, "standard_error": None if one_split else paired["standard_error"]}
        print(json.dumps(json_ready({"data": data.summary(), "held_out": table.attrs.get("held_out", ""),
                                     "results": table.to_dict(orient="records"),
                                     "our_cohorts_minus_polis": paired_json}), indent=2, allow_nan=False))
    else:
        print(f"Held-out macro accuracy on {data.source.name} "
              f"({int(table['respondents'].iloc[0])} respondents scored, "
              f"{table.attrs.get('held_out', '')}, seeds {args.seeds}):")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        spread = "" if one_split else f" ± {paired['standard_error']:.4f} (one s.e.)"
        print(f"our cohorts − Polis cohorts, paired by split: {paired['mean']:+.4f}{spread}; "
              f"ahead on {paired['wins']}, level on {paired['ties']} of {paired['splits']} splits")
    return 0


def run_profile(args: argparse.Namespace) -> int:
    from persona_engine.cohorts.distinctive import consensus_questions, distinctive_answers
    from persona_engine.cohorts.profiles import cohort_overview, metadata_composition
    from persona_engine.cohorts.statistics import weighting_note
    from persona_engine.study import Study

    study = Study.load(args.study)
    if args.cohort is not None and not 0 <= args.cohort < study.n_cohorts:
        raise DataError(f"no cohort {args.cohort}", expected=f"0 to {study.n_cohorts - 1}")
    cohorts = range(study.n_cohorts) if args.cohort is None else [args.cohort]
    data, labels, weighted = study.data, study.labels, not args.unweighted
    note = weighting_note(data, weighted)
    overview = cohort_overview(data, labels, weighted=weighted).merge(
        study.stability[["cohort", "jaccard"]].rename(columns={"jaccard": "stability"}), on="cohort")
    distinctive = distinctive_answers(data, labels, top=args.top, weighted=weighted)
    composition = metadata_composition(data, labels, weighted=weighted)
    with pd.option_context("display.max_colwidth", 60, "display.width", 160):
        print(f"Cohorts ({note}; size counts respondents)")
        print(overview.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
        print("(stability: Jaccard of the cohort with its best match in bootstrap refits; "
              "above 0.75 stable, below 0.5 it dissolves)")
        for cohort in cohorts:
            print(f"\nCohort {cohort}: most distinctive answers ({note})")
            print(distinctive[distinctive["cohort"] == cohort].drop(columns="cohort").to_string(index=False))
            if not composition.empty:
                print(f"Cohort {cohort}: who is in it (share or mean in the cohort vs everyone, {note})")
                mix = _top_categories(composition[composition["cohort"] == cohort], per_column=3)
                print(mix.drop(columns="cohort").to_string(index=False, float_format=lambda v: f"{v:.2f}"))
        if args.cohort is None:
            print(f"\nConsensus questions (every cohort leans the same way; {note})")
            consensus = consensus_questions(data, labels, weighted=weighted)
            print(consensus.head(args.top).to_string(index=False))
    return 0


def _top_categories(composition: pd.DataFrame, per_column: int) -> pd.DataFrame:
    """Per metadata column, the categories most over-represented in the cohort (means as they are)."""
    composition = composition[composition["statistic"].isin(["share", "mean"])]
    lift = composition["value"] - composition["overall"]
    return (composition.assign(lift=lift).sort_values("lift", ascending=False)
            .groupby("column", sort=False).head(per_column).sort_values(["column", "lift"], ascending=[True, False])
            .drop(columns="lift"))


def run_info(args: argparse.Namespace) -> int:
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

