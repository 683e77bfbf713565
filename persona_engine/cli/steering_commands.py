"""The soft prompt's training command: train-steering, which also keeps, discards or restores a saved model."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading

from persona_engine.cli.options import STEERING, count_or_all, shown
from persona_engine.cli.progress import ProgressBars
from persona_engine.errors import DataError


def add_parsers(sub, common: argparse.ArgumentParser, llm_args: argparse.ArgumentParser,
                spm_args: argparse.ArgumentParser) -> None:
    """Register train-steering (``common``, ``llm_args``, ``spm_args``: shared options)."""
    _add_train_parser(sub, [common, llm_args, spm_args])


def _add_train_parser(sub, parents: list[argparse.ArgumentParser]) -> None:
    train = sub.add_parser(
        "train-steering", parents=parents,
        help="train the soft prompt that steers the LLM toward any persona of a study",
        description="Train the soft-prompting model on the study's training answers (20% of each "
                    "respondent's answers stay held out). Prints a time estimate first (from earlier runs' "
                    "speed, else two timed steps). A run that finishes and beats each question's majority "
                    "answer on its validation answers is installed in STUDY/steering, the model it replaces "
                    "kept in STUDY/steering.previous; any other run is saved as STUDY/steering.candidate and "
                    "the installed model stays. Ctrl-C stops within a step and saves the best weights so far "
                    "as the candidate. Exit status: 0 installed, 1 saved as the candidate only, 130 after "
                    "Ctrl-C.")
    train.add_argument("study", metavar="STUDY")
    train.add_argument("--max-examples", type=count_or_all, default=STEERING.max_examples, metavar="N|all",
                       help="train on a random subsample of N answers "
                            f"(default {shown(STEERING.max_examples, 'all')})")
    train.add_argument("--seed", type=int, default=STEERING.random_state,
                       help=f"random seed (default {STEERING.random_state})")
    train.add_argument("--resume", action="store_true",
                       help="continue a crashed run's checkpoint, else the candidate, else the installed model")
    train.add_argument("--keep", action="store_true",
                       help="if Ctrl-C stops the run, install its best weights anyway, provided they beat each "
                            "question's majority answer on the validation answers")
    instead = train.add_mutually_exclusive_group()
    instead.add_argument("--keep-candidate", action="store_true",
                         help="do not train: install the candidate, only if it beats each question's majority "
                              "answer (the installed model becomes the previous)")
    instead.add_argument("--discard-candidate", action="store_true", help="do not train: delete the candidate")
    instead.add_argument("--restore-previous", action="store_true",
                         help="do not train: put the previous model back (the installed one becomes the previous)")
    train.set_defaults(run=run_train_steering)


def run_train_steering(args: argparse.Namespace) -> int:
    """Train, then install the run or save it as the candidate; or keep, discard or restore a saved model.

    Exit status: 0 when a model was installed (or a candidate discarded), 1
    when the run was only saved as the candidate, 130 after Ctrl-C.
    """
    from persona_engine.llm import load_llm
    from persona_engine.steer.study_steering import estimate_steering_seconds, train_steering
    from persona_engine.study import Study

    study = Study.load(args.study)
    if args.keep_candidate or args.discard_candidate or args.restore_previous:
        return _change_installed_model(study, args)
    llm = load_llm(args.model, dtype=args.dtype)
    settings = steering_settings(args, max_examples=args.max_examples)
    # --kind only when given: a resumed run keeps the saved model's otherwise
    options = dict(resume=args.resume, kind=args.kind)
    print(f"Estimating the training time of {llm.name} ({str(llm.dtype).removeprefix('torch.')}, "
          f"{llm.device})...", file=sys.stderr)
    seconds = estimate_steering_seconds(study, llm, settings, **options)
    after_ctrl_c = ("--keep installs them if they beat each question's majority answer" if args.keep
                    else "the installed model stays")
    print(f"Training the soft prompt should take about {_duration(seconds)}. Ctrl-C stops within a step and "
          f"saves the best weights so far as a candidate ({after_ctrl_c}).", file=sys.stderr)
    cancel = threading.Event()
    with ProgressBars(unit="step") as bar, _cancel_on_interrupt(cancel):
        _, result = train_steering(study, llm, settings, progress=bar, cancel=cancel, **options)
    return _report_run(study, result, keep=args.keep)


def _report_run(study, result, *, keep: bool) -> int:
    """Say where the run went (installed, or the candidate and why); with ``keep``, keep a cancelled run."""
    from persona_engine.steer.steering_folder import keep_candidate, steering_status

    status = steering_status(study)
    done = f"{result.steps} steps on {result.n_train} answers ({result.stopped})"
    if status.candidate is not None and result.stopped == "cancelled" and keep:
        try:
            keep_candidate(study)
        except DataError as error:
            print(f"persona-engine: --keep: {error}", file=sys.stderr)
        else:
            status = steering_status(study)
    if status.candidate is None:
        print(f"Installed the soft prompt in {study.steering_path}: {done}; {status.active.summary()}")
        if status.previous is not None:
            print(f"The model it replaced is kept in {status.previous.folder} (--restore-previous puts it back).",
                  file=sys.stderr)
        return 0
    candidate = status.candidate
    print(f"Saved the run as a candidate in {candidate.folder}, not installed: {candidate.why_not_installed} "
          f"({done})." + (f" Its {candidate.summary()}." if result.stopped == "cancelled" else ""))
    print("Continue it with --resume; install it with --keep-candidate (only if it beats each question's "
          "majority answer); delete it with --discard-candidate.", file=sys.stderr)
    return 130 if result.stopped == "cancelled" else 1


def _change_installed_model(study, args: argparse.Namespace) -> int:
    """--keep-candidate, --discard-candidate or --restore-previous, without training."""
    from persona_engine.steer.steering_folder import discard_candidate, keep_candidate, restore_previous

    if args.keep_candidate:
        score = keep_candidate(study)
        print(f"Installed the candidate in {score.folder}: {score.summary()}")
    elif args.discard_candidate:
        print("Discarded the candidate." if discard_candidate(study) else "There was no candidate to discard.")
    else:
        score = restore_previous(study)
        print(f"Restored the previous soft prompt in {score.folder}: {score.summary()}")
    return 0


def steering_settings(args: argparse.Namespace, **others):
    """The :class:`~persona_engine.steer.settings.SteeringSettings` of the soft-prompt options in ``args``.

    ``others``: settings the command has its own option for (``max_examples``...).
    """
    from persona_engine.steer.settings import SteeringSettings

    return SteeringSettings(
        kind=args.kind or SteeringSettings.kind, n_virtual_tokens=args.virtual_tokens, placement=args.placement,
        steps=args.steps, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, schedule=args.schedule,
        words_share=args.words_share, teacher_weight=args.teacher_weight, teacher_fill=args.teacher_fill,
        question_dropout=args.question_dropout, train_shuffled_options=args.train_shuffled_options,
        random_state=args.seed, **others)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@contextlib.contextmanager
def _cancel_on_interrupt(cancel: threading.Event):
    """The first Ctrl-C sets ``cancel`` (training stops within a step); a second one aborts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        print("\nStopping within a step; the best weights so far become the candidate (Ctrl-C again aborts; "
              "the checkpoint stays for --resume)...", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
