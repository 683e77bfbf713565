"""``persona-engine``: the command-line face of the package.

Every command is a thin layer over a package function, so the CLI, the app and
a notebook do the same thing. Errors in the user's input print one line and
exit with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from persona_engine.cli.codebook_command import add_parser as add_codebook_parser
from persona_engine.cli.evaluation_commands import add_parser as add_evaluation_parser
from persona_engine.cli.steering_commands import run_ask, run_chat, run_train_steering
from persona_engine.cli.study_commands import run_evaluate, run_fit, run_info, run_profile
from persona_engine.errors import DataError, DataWarning
from persona_engine.steer.settings import KINDS, PLACEMENTS, SCHEDULES, UNBOUNDED_EPOCHS, SteeringSettings

STEERING = SteeringSettings()
GROUNDING_SOURCES = ("soft prompt", "collaborative filter", "both")
"""``persona_engine.steer.grounding.SOURCES``, spelt out so that ``--help`` needs no torch (a test checks)."""


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for reports that record their command
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", DataWarning)
            warnings.showwarning = _one_line
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


def _one_line(message, category, *args, **kwargs) -> None:
    """Warnings about the user's input as one line each; any other warning as Python shows it."""
    if issubclass(category, DataWarning):
        print(f"persona-engine: warning: {message}", file=sys.stderr)
    else:
        _show_warning(message, category, *args, **kwargs)


_show_warning = warnings.showwarning


def _soft_prompt_arguments() -> argparse.ArgumentParser:
    """The soft prompt's training options; their defaults are :class:`SteeringSettings`' (``STEERING``)."""
    spm_args = argparse.ArgumentParser(add_help=False)
    spm_args.add_argument("--kind", default=None, choices=KINDS,
                          help=f"prefix tuning (the paper's) or prompt tuning (default {STEERING.kind}; "
                               "--resume keeps the saved model's)")
    spm_args.add_argument("--virtual-tokens", type=int, default=STEERING.n_virtual_tokens,
                          help=f"virtual tokens (default {STEERING.n_virtual_tokens}; the paper: 1)")
    spm_args.add_argument("--placement", default=STEERING.placement, choices=PLACEMENTS,
                          help="where the virtual tokens go: right before the reply (the prompt is read once "
                               "for all personas, about 10x faster) or before the question (the paper's); "
                               f"default {STEERING.placement}")
    spm_args.add_argument("--steps", type=_count_or_all, default=STEERING.steps, metavar="N|all",
                          help="training steps of --batch-size answers, cycling the answers as often as it "
                               f"takes (default {_shown(STEERING.steps, 'all')}; 'all': --epochs decides, "
                               f"{UNBOUNDED_EPOCHS:g} unless given)")
    spm_args.add_argument("--epochs", type=float, default=STEERING.epochs,
                          help="most passes over the training answers, fractions allowed "
                               f"(default: {_shown(STEERING.epochs, 'no bound but --steps')})")
    spm_args.add_argument("--batch-size", type=int, default=STEERING.batch_size,
                          help=f"answers per step (default {STEERING.batch_size})")
    spm_args.add_argument("--lr", type=float, default=STEERING.lr,
                          help=f"peak learning rate (default {STEERING.lr:g})")
    spm_args.add_argument("--schedule", default=STEERING.schedule, choices=SCHEDULES,
                          help="learning rate over the run: warm-up then cosine decay to zero, or constant "
                               f"(default {STEERING.schedule})")
    spm_args.add_argument("--words-share", type=float, default=STEERING.words_share,
                          help="share of answers taught as a sentence instead of a letter "
                               f"(default {STEERING.words_share:g}: chat is grounded in the study's answers "
                               "separately, and letters alone give the most accurate answers)")
    spm_args.add_argument("--teacher-weight", type=float, default=STEERING.teacher_weight,
                          help="share of the letter loss taught by the collaborative filter's predicted "
                               f"distributions rather than the answer alone (default {STEERING.teacher_weight:g}; "
                               "0 for answers only)")
    spm_args.add_argument("--teacher-fill", action=argparse.BooleanOptionalAction, default=STEERING.teacher_fill,
                          help="when the answers are fewer than the examples asked for (--max-examples, "
                               "--train-examples), make up the difference with cells nobody answered, taught by "
                               f"the collaborative filter alone (default: {'on' if STEERING.teacher_fill else 'off'})")
    return spm_args


def _cohort_or_all(value: str):
    if value.strip().lower() == "all":
        return "all"
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a cohort number or 'all', not '{value}'") from None


def _count_or_all(value: str) -> int | None:
    """A positive whole number, or ``None`` for 'all'."""
    if value.strip().lower() in ("all", "none"):
        return None
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'all', not '{value}'") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number or 'all', not '{value}'")
    return number


def _shown(value, none: str) -> str:
    """A default as the help text says it."""
    return none if value is None else f"{value:g}"


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
    data_args.add_argument("--format", default="auto",
                           choices=["auto", "polis", "wide", "long", "pew", "labelled", "qualtrics"],
                           help="input format (default: detected)")
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

    add_codebook_parser(sub, [common, data_args])

    llm_args = argparse.ArgumentParser(add_help=False)
    llm_args.add_argument("--model", default=None, metavar="HF_ID_OR_FOLDER",
                          help="base language model: a Hugging Face id in the local cache or a model folder "
                               "(default: SmolLM2-135M-Instruct for training, the trained-for model otherwise)")
    llm_args.add_argument("--dtype", default=None, choices=["float32", "bfloat16"],
                          help="weights' number format (default float32 on CPU, bfloat16 on a GPU)")

    spm_args = _soft_prompt_arguments()  # shared by train-steering and evaluate-steering

    train = sub.add_parser(
        "train-steering", parents=[common, llm_args, spm_args],
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
    train.add_argument("--max-examples", type=_count_or_all, default=STEERING.max_examples, metavar="N|all",
                       help="train on a random subsample of N answers "
                            f"(default {_shown(STEERING.max_examples, 'all')})")
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

    persona_args = argparse.ArgumentParser(add_help=False)
    who = persona_args.add_argument_group("persona (choose one)").add_mutually_exclusive_group(required=True)
    who.add_argument("--respondent", metavar="ID", help="a respondent's id")
    who.add_argument("--cohort", type=_cohort_or_all, metavar="N",
                     help="a cohort's number (its centroid); 'all' (ask only) for every cohort side by side")
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
    ask.set_defaults(run=run_ask)

    talk = sub.add_parser(
        "chat", parents=[common, llm_args, persona_args], help="chat with a persona",
        description="Talk with the LLM steered toward a persona, one line per message; replies stream as "
                    "they are generated. Each reply is grounded in the study: it finds the study question "
                    "the message is about, opens with the persona's answer to it and gives reasons; what "
                    "grounded it goes to standard error. Reads piped input too. /quit or end of input leaves.")
    talk.add_argument("study", metavar="STUDY")
    talk.add_argument("--no-grounding", dest="grounding", action="store_false",
                      help="let the steered model answer on its own, without the study's questions")
    talk.add_argument("--source", choices=GROUNDING_SOURCES, default=None,
                      help="where a grounded reply's stance comes from: the soft prompt's answer, the "
                           "collaborative filter's, or their product (default: both where the study has a "
                           "soft prompt for this model, else the filter)")
    talk.add_argument("--voice", type=float, default=None,
                      help="strength of the soft prompt while a grounded reply gives its reasons (default 0: "
                           "the soft prompts are trained on answers only, and free text under them can fall "
                           "apart)")
    talk.add_argument("--system", default=None,
                      help="a system prompt for ungrounded replies (default: the model's own)")
    talk.add_argument("--max-new-tokens", type=int, default=200, help="longest reply in tokens (default 200)")
    talk.add_argument("--temperature", type=float, default=0.7, help="sampling temperature; 0 is greedy")
    talk.add_argument("--seed", type=int, default=None, help="random seed for sampling")
    talk.set_defaults(run=run_chat)

    add_evaluation_parser(sub, [common, llm_args, spm_args])
    return parser
