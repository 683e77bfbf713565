"""How long the default embedder takes on survey-sized data.

Generates random but structured answers (respondents drawn from a few latent
opinion dimensions, each question a softmax over 2-5 options), hides 20% of
each respondent's answers, times ``SoftmaxFactorization().fit`` on the rest
(regularisation selection included) and prints the held-out accuracy next to
the question-majority baseline as a sanity check.

The targets (2 CPU cores): 10,000 respondents x 100 questions at 50% fill in
at most 30 s; 100,000 x 200 in at most 5 min.

    python bench/bench_embed.py            # both sizes
    python bench/bench_embed.py --quick    # 2,000 x 50, seconds
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from persona_engine.embed.factorization import PaperFactorization, SoftmaxFactorization
from persona_engine.embed.fitting import idle_cores
from persona_engine.opinion_data import MISSING
from persona_engine.evaluation.protocol import holdout_split
from persona_engine.evaluation.metrics import macro_accuracy
from persona_engine.evaluation.references import question_majority

TARGETS_S = {(10_000, 100): 30.0, (100_000, 200): 300.0}


def synthetic_answers(
    n_respondents: int,
    n_questions: int,
    fill: float = 0.5,
    latent_dim: int = 4,
    random_state: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Answers ``(n_respondents, n_questions)`` int16 with -1 missing, and ``n_options``.

    Each respondent is a point in ``latent_dim`` dimensions; each option of
    each question has its own direction and popularity, so answers are
    correlated across questions the way real survey answers are.
    """
    rng = np.random.default_rng(random_state)
    n_options = rng.integers(2, 6, size=n_questions)
    k = int(n_options.max())
    people = rng.normal(size=(n_respondents, latent_dim)).astype(np.float32)
    directions = rng.normal(scale=1.2, size=(n_questions, k, latent_dim)).astype(np.float32)
    popularity = rng.normal(scale=0.7, size=(n_questions, k)).astype(np.float32)
    padding = np.arange(k)[None, :] >= n_options[:, None]
    answers = np.empty((n_respondents, n_questions), dtype=np.int16)
    for lo in range(0, n_respondents, 5000):  # chunks keep memory small at 100k x 200
        logits = np.einsum("id,jkd->ijk", people[lo:lo + 5000], directions) + popularity
        logits[:, padding] = -np.inf
        logits -= logits.max(axis=-1, keepdims=True)
        p = np.exp(logits)
        cdf = np.cumsum(p / p.sum(-1, keepdims=True), axis=-1)
        draw = rng.random(cdf.shape[:2])[..., None]
        answers[lo:lo + 5000] = np.minimum((draw > cdf).sum(-1), n_options - 1)
    answers[rng.random(answers.shape) >= fill] = MISSING
    return answers, n_options


def run(n_respondents: int, n_questions: int, model: str, n_threads: int | None = None) -> dict:
    answers, n_options = synthetic_answers(n_respondents, n_questions)
    split = holdout_split(answers, random_state=0)
    majority = question_majority(split.train_answers, n_options)
    baseline = macro_accuracy(np.broadcast_to(majority, answers.shape), answers, split.test_mask)
    model_class = {"softmax": SoftmaxFactorization, "paper": PaperFactorization}[model]
    embedder = model_class(n_threads=n_threads)
    threads = n_threads or idle_cores()  # what the fit will pick, unless the load moves
    start = time.perf_counter()
    embedder.fit(split.train_answers, n_options)
    seconds = time.perf_counter() - start
    predicted = embedder.predict(embedder.respondent_factors_)
    accuracy = macro_accuracy(predicted, answers, split.test_mask)
    return {"seconds": seconds, "accuracy": accuracy, "majority": baseline, "reg": embedder.reg_,
            "threads": threads,
            "epochs": sum(h["stage"] == "fit" for h in embedder.history_)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one small run (2,000 x 50)")
    parser.add_argument("--model", choices=("softmax", "paper"), default="softmax")
    parser.add_argument("--sizes", nargs="*", default=None,
                        help="respondents x questions, e.g. 10000x100 (overrides the defaults)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: the cores not already busy)")
    args = parser.parse_args()
    if args.sizes:
        sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes]
    else:
        sizes = [(2_000, 50)] if args.quick else list(TARGETS_S)
    print(f"cores available: {len(os.sched_getaffinity(0))}, load average: "
          f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    for n, q in sizes:
        result = run(n, q, args.model, args.threads)
        target = TARGETS_S.get((n, q))
        verdict = "" if target is None else (
            f"  (target {target:.0f} s: {'ok' if result['seconds'] <= target else 'TOO SLOW'})")
        print(f"{args.model} {n:,} x {q} at 50% fill: fit {result['seconds']:.1f} s{verdict}; "
              f"held-out accuracy {result['accuracy']:.3f} vs majority {result['majority']:.3f}; "
              f"reg {result['reg']:g}, {result['epochs']} passes, "
              f"{result['threads']} torch thread(s)",
              flush=True)


if __name__ == "__main__":
    main()
