"""The evaluation's metrics: accuracy per respondent with a bootstrap interval, and distribution alignment.

Accuracy is averaged per respondent (macro), as in Li et al.: a respondent
with three held-out answers counts as much as one with ten. Its uncertainty
is a percentile bootstrap over respondents.

Alignment compares a model's answer distribution for a group with the
group's real one, as OpinionQA does (Santurkar et al. 2023): one minus the
1-Wasserstein distance over the ordinal options, divided by its largest
possible value (all mass at one end against all at the other), so 1 is a
perfect match and 0 the worst. Non-answers (e.g. "Refused") are dropped and
both distributions renormalized. Options without an order get one minus the
total variation distance, which is the Wasserstein distance when every two
options are one apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from persona_engine.errors import DataError


def per_respondent_accuracy(
    predicted: np.ndarray, answers: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    """Accuracy of ``predicted`` on the ``mask`` cells of each respondent.

    All arrays have shape ``(n_respondents, n_questions)``. Returns shape
    ``(n_respondents,)`` with NaN for respondents that have no masked cell.
    """
    mask = np.asarray(mask, dtype=bool)
    hits = (np.asarray(predicted) == np.asarray(answers)) & mask
    n = mask.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, hits.sum(axis=1) / np.maximum(n, 1), np.nan)


def macro_accuracy(predicted: np.ndarray, answers: np.ndarray, mask: np.ndarray) -> float:
    """Mean over respondents of their accuracy on the ``mask`` cells."""
    accuracy = per_respondent_accuracy(predicted, answers, mask)
    return float(np.nanmean(accuracy)) if np.isfinite(accuracy).any() else float("nan")



@dataclass(frozen=True)
class Interval:
    """A mean with its bootstrap confidence interval.

    ``n`` is the number of units resampled (respondents).
    """

    mean: float
    low: float
    high: float
    n: int

    def overlaps(self, other: "Interval") -> bool:
        return not (self.low > other.high or other.low > self.high)


def bootstrap_interval(values: Sequence[float], *, confidence: float = 0.95, n_resamples: int = 2000,
                       random_state: int = 0) -> Interval:
    """Mean of ``values`` ``(n,)`` (NaNs dropped) and its percentile bootstrap interval."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if not 0 < confidence < 1:
        raise DataError(f"confidence {confidence}", expected="a number between 0 and 1")
    if values.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    rng = np.random.default_rng(random_state)
    draws = rng.integers(0, values.size, size=(n_resamples, values.size))
    means = values[draws].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Interval(float(values.mean()), float(low), float(high), int(values.size))


def accuracy_interval(predicted: np.ndarray, answers: np.ndarray, mask: np.ndarray, **bootstrap) -> Interval:
    """Macro accuracy of ``predicted`` on the ``mask`` cells, all ``(n_respondents, n_questions)``.

    Respondents without a masked cell are left out; ``bootstrap`` goes to
    :func:`bootstrap_interval`.
    """
    return bootstrap_interval(per_respondent_accuracy(predicted, answers, mask), **bootstrap)


def alignment(model: Sequence[float], real: Sequence[float], *, ordinal: bool = True,
              values: Sequence[float] | None = None, non_answers: Sequence[int] = ()) -> float:
    """1 - W1(model, real) / max W1 over one question's options.

    Parameters
    ----------
    model, real:
        Distributions (or counts) over the question's options, ``(n_options,)``.
    ordinal:
        Whether the options form a scale; if not, 1 - total variation.
    values:
        Position of each option on its scale (default: evenly spaced).
    non_answers:
        Indices of options that are not opinions; dropped before comparing.

    Returns
    -------
    A number in [0, 1]; NaN when fewer than two answer options remain or
    either distribution has no mass on them.
    """
    model, real = np.asarray(model, dtype=np.float64), np.asarray(real, dtype=np.float64)
    if model.shape != real.shape or model.ndim != 1:
        raise DataError(f"distributions of shapes {model.shape} and {real.shape}",
                        expected="two vectors over the same options")
    if (model < 0).any() or (real < 0).any():
        raise DataError("a distribution with negative mass", expected="probabilities or counts")
    keep = np.setdiff1d(np.arange(model.size), np.asarray(non_answers, dtype=np.int64))
    positions = np.arange(model.size, dtype=np.float64) if values is None else np.asarray(values, np.float64)
    model, real, positions = model[keep], real[keep], positions[keep]
    if model.size < 2 or model.sum() <= 0 or real.sum() <= 0:
        return float("nan")
    model, real = model / model.sum(), real / real.sum()
    if not ordinal:
        return float(1 - 0.5 * np.abs(model - real).sum())
    order = np.argsort(positions, kind="stable")
    model, real, positions = model[order], real[order], positions[order]
    span = positions[-1] - positions[0]
    if span <= 0:
        return float("nan")
    gaps = np.diff(positions)
    distance = float(np.sum(np.abs(np.cumsum(model) - np.cumsum(real))[:-1] * gaps))
    return 1 - distance / span
