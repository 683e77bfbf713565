"""Are the cohorts stable? Do the same cohorts come back with other seeds and
on bootstrap resamples of the respondents (adjusted Rand index overall,
Hennig's clusterboot Jaccard per cohort)?

How much the cohorts know about their members (the cohort majority) and
Polis's own grouping, the baseline our cohorts must match, are measured in
:mod:`persona_engine.evaluation.references`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.metrics import adjusted_rand_score


STABILITY_RESPONDENTS = 3000
""":func:`cohort_stability` refits on a random sample of at most this many respondents."""


# ------------------------------------------------------------------ stability
@dataclass(frozen=True)
class CohortStability:
    """How reproducible a set of cohorts is.

    Attributes
    ----------
    seed_ari:
        ``(n_seeds,)`` adjusted Rand index between the reference cohorts and
        refits on the same respondents with other seeds.
    bootstrap_ari:
        ``(n_resamples,)`` adjusted Rand index between the reference cohorts
        and refits on bootstrap resamples, compared on the respondents drawn.
    per_cohort:
        One row per reference cohort: ``cohort``, ``size``, ``jaccard``
        (Hennig's clusterboot: mean over resamples of the best Jaccard
        similarity with any resample cohort; above 0.75 is stable, below 0.5
        the cohort 'dissolves'), ``dissolved`` (share of resamples with
        Jaccard below 0.5).
    n_respondents:
        How many respondents the refits were drawn from (all of them unless
        there were more than ``max_respondents``).
    """

    seed_ari: np.ndarray
    bootstrap_ari: np.ndarray
    per_cohort: pd.DataFrame
    n_respondents: int = 0

    @property
    def ari(self) -> float:
        """Mean adjusted Rand index over all refits (seeds and resamples), in [-1, 1]."""
        return float(np.mean(np.concatenate([self.seed_ari, self.bootstrap_ari])))


def cohort_stability(
    embeddings: np.ndarray,
    finder,
    n_resamples: int = 20,
    n_seeds: int = 5,
    random_state: int = 0,
    sample_weight: np.ndarray | None = None,
    max_respondents: int | None = STABILITY_RESPONDENTS,
) -> CohortStability:
    """Refit ``finder`` with other seeds and on bootstrap resamples; compare cohorts.

    ``embeddings``: ``(n_respondents, dim)``. ``finder``: a
    :class:`~persona_engine.cohorts.kmeans.CohortFinder` (or any estimator with
    ``random_state``, ``n_cohorts``, ``fit`` and ``labels_``); its fitted
    ``labels_`` are the reference when it was fitted on these embeddings,
    else a copy is fitted. Refits keep the reference's number of cohorts, so
    this measures the stability of the cohorts, not of the choice of k.

    On more than ``max_respondents`` respondents (``None``: no limit) every
    refit is drawn from one random sample of that many, compared with the
    reference cohorts of the same people: an estimate of the same agreement
    at a fraction of the cost. ``per_cohort["size"]`` still counts everyone.
    """
    X = np.asarray(embeddings, dtype=np.float64)
    reference = getattr(finder, "labels_", None)
    if reference is None or len(reference) != len(X):
        reference = clone(finder).fit(X, sample_weight=sample_weight).labels_
    reference = np.asarray(reference)
    k = int(reference.max()) + 1
    sizes = np.bincount(reference, minlength=k)
    rng = np.random.default_rng(random_state)
    if max_respondents is not None and len(X) > max_respondents:
        sample = np.sort(rng.choice(len(X), int(max_respondents), replace=False))
        X, reference = X[sample], reference[sample]
        sample_weight = None if sample_weight is None else np.asarray(sample_weight)[sample]
    n = len(X)

    def refit(seed: int, rows: np.ndarray) -> np.ndarray:
        model = clone(finder).set_params(n_cohorts=k, random_state=seed)
        weight = None if sample_weight is None else np.asarray(sample_weight)[rows]
        return model.fit(X[rows], sample_weight=weight).labels_

    seeds = rng.integers(0, 2**31 - 1, size=n_seeds + n_resamples)
    everyone = np.arange(n)
    # Bootstrap draws among respondents of positive weight: the others cannot
    # move a cohort, and a draw of only them would have nothing to fit.
    pool = everyone if sample_weight is None else np.flatnonzero(np.asarray(sample_weight) > 0)
    pool = pool if len(pool) else everyone
    seed_ari = np.array([adjusted_rand_score(reference, refit(int(s), everyone)) for s in seeds[:n_seeds]])

    bootstrap_ari, jaccard = [], np.full((n_resamples, k), np.nan)
    for r in range(n_resamples):
        drawn = pool[rng.integers(0, len(pool), size=n)]
        labels = refit(int(seeds[n_seeds + r]), drawn)
        # A respondent drawn twice gets one label (the model is deterministic).
        rows, first = np.unique(drawn, return_index=True)
        labels, ref = labels[first], reference[rows]
        bootstrap_ari.append(adjusted_rand_score(ref, labels))
        for c in range(k):
            members = ref == c
            if members.any():
                jaccard[r, c] = max(_jaccard(members, labels == d) for d in np.unique(labels))
    per_cohort = pd.DataFrame({
        "cohort": np.arange(k),
        "size": sizes,
        "jaccard": np.nanmean(jaccard, axis=0) if n_resamples else np.full(k, np.nan),
        "dissolved": np.nanmean(jaccard < 0.5, axis=0) if n_resamples else np.full(k, np.nan),
    })
    return CohortStability(seed_ari, np.array(bootstrap_ari), per_cohort, n)


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
    union = np.sum(a | b)
    return float(np.sum(a & b) / union) if union else 0.0
