"""Soft-prompt training and answering against the number of questions (18, 200, 1,000 by default).

Polis conversations have hundreds of statements; the question prompts that
training reads are cached once per run, so a step's cost should not grow
with the number of questions. This builds studies of ``--respondents``
respondents with real statement texts (the bundled Polis conversations'
comments, cycled and numbered to reach the size), random embeddings and
answers, then prints per size: the preparation (the prompts and their
cache), seconds per training step after the first, seconds per answer
when scoring (``persona_engine.steer.answering.score_options``: 16 questions
asked of 16 respondents each, the prompts' preparation included), and the
process's peak memory so far. Before the prompts were kept per question
(one run, the same machine): 0.45 s a step at 18 questions, 8.4 s at 200.

    python bench/bench_steering_questions.py
    python bench/bench_steering_questions.py --questions 18 1000 --steps 6
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd

from persona_engine.llm import load_llm
from persona_engine.opinion_data import MISSING, Question
from persona_engine.steer import SoftPromptModel, SteeringSettings, train_soft_prompt
from persona_engine.steer.prompts import encode_questions

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = ("agree", "disagree", "pass")


def statements() -> list[str]:
    texts = []
    for comments in sorted((ROOT / "sample_data" / "polis").glob("*/comments.csv")):
        table = pd.read_csv(comments)
        texts += [str(t) for t in table[table.get("moderated", 1) != -1]["comment-body"].dropna()]
    return texts


def questions(n: int, texts: list[str]) -> list[Question]:
    return [Question(f"s{i}", texts[i % len(texts)] + ("" if i < len(texts) else f" ({i // len(texts) + 1})"),
                     OPTIONS) for i in range(n)]


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, nargs="+", default=[18, 200, 1000])
    parser.add_argument("--respondents", type=int, default=300)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--fill", type=float, default=0.3, help="share of cells answered")
    parser.add_argument("--model", default=None)
    args = parser.parse_args()

    llm = load_llm(args.model)
    texts = statements()
    rng = np.random.default_rng(0)
    print(f"{llm.name}, {args.respondents} respondents, {args.fill:.0%} answered, {len(texts)} distinct statements")
    print(f"{'questions':>9} {'prepare s':>9} {'s/step':>7} {'s/answer':>8} {'peak MB':>8}")
    for n in args.questions:
        asked = questions(n, texts)
        embeddings = rng.normal(size=(args.respondents, 16)).astype(np.float32)
        answers = rng.integers(0, 3, size=(args.respondents, n)).astype(np.int16)
        answers[rng.random(answers.shape) > args.fill] = MISSING
        form = SteeringSettings()  # the form the app and the CLI train: 4 virtual tokens before the reply
        spm = SoftPromptModel.for_llm(llm, 16, kind=form.kind, n_virtual_tokens=form.n_virtual_tokens,
                                      placement=form.placement, random_state=0)
        stamps: list[float] = []
        train_soft_prompt(llm, spm, embeddings, asked, answers, max_steps=args.steps, validation=0.0,
                          progress=lambda stage, step, total, info: stamps.append(time.perf_counter()))
        prepare = stamps[1] - stamps[0] if len(stamps) > 1 else float("nan")
        per_step = (stamps[-1] - stamps[2]) / (len(stamps) - 3) if len(stamps) > 3 else float("nan")
        per_answer = answer_seconds(llm, spm, embeddings, asked)
        print(f"{n:>9} {prepare:>9.1f} {per_step:>7.2f} {per_answer:>8.3f} {peak_mb():>8.0f}", flush=True)


def answer_seconds(llm, spm, embeddings, asked, n_questions: int = 16, per_question: int = 16) -> float:
    """Seconds per answer of the steered model's option scores, prompts' preparation included.

    ``n_questions`` random questions, each asked of ``per_question`` random
    respondents: about the ratio of an evaluation's held-out answers (20% of
    300 respondents' answers at 30% fill is 18 per question).
    """
    from persona_engine.steer.answering import score_options

    rng = np.random.default_rng(1)
    cols = np.repeat(rng.choice(len(asked), min(n_questions, len(asked)), replace=False), per_question)
    rows = rng.integers(0, len(embeddings), len(cols))
    started = time.perf_counter()  # the prompts' preparation included, as evaluate-steering pays it
    encoded = encode_questions(llm.tokenizer, asked)
    score_options(llm, encoded, cols, spm, embeddings[rows])
    return (time.perf_counter() - started) / len(cols)


if __name__ == "__main__":
    main()
