"""The references every method must beat: majorities, and Polis's own opinion groups.

* :func:`question_majority`: each question's most common answer.
* :func:`cohort_majority`: a cohort used as a predictor: every respondent is
  predicted to give their cohort's most common answer. Scored on held-out
  answers (:func:`~persona_engine.evaluation.protocol.holdout_split`,
  :func:`~persona_engine.evaluation.metrics.macro_accuracy`), it says how much
  a cohort persona knows about its members beyond the overall majority.
* :func:`polis_groups`: Polis's own opinion groups (mean-imputed vote matrix,
  PCA to 2-D, k-means with k in 2..5 by silhouette), the baseline our
  cohorts must match or beat.
"""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import silhouette_score
from threadpoolctl import threadpool_limits

from persona_engine.errors import DataError
from persona_engine.opinion_data import MISSING


def question_majority(answers: np.ndarray, n_options: np.ndarray) -> np.ndarray:
    """Each question's most common known answer, shape ``(n_questions,)``.

    The reference every predictor must beat. Ties go to the lower option.
    Questions with no known answer get option 0.
    """
    answers = np.asarray(answers)
    majority = np.zeros(answers.shape[1], dtype=np.int64)
    for j in range(answers.shape[1]):
        col = answers[:, j]
        col = col[col != MISSING]
        if col.size:
            majority[j] = int(np.bincount(col, minlength=int(n_options[j])).argmax())
    return majority


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
    :func:`~persona_engine.evaluation.references.question_majority`); a cohort with no answer
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
