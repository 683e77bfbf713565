"""The options several commands share, as parent parsers, and the types of their values.

Each command module registers its own commands; these are the groups of
options more than one of them takes (the soft prompt's training options
default to :class:`~persona_engine.steer.settings.SteeringSettings`').
"""

from __future__ import annotations

import argparse

from persona_engine.steer.settings import KINDS, PLACEMENTS, SCHEDULES, UNBOUNDED_EPOCHS, SteeringSettings

STEERING = SteeringSettings()


def common_arguments() -> argparse.ArgumentParser:
    """The options of every command."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show a traceback on error")
    return common


def data_arguments() -> argparse.ArgumentParser:
    """The options of reading DATA (fit, evaluate, codebook)."""
    data_args = argparse.ArgumentParser(add_help=False)
    data_args.add_argument("--codebook", help="codebook file (CSV or JSON) with question text and option order")
    data_args.add_argument("--format", default="auto",
                           choices=["auto", "polis", "wide", "long", "pew", "labelled", "qualtrics"],
                           help="input format (default: detected)")
    return data_args


def llm_arguments() -> argparse.ArgumentParser:
    """The base language model's options (train-steering, ask, chat, evaluate-steering)."""
    llm_args = argparse.ArgumentParser(add_help=False)
    llm_args.add_argument("--model", default=None, metavar="HF_ID_OR_FOLDER",
                          help="base language model: a Hugging Face id in the local cache or a model folder "
                               "(default: SmolLM2-135M-Instruct for training, the trained-for model otherwise)")
    llm_args.add_argument("--dtype", default=None, choices=["float32", "bfloat16"],
                          help="weights' number format (default float32 on CPU, bfloat16 on a GPU)")
    return llm_args


def soft_prompt_arguments() -> argparse.ArgumentParser:
    """The soft prompt's training options (train-steering, evaluate-steering); their defaults are ``STEERING``'s."""
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
    spm_args.add_argument("--steps", type=count_or_all, default=STEERING.steps, metavar="N|all",
                          help="training steps of --batch-size answers, cycling the answers as often as it "
                               f"takes (default {shown(STEERING.steps, 'all')}; 'all': --epochs decides, "
                               f"{UNBOUNDED_EPOCHS:g} unless given)")
    spm_args.add_argument("--epochs", type=float, default=STEERING.epochs,
                          help="most passes over the training answers, fractions allowed "
                               f"(default: {shown(STEERING.epochs, 'no bound but --steps')})")
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
    spm_args.add_argument("--question-dropout", action=argparse.BooleanOptionalAction,
                          default=STEERING.question_dropout,
                          help="teach each answer from the respondent's vector placed without that question, as "
                               "for a question the survey never asked (default: "
                               f"{'on' if STEERING.question_dropout else 'off'})")
    spm_args.add_argument("--train-shuffled-options", action=argparse.BooleanOptionalAction,
                          default=STEERING.train_shuffled_options,
                          help="teach each answer with its options in a random order, so that a letter carries "
                               f"no stance (default: {'on' if STEERING.train_shuffled_options else 'off'})")
    return spm_args


def count_or_all(value: str) -> int | None:
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


def shown(value, none: str) -> str:
    """A default as the help text says it."""
    return none if value is None else f"{value:g}"
