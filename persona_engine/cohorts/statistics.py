"""Survey-weighted answer counts per cohort, and the statistics read from them.

Plain functions over arrays, used by every cohort table
(:mod:`~persona_engine.cohorts.profiles`, :mod:`~persona_engine.cohorts.distinctive`,
:mod:`~persona_engine.cohorts.naming`):

* :func:`tally_answers`: answers per cohort × question × option, counted and weighed;
* :func:`effective_sample_size` / :func:`effective_counts`: Kish's effective numbers;
* :func:`wilson_interval`: confidence interval of a share;
* :func:`two_proportion_z` / :func:`one_proportion_z`: Polis's tests.

Survey weights. When the data has weights (:attr:`OpinionData.weights`),
every figure that estimates the population (shares, means, medians,
majorities, confidence intervals and tests) is weighted, unless a function is
called with ``weighted=False``; without weights ``weighted`` is ignored.
Every table returned says which it shows in ``table.attrs["weighted"]``
(a bool, set by :func:`mark_weighting`), and :func:`weighting_note` words it
for captions. Counts of respondents (``size``, ``count``, ``n``, ``n_in``)
stay counts of people. A weighted share is ``Σ w (chose the answer) / Σ w
(answered)``; its uncertainty is that of Kish's effective sample size
``n_eff = (Σ w)² / Σ w²`` over the same respondents: intervals and tests see
``share · n_eff`` answers out of ``n_eff``. With every weight 1 this is
exactly the unweighted count. (Factorization and clustering never see the
weights.)

Polis's statistics follow its math (``polismath/math/stats.clj`` and
``repness.clj``, as ported in the red-dwarf library): shares smoothed as
``(count + 1) / (n + 2)`` (:func:`smoothed_share`); its two-proportion z-test
adds 1 to all four counts; the one-proportion test is
``2 sqrt(n + 1) ((count + 1) / (n + 1) - 1/2)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm

from persona_engine.errors import DataError
from persona_engine.opinion_data import MISSING, OpinionData

__all__ = ["AnswerTally", "effective_counts", "effective_sample_size", "mark_weighting", "one_proportion_z",
           "respondent_weights", "share_of", "smoothed_share", "tally_answers", "two_proportion_z",
           "uses_weights", "weighting_note", "wilson_interval"]


# ------------------------------------------------------------------ weights
def uses_weights(data: OpinionData, weighted: bool = True) -> bool:
    """Whether figures on ``data`` are weighted: asked for, and the data has survey weights."""
    return bool(weighted) and data.weights is not None


def weighting_note(data: OpinionData, weighted: bool = True) -> str:
    """"weighted by the survey weights" or "unweighted", for captions and printed tables."""
    if not uses_weights(data, weighted):
        return "unweighted"
    column = data.source.weight_column
    return f"weighted by the survey weights ({column})" if column else "weighted by the survey weights"


def effective_sample_size(weights) -> float:
    """Kish's effective sample size ``(Σ w)² / Σ w²`` of weights ``(n,)`` (0 for none)."""
    weights = np.asarray(weights, dtype=np.float64)
    square = float(np.sum(weights**2))
    return float(np.sum(weights)) ** 2 / square if square > 0 else 0.0


def effective_counts(weight, square) -> tuple[np.ndarray, np.ndarray]:
    """Kish effective answer counts ``(..., n_options)`` and sample sizes ``(...)``.

    ``weight`` ``(..., n_options)``: summed weights of the respondents choosing
    each option; ``square`` ``(...)``: summed squared weights of everyone who
    answered. The counts are ``share · n_eff`` with ``share = weight / Σ weight``
    and ``n_eff = (Σ weight)² / square``; with unit weights, the counts themselves.
    """
    weight, square = np.asarray(weight, dtype=np.float64), np.asarray(square, dtype=np.float64)
    total = weight.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        n_eff = np.where(square > 0, total * total / square, 0.0)
        # weight · total / square, not share · n_eff: exact when every weight is 1
        counts = np.where(square[..., None] > 0, weight * total[..., None] / square[..., None], 0.0)
    return counts, n_eff


def respondent_weights(data: OpinionData, weighted: bool) -> np.ndarray:
    """``(n_respondents,)``: the survey weights, or ones when the figures are unweighted."""
    return data.weights if uses_weights(data, weighted) else np.ones(data.n_respondents)


def mark_weighting(table: pd.DataFrame, data: OpinionData, weighted: bool) -> pd.DataFrame:
    """``table`` with ``attrs["weighted"]`` saying whether its figures are weighted."""
    table.attrs["weighted"] = uses_weights(data, weighted)
    return table


def share_of(part, whole) -> np.ndarray:
    """``part / whole``, NaN where ``whole`` is 0."""
    part, whole = np.asarray(part, dtype=np.float64), np.asarray(whole, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(whole > 0, part / np.where(whole > 0, whole, 1), np.nan)


# ------------------------------------------------------------------ counting
@dataclass(frozen=True)
class AnswerTally:
    """Answers per cohort × question × option, counted and weighed.

    ``cohorts`` ``(k,)``; ``count`` ``(k, n_questions, max_options)``
    respondents; ``weight`` the same shape, their summed weights; ``square``
    ``(k, n_questions)`` summed squared weights of the cohort's members who
    answered the question.
    """

    cohorts: np.ndarray
    count: np.ndarray
    weight: np.ndarray
    square: np.ndarray

    def effective(self, j: int, m: int) -> tuple[np.ndarray, np.ndarray]:
        """Question ``j``'s effective counts ``(k, m)`` and sizes ``(k,)`` per cohort."""
        return effective_counts(self.weight[:, j, :m], self.square[:, j])

    def everyone(self, j: int, m: int) -> tuple[np.ndarray, np.ndarray]:
        """Question ``j``'s effective counts ``(m,)`` and size among everyone."""
        return effective_counts(self.weight[:, j, :m].sum(axis=0), self.square[:, j].sum())


def tally_answers(data: OpinionData, labels, weighted: bool) -> AnswerTally:
    """The :class:`AnswerTally` of ``data``'s answers by cohort ``labels`` ``(n_respondents,)``."""
    labels = np.asarray(labels)
    if labels.shape != (data.n_respondents,):
        raise DataError(f"{len(labels)} cohort labels for {data.n_respondents} respondents")
    cohorts, index = np.unique(labels, return_inverse=True)
    shape = (len(cohorts), data.n_questions, int(data.n_options.max()))
    count, weight = np.zeros(shape, dtype=np.int64), np.zeros(shape)
    square = np.zeros(shape[:2])
    w = respondent_weights(data, weighted)
    rows, cols = np.nonzero(data.answers != MISSING)
    where = (index[rows], cols, data.answers[rows, cols])
    np.add.at(count, where, 1)
    np.add.at(weight, where, w[rows])
    np.add.at(square, where[:2], w[rows] ** 2)
    return AnswerTally(cohorts, count, weight, square)


# ------------------------------------------------------------------ tests
def wilson_interval(count, n, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a share ``count / n`` (NaN where ``n`` is 0).

    Counts and sizes may be Kish effective ones (see :func:`effective_counts`).
    """
    count, n = np.asarray(count, dtype=np.float64), np.asarray(n, dtype=np.float64)
    z = norm.ppf(0.5 + confidence / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = count / n
        centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
        half = z / (1 + z**2 / n) * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return np.where(n > 0, centre - half, np.nan), np.where(n > 0, centre + half, np.nan)


def two_proportion_z(count_in, n_in, count_out, n_out) -> np.ndarray:
    """Polis's two-proportion z: is the in-group share higher? (+1 on all four counts)."""
    c1, n1, c2, n2 = (np.asarray(v, dtype=np.float64) + 1 for v in (count_in, n_in, count_out, n_out))
    pooled = (c1 + c2) / (n1 + n2)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (c1 / n1 - c2 / n2) / np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return np.where(pooled >= 1, 0.0, z)


def one_proportion_z(count, n, threshold: float = 0.5) -> np.ndarray:
    """Polis's one-proportion z: is the share above ``threshold``? (+1 on both counts)."""
    c, m = np.asarray(count, dtype=np.float64) + 1, np.asarray(n, dtype=np.float64) + 1
    return (c / m - threshold) / np.sqrt(threshold * (1 - threshold) / m)


def smoothed_share(count, n) -> np.ndarray:
    """Polis's smoothed share ``(count + 1) / (n + 2)``."""
    return (np.asarray(count, dtype=np.float64) + 1) / (np.asarray(n, dtype=np.float64) + 2)
