"""Questions the survey never asked: folds of whole questions, two non-LLM references, and their measures.

An LLM steered toward a persona can answer any question; the collaborative
filter only the ones it was fitted on. To measure the first, whole
questions are held out of everything learned (:func:`question_folds`), and
the steered model is compared with what a careful analyst would do
without an LLM:

:func:`nearest_question_transfer`
    the respondent's answer to the most similar training question (by the
    sentence embeddings of the question texts) that they answered, mapped
    by option position (the 2nd of 3 options is the middle of 5);
:class:`TextToFactor`
    the held-out question's filter parameters predicted from the sentence
    embedding of its text and options by a ridge regression fitted on the
    training questions. The filter here is the paper's: each answer, its
    option position in [0, 1], is ``u · v + b``; ``v`` and ``b`` of each
    training question are fitted by ridge on the respondents' factors ``u``.

Measures beside accuracy: :func:`pooled_auc` (two-option items, and the top
option against the rest of longer ones) and :func:`cohort_mean_rho`
(Spearman's ρ between predicted and real cohort means over cohort × question
cells), the figures Kim & Lee (2023) report for the GSS.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from persona_engine.errors import DataError
from persona_engine.opinion_data import MISSING


def question_folds(n_questions: int, n_folds: int = 3, random_state: int = 0) -> list[np.ndarray]:
    """``n_folds`` disjoint sets of question indices (sorted) that together cover every question once."""
    if not 2 <= n_folds <= n_questions:
        raise DataError(f"{n_folds} question folds for {n_questions} questions",
                        expected="at least 2 folds and no more folds than questions")
    order = np.random.default_rng([random_state, 7]).permutation(n_questions)
    return [np.sort(fold) for fold in np.array_split(order, n_folds)]


def positions(codes: np.ndarray, n_options: np.ndarray) -> np.ndarray:
    """Option codes as positions in [0, 1] (first option 0, last 1); NaN where ``MISSING``.

    ``codes`` ``(..., n_questions)``, ``n_options`` ``(n_questions,)``.
    """
    codes = np.asarray(codes)
    span = np.maximum(np.asarray(n_options) - 1, 1)
    return np.where(codes == MISSING, np.nan, codes / span)


def nearest_code(position: np.ndarray, n_options: np.ndarray) -> np.ndarray:
    """The option nearest each position in [0, 1]; ``MISSING`` where the position is NaN."""
    position = np.asarray(position, dtype=np.float64)
    n_options = np.asarray(n_options)
    codes = np.rint(np.clip(np.nan_to_num(position), 0, 1) * (n_options - 1)).astype(np.int64)
    return np.where(np.isnan(position), MISSING, codes)


def nearest_question_transfer(seen: np.ndarray, n_options: np.ndarray, similarity: np.ndarray,
                              held_out: Sequence[int], training: Sequence[int]) -> np.ndarray:
    """Each respondent's answer to the most similar training question they answered, mapped by position.

    Parameters
    ----------
    seen:
        Answers ``(n_respondents, n_questions)``; only the ``training`` columns are read.
    similarity:
        ``(n_questions, n_questions)`` similarity of the question texts.
    held_out, training:
        Question indices to predict, and to predict from.

    Returns
    -------
    Codes ``(n_respondents, len(held_out))``; ``MISSING`` for a respondent
    who answered no training question.
    """
    held_out, training = np.asarray(held_out), np.asarray(training)
    answered = np.asarray(seen)[:, training] != MISSING
    place = positions(np.asarray(seen)[:, training], np.asarray(n_options)[training])
    out = np.full((len(seen), len(held_out)), MISSING, dtype=np.int64)
    for k, j in enumerate(held_out):
        ranked = np.argsort(-similarity[j, training], kind="stable")
        # the first answered question in order of similarity, per respondent
        first = np.argmax(answered[:, ranked], axis=1)
        any_answer = answered.any(axis=1)
        chosen = place[np.arange(len(seen)), ranked[first]]
        out[any_answer, k] = nearest_code(chosen[any_answer], np.full(any_answer.sum(), n_options[j]))
    return out


class TextToFactor:
    """Predict a question's filter parameters from its text, by ridge regression (scikit-learn style).

    Parameters
    ----------
    alpha:
        Ridge penalty of the map from text vectors to question parameters.
    factor_alpha:
        Ridge penalty of each training question's ``(v, b)`` on the factors.
    """

    def __init__(self, alpha: float = 1.0, factor_alpha: float = 1.0):
        self.alpha, self.factor_alpha = alpha, factor_alpha

    def fit(self, text_vectors: np.ndarray, factors: np.ndarray, answers: np.ndarray,
            n_options: np.ndarray) -> "TextToFactor":
        """Fit on training questions.

        ``text_vectors`` ``(n_questions, d)``: their sentence embeddings;
        ``factors`` ``(n_respondents, dim)``: respondents' factors;
        ``answers`` ``(n_respondents, n_questions)`` codes; ``n_options`` ``(n_questions,)``.
        """
        from sklearn.linear_model import Ridge

        place = positions(answers, n_options)
        params = []
        for j in range(place.shape[1]):
            known = ~np.isnan(place[:, j])
            if known.sum() < 2:
                params.append(np.r_[np.zeros(factors.shape[1]), np.nanmean(place[:, j]) if known.any() else 0.5])
                continue
            fit = Ridge(alpha=self.factor_alpha).fit(factors[known], place[known, j])
            params.append(np.r_[fit.coef_, fit.intercept_])
        self.question_params_ = np.asarray(params)  # (n_questions, dim + 1): v then b
        self.text_model_ = Ridge(alpha=self.alpha).fit(np.asarray(text_vectors), self.question_params_)
        return self

    def predict_params(self, text_vectors: np.ndarray) -> np.ndarray:
        """``(n, dim + 1)``: predicted ``v`` and ``b`` of questions from their text vectors."""
        return self.text_model_.predict(np.asarray(text_vectors))

    def predict_positions(self, text_vectors: np.ndarray, factors: np.ndarray) -> np.ndarray:
        """``(n_respondents, n)`` predicted positions in [0, 1] on the new questions."""
        params = self.predict_params(text_vectors)
        return np.clip(factors @ params[:, :-1].T + params[:, -1], 0, 1)

    def predict(self, text_vectors: np.ndarray, factors: np.ndarray, n_options: np.ndarray) -> np.ndarray:
        """``(n_respondents, n)`` codes: the option nearest each predicted position."""
        place = self.predict_positions(text_vectors, factors)
        return nearest_code(place, np.broadcast_to(np.asarray(n_options), place.shape))


def top_option_scores(probs: np.ndarray, n_options: np.ndarray) -> np.ndarray:
    """P(last option) of each cell, from ``probs`` ``(n_respondents, n_questions, max_options)``."""
    last = (np.asarray(n_options) - 1)[None, :, None]
    return np.take_along_axis(probs, np.broadcast_to(last, probs.shape[:2] + (1,)), axis=2)[..., 0]


def pooled_auc(scores: np.ndarray, answers: np.ndarray, mask: np.ndarray, n_options: np.ndarray) -> float | None:
    """ROC AUC of ``scores`` for "chose the last option", pooled over the ``mask`` cells.

    For two-option items the last option is one of the two answers; for longer
    ones it is the top of the scale against the rest. ``None`` when the cells
    hold only one class.
    """
    from sklearn.metrics import roc_auc_score

    truth = (answers == (np.asarray(n_options) - 1)[None, :])[mask]
    if truth.all() or not truth.any():
        return None
    return float(roc_auc_score(truth, np.asarray(scores, dtype=np.float64)[mask]))


def cohort_means(place: np.ndarray, labels: np.ndarray, mask: np.ndarray, min_answers: int = 5) -> dict:
    """``{(cohort, question): mean position}`` over the ``mask`` cells of cohorts with ``min_answers``."""
    out = {}
    for cohort in np.unique(labels[labels >= 0]):
        members = labels == cohort
        for j in range(place.shape[1]):
            cells = members & mask[:, j] & ~np.isnan(place[:, j])
            if cells.sum() >= min_answers:
                out[(int(cohort), j)] = float(place[cells, j].mean())
    return out


def cohort_mean_rho(predicted: np.ndarray, real: np.ndarray, labels: np.ndarray, mask: np.ndarray,
                    min_answers: int = 5) -> float | None:
    """Spearman's ρ between predicted and real cohort mean positions over cohort × question cells.

    ``predicted``, ``real``: positions ``(n_respondents, n_questions)`` (NaN
    where none). ``None`` with fewer than 3 cells or a constant side.
    """
    from scipy.stats import spearmanr

    truth = cohort_means(real, labels, mask, min_answers)
    model = cohort_means(predicted, labels, mask & ~np.isnan(real), min_answers)
    cells = sorted(set(truth) & set(model))
    if len(cells) < 3:
        return None
    x, y = np.array([model[c] for c in cells]), np.array([truth[c] for c in cells])
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return float(spearmanr(x, y).statistic)
