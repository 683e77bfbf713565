"""The quality table: how well each method predicts answers it has not seen.

For each split seed, 20% of each respondent's answers are hidden (respondents
with at least 5 answers), every method is fitted on the rest, and it predicts
the hidden answers; the score is accuracy averaged per respondent (macro).
Rows, from the floor up:

* question majority: each question's most common answer (the floor);
* Polis cohorts: Polis's own groups (mean-impute, PCA 2-D, k-means k 2..5),
  answering with the cohort's majority;
* paper MF: Li et al.'s factorization (answers scaled to [0, 1], MSE);
* softmax MF: our default collaborative filter;
* our cohorts: the study's cohorts (found in the embedding or the answer
  space, whichever predicts better on inner splits of the training answers),
  answering with the cohort's majority (what a cohort persona knows about its
  members).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from persona_engine.evaluation.references import cohort_majority, polis_groups
from persona_engine.embed.factorization import PaperFactorization
from persona_engine.opinion_data import OpinionData
from persona_engine.progress import Progress, no_progress
from persona_engine.evaluation.protocol import holdout_split
from persona_engine.evaluation.metrics import macro_accuracy
from persona_engine.evaluation.references import question_majority
from persona_engine.study.fitting import FIT_DEFAULTS, fit_embedding_and_cohorts

METHODS = {
    "question majority": "each question's most common answer",
    "Polis cohorts": "cohort majority, Polis's method (mean-impute, PCA 2-D, k-means k=2..5)",
    "paper MF": "Li et al.: answers scaled to [0,1], MSE matrix factorization",
    "softmax MF (default)": "softmax factorization over each question's options",
    "our cohorts": "cohort majority, the study's cohorts (space chosen on inner splits)",
}


def quality_table(
    data: OpinionData,
    parameters: Mapping[str, object] | None = None,
    *,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    fraction: float = 0.2,
    min_answers: int = 5,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Held-out macro accuracy of every method, averaged over split ``seeds``.

    ``parameters``: how the study's own procedure fits (a study's saved
    ``manifest["parameters"]``, or some of them: ``dim``, ``n_cohorts``,
    ``cohort_method``, ``cohort_space``, ``min_cohort_size``; the rest take
    :func:`~persona_engine.study.fit_study`'s defaults). Its filter is always
    the default softmax one, beside the paper's; ``random_state`` is each seed.

    Returns one row per method: ``method``, ``accuracy`` (mean over seeds),
    ``std`` (across seeds, 0 for one seed), ``respondents`` (scored per
    split), ``description``; ``attrs["per_seed"]`` holds each split's
    scores (seeds × methods). The same ``seeds`` also seed every model.
    ``progress(stage, done, total, info)`` (:mod:`persona_engine.progress`)
    counts the splits done as the stage ``"evaluate"``.
    """
    report = progress or no_progress
    ours = {**(parameters or {}), "model": "softmax"}
    dim = int(ours.get("dim", FIT_DEFAULTS["dim"]))
    scores: dict[str, list[float]] = {name: [] for name in METHODS}
    n_options = data.n_options
    scored = 0
    for index, seed in enumerate(seeds):
        report("evaluate", index, len(seeds), {})
        split = holdout_split(data.answers, fraction=fraction, min_answers=min_answers, random_state=seed)
        mask, truth = split.test_mask, data.answers
        scored = int(split.eligible.sum())
        train = data.with_answers(split.train_answers)

        def score(predicted: np.ndarray) -> float:
            return macro_accuracy(predicted, truth, mask)

        majority = question_majority(split.train_answers, n_options)
        scores["question majority"].append(score(np.broadcast_to(majority, truth.shape)))
        polis = polis_groups(split.train_answers, n_options, random_state=seed)
        scores["Polis cohorts"].append(score(cohort_majority(split.train_answers, polis, n_options)))

        paper = PaperFactorization(dim=dim, random_state=seed).fit(train)
        scores["paper MF"].append(score(paper.predict(paper.respondent_factors_)))
        # the study's procedure, on the training answers only (the cohort space chosen on inner splits of them)
        default, cohorts, _, _ = fit_embedding_and_cohorts(train, {**ours, "random_state": seed})
        scores["softmax MF (default)"].append(score(default.predict(default.respondent_factors_)))
        scores["our cohorts"].append(score(cohort_majority(split.train_answers, cohorts.labels_, n_options)))
    report("evaluate", len(seeds), len(seeds), {})

    table = pd.DataFrame(
        {
            "method": list(METHODS),
            "accuracy": [float(np.mean(scores[m])) for m in METHODS],
            "std": [float(np.std(scores[m])) for m in METHODS],
            "respondents": scored,
            "description": list(METHODS.values()),
        }
    )
    table.attrs["per_seed"] = pd.DataFrame(scores, index=pd.Index(list(seeds), name="seed"))
    table.attrs["held_out"] = split.protocol if len(seeds) else ""  # how answers were held out (the same each seed)
    return table


def paired_difference(table: pd.DataFrame, method: str = "our cohorts",
                      baseline: str = "Polis cohorts") -> dict:
    """``method`` minus ``baseline`` over the paired splits of a :func:`quality_table`.

    Returns ``mean``, ``standard_error`` (NaN for one split), ``wins``,
    ``ties`` and ``splits``: the same split scores both, so the difference
    is far less noisy than the two accuracies.
    """
    per_seed = table.attrs["per_seed"]
    difference = (per_seed[method] - per_seed[baseline]).to_numpy()
    n = len(difference)
    return {"method": method, "baseline": baseline, "mean": float(difference.mean()),
            "standard_error": float(difference.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan"),
            "wins": int((difference > 0).sum()), "ties": int((difference == 0).sum()), "splits": n}
