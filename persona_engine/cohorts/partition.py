"""A hard partition of respondent vectors into cohorts: centroids, small-cohort merging, inertia and BIC.

Plain functions over ``X`` ``(n_respondents, dim)``, cohort labels
``(n_respondents,)`` and optional respondent weights ``(n_respondents,)``,
used by :class:`~persona_engine.cohorts.kmeans.CohortFinder` to build and
score the cohorts of each candidate k.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

__all__ = ["cohort_centroids", "merge_small_cohorts", "partition_bic", "within_cohort_inertia"]


def cohort_centroids(X: np.ndarray, labels: np.ndarray, k: int, weight: np.ndarray | None) -> np.ndarray:
    """``(k, dim)`` weighted mean vector of each cohort."""
    w = np.ones(len(X)) if weight is None else weight
    one_hot = np.zeros((len(X), k))
    one_hot[np.arange(len(X)), labels] = w
    total = one_hot.sum(axis=0)
    # A cohort whose members all weigh 0 falls back to its plain mean.
    plain = np.zeros((len(X), k))
    plain[np.arange(len(X)), labels] = 1.0
    one_hot = np.where(total[None, :] > 0, one_hot, plain)
    mass = one_hot.sum(axis=0)[:, None]
    # Empty cohorts (possible in a mixture) get a zero vector; they are merged away.
    return np.divide(one_hot.T @ X, mass, out=np.zeros((k, X.shape[1])), where=mass > 0)


def merge_small_cohorts(X, components, k, min_size, weight):
    """Merge undersized components into the nearest; returns (component -> cohort, centroids)."""
    mapping = np.arange(k)
    while True:
        present = np.unique(mapping)
        labels = np.searchsorted(present, mapping[components])
        sizes = np.bincount(labels, minlength=len(present))
        centroids = cohort_centroids(X, labels, len(present), weight)
        small = np.flatnonzero(sizes < min_size)
        if len(present) == 1 or len(small) == 0:
            return np.searchsorted(present, mapping), centroids
        # Merge the smallest (ties: lowest index); empty components just vanish.
        victim = small[np.argmin(sizes[small])]
        others = np.flatnonzero((np.arange(len(present)) != victim) & (sizes > 0))
        target = others[np.argmin(np.linalg.norm(centroids[others] - centroids[victim], axis=1))]
        mapping[mapping == present[victim]] = present[target]


def within_cohort_inertia(X, labels, centroids, weight) -> float:
    """(Weighted) within-cohort sum of squared distances to the centroids: the elbow curve's y."""
    w = np.ones(len(X)) if weight is None else weight
    return float(np.sum(w * np.sum((X - centroids[labels]) ** 2, axis=1)))


def partition_bic(X, labels, centroids, weight) -> float:
    """BIC of a diagonal Gaussian mixture built from a hard partition.

    Components: weight = cohort share, mean = centroid, variance = the
    cohort's variance per dimension (all weighted by ``weight`` if given) (floored at 1e-3 of the overall variance
    so a tight cohort cannot claim unbounded likelihood). Parameters counted:
    ``k`` means and variances of ``dim`` values each, plus ``k - 1`` weights.
    """
    n, dim = X.shape
    k = len(centroids)
    w = np.ones(n) if weight is None else weight
    floor = 1e-3 * np.maximum(X.var(axis=0), 1e-12)
    log_density = np.empty((n, k))
    for c in range(k):
        members = labels == c
        wc = w[members] if w[members].sum() > 0 else np.ones(members.sum())
        var = np.average((X[members] - centroids[c]) ** 2, axis=0, weights=wc)
        var = np.maximum(var, floor)
        share = w[members].sum() / w.sum() if w[members].sum() > 0 else members.mean()
        log_density[:, c] = np.log(share) - 0.5 * np.sum(
            np.log(2 * np.pi * var) + (X - centroids[c]) ** 2 / var, axis=1)
    # Weights count respondents relative to the average one, so n stays the number of people.
    log_likelihood = float(np.sum(w / w.mean() * logsumexp(log_density, axis=1)))
    n_params = k * 2 * dim + (k - 1)
    return -2.0 * log_likelihood + n_params * np.log(n)
