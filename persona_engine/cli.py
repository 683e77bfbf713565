"""``persona-engine``: the command-line face of the package.

Every command is a thin layer over a package function, so the CLI, the app and
a notebook do the same thing. Errors in the user's input print one line and
exit with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
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
    except BrokenPipeError:  # output piped into `head` and cut short: not an error
        sys.stdout = open(os.devnull, "w")
        return 0
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
            map_3d=args.map_3d, random_state=args.seed, progress=bars,
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
    from persona_engine.profiles import (
        cohort_overview, consensus_questions, distinctive_answers, metadata_composition,
    )
    from persona_engine.study import Study

    study = Study.load(args.study)
    if args.cohort is not None and not 0 <= args.cohort < study.n_cohorts:
        raise DataError(f"no cohort {args.cohort}", expected=f"0 to {study.n_cohorts - 1}")
    cohorts = range(study.n_cohorts) if args.cohort is None else [args.cohort]
    overview = cohort_overview(study.data, study.labels).merge(
        study.stability[["cohort", "jaccard"]].rename(columns={"jaccard": "stability"}), on="cohort")
    distinctive = distinctive_answers(study.data, study.labels, top=args.top)
    composition = metadata_composition(study.data, study.labels)
    with pd.option_context("display.max_colwidth", 60, "display.width", 160):
        print(overview.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
        print("(stability: Jaccard of the cohort with its best match in bootstrap refits; "
              "above 0.75 stable, below 0.5 it dissolves)")
        for cohort in cohorts:
            print(f"\nCohort {cohort}: most distinctive answers")
            print(distinctive[distinctive["cohort"] == cohort].drop(columns="cohort").to_string(index=False))
            if not composition.empty:
                print(f"Cohort {cohort}: who is in it (share or mean in the cohort vs everyone)")
                mix = _top_categories(composition[composition["cohort"] == cohort], per_column=3)
                print(mix.drop(columns="cohort").to_string(index=False, float_format=lambda v: f"{v:.2f}"))
        if args.cohort is None:
            print("\nConsensus questions (every cohort leans the same way)")
            print(consensus_questions(study.data, study.labels).head(args.top).to_string(index=False))
    return 0


def _top_categories(composition: pd.DataFrame, per_column: int) -> pd.DataFrame:
    """Per metadata column, the categories most over-represented in the cohort (means as they are)."""
    composition = composition[composition["statistic"].isin(["share", "mean"])]
    lift = composition["value"] - composition["overall"]
    return (composition.assign(lift=lift).sort_values("lift", ascending=False)
            .groupby("column", sort=False).head(per_column).sort_values(["column", "lift"], ascending=[True, False])
            .drop(columns="lift"))


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


def _train_steering(args: argparse.Namespace) -> int:
    from persona_engine.steer.study_steering import estimate_steering_seconds, train_steering
    from persona_engine.study import Study

    study = Study.load(args.study)
    llm = _load_llm(args.model, args.dtype)
    options = dict(kind=args.kind, n_virtual_tokens=args.virtual_tokens, epochs=args.epochs,
                   batch_size=args.batch_size, lr=args.lr, max_examples=args.max_examples,
                   words_share=args.words_share, random_state=args.seed, resume=args.resume)
    print(f"Timing two training steps of {llm.name} ({str(llm.dtype).removeprefix('torch.')}, "
          f"{llm.device})...", file=sys.stderr)
    seconds = estimate_steering_seconds(study, llm, **options)
    print(f"Training the soft prompt should take about {_duration(seconds)}. "
          "Ctrl-C stops early and keeps the best weights so far.", file=sys.stderr)
    cancel = threading.Event()
    with _StepBar("steering") as bar, _cancel_on_interrupt(cancel):
        _, result = train_steering(study, llm, progress=bar, cancel=cancel, **options)
    checked = [h for h in result.history if h["val_loss"] == result.best_val_loss]
    scores = (f", validation loss {result.best_val_loss:.3f}, letter accuracy {checked[0]['val_accuracy']:.3f}"
              if checked else "")
    print(f"Saved the soft prompt to {study.steering_path}: {result.steps} steps on {result.n_train} "
          f"answers ({result.stopped}){scores}")
    if result.stopped == "cancelled":
        print("Stopped early; continue with --resume.", file=sys.stderr)
        return 130
    return 0


def _ask(args: argparse.Namespace) -> int:
    from persona_engine.personas import predicted_answers
    from persona_engine.steer import answer

    study, persona = _study_and_persona(args)
    question, in_study = _question(study, args.question, args.options)
    llm, soft_prompt = _steered_llm(study, args)
    table = pd.DataFrame({
        "option": question.options,
        "steered": answer(llm, question, soft_prompt, persona.vector, strength=args.strength),
        "unsteered": answer(llm, question),
    })
    if in_study:  # what the collaborative filter expects, for comparison
        predicted = predicted_answers(study, persona)
        table["predicted"] = predicted.loc[predicted["question_id"] == question.id, "probabilities"].iloc[0]
    if args.json:
        print(json.dumps({"persona": persona.name, "strength": args.strength, "question": question.text,
                          "question_id": question.id if in_study else None,
                          "distributions": table.to_dict(orient="list")}, indent=2))
        return 0
    print(f"{persona.name}, strength {args.strength:g}: {question.text}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


def _chat(args: argparse.Namespace) -> int:
    from persona_engine.steer import chat

    study, persona = _study_and_persona(args)
    llm, soft_prompt = _steered_llm(study, args)
    interactive = sys.stdin.isatty()
    print(f"Chatting with {persona.name} (strength {args.strength:g}) through {llm.name}. "
          "/quit or end of input leaves; Ctrl-C stops a reply.", file=sys.stderr)
    messages: list[dict] = []
    while True:
        try:
            line = input("you> " if interactive else "")
        except EOFError:
            break
        text = line.strip()
        if text in ("/quit", "/exit"):
            break
        if not text:
            continue
        messages.append({"role": "user", "content": text})
        pieces: list[str] = []
        if interactive:
            print(f"{persona.name}> ", end="", flush=True)
        try:
            for piece in chat(llm, messages, soft_prompt, persona.vector, system=args.system,
                              strength=args.strength, max_new_tokens=args.max_new_tokens,
                              temperature=args.temperature, random_state=args.seed):
                pieces.append(piece)
                print(piece, end="", flush=True)
        except KeyboardInterrupt:  # stops this reply, not the conversation
            pieces.append(" ...")
        print(flush=True)
        messages.append({"role": "assistant", "content": "".join(pieces)})
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


def _load_llm(model: str | None, dtype: str | None):
    from persona_engine.llm import load_llm

    return load_llm(model, dtype=dtype)


def _steered_llm(study, args: argparse.Namespace):
    """The study's soft prompt and the LLM it was trained for (unless ``--model`` names another)."""
    from persona_engine.llm import DEFAULT_MODEL
    from persona_engine.steer.study_steering import load_steering, steering_base_model

    model = args.model or steering_base_model(study)  # fails fast if the study has no soft prompt
    try:
        llm = _load_llm(model, args.dtype)
    except DataError as error:
        if args.model or model == DEFAULT_MODEL:
            raise
        raise DataError(f"the soft prompt was trained for '{model}', which cannot be loaded by that name "
                        f"({error.message})", expected="--model with that model's folder or id") from None
    return llm, load_steering(study, llm)


def _study_and_persona(args: argparse.Namespace):
    from persona_engine.personas import cohort_persona, map_point_persona, parse_point, respondent_persona
    from persona_engine.study import Study

    study = Study.load(args.study)
    if args.respondent is not None:
        persona = respondent_persona(study, args.respondent)
    elif args.cohort is not None:
        persona = cohort_persona(study, args.cohort)
    else:
        persona = map_point_persona(study, parse_point(args.point))
        distance = persona.details["distance_to_data"]
        if distance > 2:
            print(f"Note: {persona.name} is {distance:.1f} kernel widths from the nearest respondent; "
                  "the persona there is an extrapolation.", file=sys.stderr)
    return study, persona


def _question(study, text: str, options: str | None):
    """The study question whose id or text is ``text``, or a new one with ``options`` ('a|b|c')."""
    from persona_engine.opinion_data import Question

    wanted = text.strip().casefold()
    if options is None:
        for question in study.data.questions:
            if wanted in (question.id.casefold(), question.text.strip().casefold()):
                return question, True
        raise DataError(f"'{text}' is not a question of this study",
                        expected="a question id or text from the study, or --options 'a|b|c'")
    labels = tuple(o.strip() for o in options.split("|") if o.strip())
    if len(labels) < 2:
        raise DataError(f"--options '{options}'", expected="two or more options separated by |")
    return Question(id="asked", text=text.strip(), options=labels, ordinal=False), False


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@contextlib.contextmanager
def _cancel_on_interrupt(cancel: threading.Event):
    """The first Ctrl-C sets ``cancel`` (training stops after the step); a second one aborts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        print("\nStopping after this step (Ctrl-C again aborts; the checkpoint stays for --resume)...",
              file=sys.stderr)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class _StepBar:
    """A tqdm bar for ``progress(step, total, info)`` callbacks, showing the loss."""

    def __init__(self, desc: str) -> None:
        self.desc = desc

    def __enter__(self):
        self._bar = None
        return self

    def __call__(self, step: int, total: int, info: dict) -> None:
        from tqdm.auto import tqdm

        if self._bar is None:
            self._bar = tqdm(total=total, desc=self.desc, unit="step", file=sys.stderr)
        shown = {k: f"{info[k]:.3f}" for k in ("loss", "val_loss", "val_accuracy") if k in info}
        self._bar.set_postfix(shown, refresh=False)
        self._bar.update(step - self._bar.n)

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.close()
        return False


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
    fit.add_argument("--map-3d", action="store_true", help="also lay out a 3-D map")
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

    llm_args = argparse.ArgumentParser(add_help=False)
    llm_args.add_argument("--model", default=None, metavar="HF_ID_OR_FOLDER",
                          help="base language model: a Hugging Face id in the local cache or a model folder "
                               "(default: SmolLM2-135M-Instruct for training, the trained-for model otherwise)")
    llm_args.add_argument("--dtype", default=None, choices=["float32", "bfloat16"],
                          help="weights' number format (default float32 on CPU, bfloat16 on a GPU)")

    train = sub.add_parser(
        "train-steering", parents=[common, llm_args],
        help="train the soft prompt that steers the LLM toward any persona of a study",
        description="Train the soft-prompting model on the study's training answers (20%% of each "
                    "respondent's answers stay held out) and save it in STUDY/steering. Prints a time "
                    "estimate first; Ctrl-C stops early and keeps the best weights so far.")
    train.add_argument("study", metavar="STUDY")
    train.add_argument("--kind", default=None, choices=["prefix", "prompt"],
                       help="prefix tuning (the paper's, default) or prompt tuning")
    train.add_argument("--virtual-tokens", type=int, default=1, help="virtual tokens (default 1)")
    train.add_argument("--epochs", type=float, default=1.0, help="passes over the answers (default 1)")
    train.add_argument("--max-examples", type=int, default=None, metavar="N",
                       help="train on a random subsample of N answers (faster on a CPU)")
    train.add_argument("--batch-size", type=int, default=16, help="answers per step (default 16)")
    train.add_argument("--lr", type=float, default=1e-2, help="learning rate (default 0.01)")
    train.add_argument("--words-share", type=float, default=0.0,
                       help="share of answers taught as a sentence instead of a letter (default 0)")
    train.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    train.add_argument("--resume", action="store_true",
                       help="continue from the saved soft prompt (or an interrupted run's checkpoint)")
    train.set_defaults(run=_train_steering)

    persona_args = argparse.ArgumentParser(add_help=False)
    who = persona_args.add_argument_group("persona (choose one)").add_mutually_exclusive_group(required=True)
    who.add_argument("--respondent", metavar="ID", help="a respondent's id")
    who.add_argument("--cohort", type=int, metavar="N", help="a cohort's number (its centroid)")
    who.add_argument("--point", metavar="X,Y", help="a point of the map (write --point=-1,2 for a negative X)")
    persona_args.add_argument("--strength", type=float, default=1.0,
                              help="0 unsteered, 1 as trained (default), above 1 exaggerated")

    ask = sub.add_parser(
        "ask", parents=[common, llm_args, persona_args],
        help="ask a persona one question; print its answer distribution",
        description="Print the steered and unsteered LLM's probability of each option (and, for a study "
                    "question, the collaborative filter's prediction).")
    ask.add_argument("study", metavar="STUDY")
    ask.add_argument("question", metavar="QUESTION", help="a study question's id or text, or any question")
    ask.add_argument("--options", metavar="'A|B|C'", help="options of a question that is not in the study")
    ask.add_argument("--json", action="store_true", help="print JSON for scripts")
    ask.set_defaults(run=_ask)

    talk = sub.add_parser(
        "chat", parents=[common, llm_args, persona_args], help="chat with a persona",
        description="Talk with the LLM steered toward a persona, one line per message; replies stream as "
                    "they are generated. Reads piped input too. /quit or end of input leaves.")
    talk.add_argument("study", metavar="STUDY")
    talk.add_argument("--system", default=None, help="a system prompt (default: the model's own)")
    talk.add_argument("--max-new-tokens", type=int, default=200, help="longest reply in tokens (default 200)")
    talk.add_argument("--temperature", type=float, default=0.7, help="sampling temperature; 0 is greedy")
    talk.add_argument("--seed", type=int, default=None, help="random seed for sampling")
    talk.set_defaults(run=_chat)
    return parser


if __name__ == "__main__":
    sys.exit(main())
