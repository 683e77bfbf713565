"""The evaluate-steering command: the harness's tables on the terminal and a report folder."""

from __future__ import annotations

import argparse
import json
import shlex
import time

import pandas as pd

from persona_engine.cli.progress import ProgressBars
from persona_engine.errors import DataError


def run_evaluate_steering(args: argparse.Namespace) -> int:
    from persona_engine.evaluation import evaluate_steering, write_report
    from persona_engine.evaluation.report import json_ready, verdict
    from persona_engine.llm import load_llm
    from persona_engine.study import Study

    if args.shuffle_options and args.split != "questions":
        raise DataError("--shuffle-options only applies to questions never asked", expected="--split questions")
    study = Study.load(args.study)
    settings = evaluation_settings(args)
    llm = load_llm(args.model, dtype=args.dtype)
    started = time.perf_counter()
    if args.split == "questions":
        return _run_unseen_questions(args, study, llm, settings, started)
    with ProgressBars(leave=False) as bars:  # many short stages
        result = evaluate_steering(study, llm, settings, progress=bars)
    out = args.out or study.path / "evaluation"
    command = "persona-engine " + " ".join(shlex.quote(a) for a in args.argv)
    write_report(result, out, html=not args.no_html, command=command)
    if args.json:  # NaN is not JSON: unmeasured numbers are null, with a reason
        print(json.dumps(json_ready({"accuracy": result.accuracy.to_dict("records"),
                                     "fold_in": result.fold_in.to_dict("records"),
                                     "alignment_by_cohort": result.alignment_by_cohort().to_dict("records"),
                                     "facts": result.facts}), indent=2, default=str, allow_nan=False))
        return 0
    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.float_format", "{:.3f}".format):
        print("Held-out answers of training respondents (macro accuracy, "
              f"{round(100 * settings.confidence)}% bootstrap interval; {result.facts['held_out']}):")
        print(result.accuracy.drop(columns=["calibrated"]).to_string(index=False))
        if not result.fold_in.empty:
            print("\nUnseen respondents placed from K answers:")
            print(result.fold_in.to_string(index=False))
        by_cohort = result.alignment_by_cohort()
        if not by_cohort.empty:
            print("\nDistribution alignment per cohort (1 = identical):")
            print(by_cohort.pivot(index="method", columns="cohort", values="alignment").to_string())
    print()
    for line in verdict(result):
        print(line.replace("**", ""))
    print(f"\nReport written to {out} in {time.perf_counter() - started:.0f} s.")
    return 0


def _run_unseen_questions(args, study, llm, settings, started: float) -> int:
    from persona_engine.evaluation.report import json_ready
    from persona_engine.evaluation.unseen_harness import evaluate_unseen_questions
    from persona_engine.evaluation.unseen_report import KIM_AND_LEE, verdict, write_unseen_report

    with ProgressBars(leave=False) as bars:
        result = evaluate_unseen_questions(study, llm, settings, n_folds=args.question_folds,
                                           shuffle_options=args.shuffle_options, progress=bars)
    out = args.out or study.path / "evaluation-questions"
    command = "persona-engine " + " ".join(shlex.quote(a) for a in args.argv)
    write_unseen_report(result, out, command=command)
    if args.json:
        print(json.dumps(json_ready({"accuracy": result.accuracy.to_dict("records"),
                                     "alignment_by_cohort": result.alignment_by_cohort().to_dict("records"),
                                     "facts": result.facts}), indent=2, default=str, allow_nan=False))
        return 0
    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.float_format", "{:.3f}".format):
        print(f"Questions never asked ({args.question_folds} folds of whole questions held out; macro accuracy, "
              f"{round(100 * settings.confidence)}% bootstrap interval, AUC, cohort rho):")
        print(result.accuracy.to_string(index=False))
    print(f"({KIM_AND_LEE})\n")
    for line in verdict(result):
        print(line.replace("**", ""))
    print(f"\nReport written to {out} in {time.perf_counter() - started:.0f} s.")
    return 0


def evaluation_settings(args: argparse.Namespace):
    """The :class:`~persona_engine.evaluation.EvaluationSettings` of the options in ``args``."""
    from persona_engine.evaluation import EvaluationSettings
    from persona_engine.evaluation.unseen_harness import TEXT_RESPONDENTS

    from persona_engine.cli.steering_commands import steering_settings

    text_respondents = args.max_text_respondents or (
        str(TEXT_RESPONDENTS) if args.split == "questions" else str(EvaluationSettings.max_text_respondents))
    steering = steering_settings(args, max_examples=_limit(args.train_examples),
                                 max_val_examples=EvaluationSettings.val_examples)
    return EvaluationSettings.for_steering(
        steering, respondent_fraction=args.unseen_fraction, max_respondents=_limit(args.max_respondents),
        max_text_respondents=_limit(text_respondents),
        max_fold_in_respondents=_limit(args.max_fold_in_respondents), n_bootstrap=args.bootstrap,
        weighted=not args.unweighted)


def add_parser(sub, parents) -> None:
    evaluate = sub.add_parser(
        "evaluate-steering", parents=parents,
        help="measure steering like Li et al.: SPM vs text prompts vs non-LLM references",
        description="Split the study's respondents (training / unseen) and each one's answers (seen / held "
                    "out), refit the collaborative filter, cohorts and a soft prompt on the seen answers of the "
                    "training respondents, then score every method on the held-out answers. Prints the tables "
                    "and writes a report folder (Markdown, CSV, plotly HTML, settings). The max-* options "
                    "subsample respondents to bound the time on a CPU ('all' for no limit).")
    evaluate.add_argument("study", metavar="STUDY")
    evaluate.add_argument("--out", default=None, metavar="FOLDER",
                          help="report folder (default STUDY/evaluation)")
    evaluate.add_argument("--split", choices=["answers", "questions"], default="answers",
                          help="hold out answers of each respondent (default, as Li et al.), or whole questions "
                               "in folds, to measure answers to questions the survey never asked (writes "
                               "STUDY/evaluation-questions; the fold-in table is not made)")
    evaluate.add_argument("--question-folds", type=int, default=3, metavar="K",
                          help="with --split questions: folds of questions, one soft prompt trained per fold "
                               "(default 3)")
    evaluate.add_argument("--shuffle-options", action="store_true",
                          help="with --split questions: also ask the SPM and the text prompts with each prompt's "
                               "options in a random order (on the text prompts' respondents); the report shows "
                               "both orders")
    evaluate.add_argument("--unweighted", action="store_true",
                          help="compare each cohort's answer distribution unweighted, even if the study has "
                               "survey weights (the training is never weighted)")
    evaluate.add_argument("--unseen-fraction", type=float, default=0.2,
                          help="share of respondents kept out of all training, for the fold-in table (default 0.2)")
    evaluate.add_argument("--max-respondents", default="800", metavar="N",
                          help="training respondents scored by the SPM and the references (default 800)")
    evaluate.add_argument("--max-text-respondents", default=None, metavar="N",
                          help="of those, respondents also asked with text prompts (default 100; with --split "
                               "questions 60, since each is asked every question)")
    evaluate.add_argument("--max-fold-in-respondents", default="150", metavar="N",
                          help="unseen respondents scored at each K (default 150)")
    evaluate.add_argument("--train-examples", default="20000", metavar="N",
                          help="answers the soft prompt is trained on (default 20000)")
    evaluate.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (default 2000)")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the split, training and bootstrap")
    evaluate.add_argument("--no-html", action="store_true", help="skip the HTML figures (about 5 MB)")
    evaluate.add_argument("--json", action="store_true", help="print the tables as JSON for scripts")
    evaluate.set_defaults(run=run_evaluate_steering)


def _limit(value) -> int | None:
    if value is None or str(value).lower() in ("all", "none"):
        return None
    try:
        number = int(value)
    except ValueError:
        raise SystemExit(f"error: expected a number or 'all', not '{value}'") from None
    return number

