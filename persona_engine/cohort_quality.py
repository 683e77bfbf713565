"""How good are the cohorts? Stability, predictive value, and Polis's method as a baseline.

* :func:`cohort_stability`: do the same cohorts come back with other seeds
  and on bootstrap resamples of the respondents (adjusted Rand index overall,
  Hennig's clusterboot Jaccard per cohort)?
* :func:`cohort_majority`: a cohort used as a predictor: every respondent is
  predicted to give their cohort's most common answer. Scored on held-out
  answers with :func:`persona_engine.split.holdout_split` and
  :func:`~persona_engine.split.macro_accuracy`, it says how much a cohort
  persona knows about its members beyond the overall majority.
* :func:`polis_groups`: Polis's own opinion groups (mean-imputed vote matrix,
  PCA to 2-D, k-means with k in 2..5 by silhouette), the baseline our
  cohorts must match or beat.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score, silhouette_score
from threadpoolctl import threadpool_limits

from persona_engine.errors import DataError
from persona_engine.opinion_data import MISSING
from persona_engine.split import question_majority

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
    :class:`~persona_engine.cohorts.CohortFinder` (or any estimator with
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


# -------------------------------------------------------- cohorts as predictors
def cohort_majority(
    train_answers: np.ndarray,
    labels: np.ndarray,
    n_options: np.ndarray,
) -> np.ndarray:
    """Predict every answer as the respondent's cohort's most common answer.

    ``train_answers``: ``(n_respondents, n_questions)`` option codes, -1
    missing. ``labels``: ``(n_respondents,)`` cohort ids (any ints).
    ``n_options``: ``(n_questions,)``. Returns ``(n_respondents,
    n_questions)`` int64. Ties go to the lower option (as in
    :func:`~persona_engine.split.question_majority`); a cohort with no answer
    to a question gets the overall majority.
    """
    answers = np.asarray(train_answers)
    labels = np.asarray(labels)
    n_options = np.asarray(n_options, dtype=np.int64)
    if labels.shape != (answers.shape[0],):
        raise DataError(f"{len(labels)} cohort labels for {answers.shape[0]} respondents")
    overall = question_majority(answers, n_options)
    predicted = np.empty(answers.shape, dtype=np.int64)
    for cohort in np.unique(labels):
        rows = labels == cohort
        predicted[rows] = _majority_or(answers[rows], n_options, overall)
    return predicted


def _majority_or(answers: np.ndarray, n_options: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Each question's most common answer among ``answers``, or ``fallback`` where none."""
    majority = fallback.copy()
    for j, m in enumerate(n_options):
        column = answers[:, j]
        column = column[column != MISSING]
        if column.size:
            majority[j] = int(np.bincount(column, minlength=int(m)).argmax())
    return majority


# ------------------------------------------------------------ Polis's method
def polis_groups(
    train_answers: np.ndarray,
    n_options: np.ndarray,
    random_state: int = 0,
    k_range: tuple[int, int] = (2, 5),
    sparsity_scaling: bool = False,
) -> np.ndarray:
    """Polis's opinion groups, as a baseline; returns ``(n_respondents,)`` labels.

    Each answer is placed on its question's scale (option code / (options - 1),
    which for Polis's disagree / pass / agree is the vote's affine image),
    missing cells get the question's mean, the matrix is reduced to 2-D by
    PCA, and k-means runs for each k in ``k_range``, keeping the best
    silhouette. ``sparsity_scaling`` applies Polis's stretch of each
    respondent's projection by ``sqrt(n_questions / n_answers)``; off by
    default, as in the reference figures (it changed nothing measurable on
    the sample data). Polis's other refinements (clustering only people with
    7+ votes, 100 base clusters) are left out: they matter for conversations
    far larger than a survey sample.
    """
    answers = np.asarray(train_answers)
    n_options = np.asarray(n_options, dtype=np.float64)
    observed = answers != MISSING
    if observed.sum() == 0:
        raise DataError("no answers to group respondents by")
    scaled = np.where(observed, answers / np.maximum(n_options - 1, 1)[None, :], np.nan)
    counts = observed.sum(axis=0)
    means = np.divide(np.nansum(scaled, axis=0), counts, out=np.full(len(counts), 0.5), where=counts > 0)
    filled = np.where(observed, scaled, means[None, :])
    points = PCA(n_components=2, random_state=random_state).fit_transform(filled)
    if sparsity_scaling:
        points *= np.sqrt(answers.shape[1] / np.maximum(observed.sum(axis=1), 1))[:, None]
    best, best_score = None, -np.inf
    with threadpool_limits(1):
        for k in range(int(k_range[0]), int(k_range[1]) + 1):
            if k >= len(np.unique(points, axis=0)):
                break
            labels = KMeans(n_clusters=k, n_init=10, random_state=random_state).fit_predict(points)
            score = silhouette_score(points, labels)
            if score > best_score:
                best, best_score = labels, score
    return np.zeros(len(answers), dtype=np.int64) if best is None else best.astype(np.int64)
