"""Held-out answers and the metric the whole project is judged by.

Quality is measured the same way everywhere (embeddings, cohorts, steering):
hide a share of each respondent's answers, predict them from the rest, and
average accuracy per respondent (macro), so that people who answered many
questions do not dominate.

Short batteries (a 3- or 4-question survey) leave most respondents with too
few answers to hide a share of; there every respondent with at least two
answers has exactly one hidden instead (leave-one-out), so that every survey
with two questions or more can be evaluated. :attr:`HoldoutSplit.protocol`
says which rule was used, in words for tables and reports.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from persona_engine.opinion_data import MISSING


@dataclass(frozen=True)
class HoldoutSplit:
    """A split of each respondent's answers into training and held-out cells.

    Attributes
    ----------
    train_answers:
        Shape ``(n_respondents, n_questions)``: the answers with held-out
        cells set to ``MISSING``.
    test_mask:
        Shape ``(n_respondents, n_questions)`` bool: the held-out cells.
    eligible:
        Shape ``(n_respondents,)`` bool: respondents with enough answers to
        have any held out.
    leave_one_out:
        Whether the battery was too short for the share and one answer per
        respondent was held out instead.
    fraction, min_answers:
        The share asked for and the answers a respondent needed for it.
    """

    train_answers: np.ndarray
    test_mask: np.ndarray
    eligible: np.ndarray
    leave_one_out: bool = False
    fraction: float = 0.2
    min_answers: int = 5

    @property
    def protocol(self) -> str:
        """What was held out, in words for tables and reports."""
        return held_out_description(self.leave_one_out, self.fraction, self.min_answers)


def held_out_description(leave_one_out: bool, fraction: float = 0.2, min_answers: int = 5) -> str:
    """The sentence a table or report prints about which answers were held out."""
    if leave_one_out:
        return (f"held out: one answer per respondent (leave-one-out), respondents have fewer than "
                f"{min_answers} answers")
    return f"held out: {fraction:.0%} of each respondent's answers (respondents with at least {min_answers})"


def holdout_split(
    answers: np.ndarray,
    fraction: float = 0.2,
    min_answers: int = 5,
    random_state: int = 0,
) -> HoldoutSplit:
    """Hide ``fraction`` of each eligible respondent's answers (at least one).

    Respondents with fewer than ``min_answers`` known answers keep all of
    them in training and are not scored. When they are most of those with
    two answers or more (a short battery), each respondent with at least two
    answers has exactly one hidden instead (``leave_one_out``): a respondent
    needs one answer to be placed from and one to be scored on.
    """
    answers = np.asarray(answers)
    observed = answers != MISSING
    counts = observed.sum(axis=1)
    eligible = counts >= min_answers
    leave_one_out = bool(eligible.sum() < 0.5 * (counts >= 2).sum())
    if leave_one_out:
        eligible = counts >= 2
        n_hidden = eligible.astype(int)
    else:
        n_hidden = np.where(eligible, np.maximum(1, np.round(fraction * counts)), 0).astype(int)

    rng = np.random.default_rng(random_state)
    keys = rng.random(answers.shape)
    keys[~observed] = np.inf  # unobserved cells sort last and are never picked
    ranks = np.argsort(np.argsort(keys, axis=1), axis=1)
    test_mask = ranks < n_hidden[:, None]

    train = answers.copy()
    train[test_mask] = MISSING
    return HoldoutSplit(train_answers=train, test_mask=test_mask, eligible=eligible,
                        leave_one_out=leave_one_out, fraction=fraction, min_answers=min_answers)


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
