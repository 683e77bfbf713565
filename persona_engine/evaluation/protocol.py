"""Who is trained on, who is scored, and which answers stay hidden.

The paper's protocol, kept strict:

* respondents are split into a **training group** and an **unseen group**
  (``respondent_fraction`` of the eligible respondents);
* every eligible respondent's answers are split into **seen** and
  **held-out** ones (:func:`~persona_engine.evaluation.protocol.holdout_split`; on a short
  battery one answer per respondent is held out, leave-one-out, and
  :attr:`EvaluationSplit.protocol` says so).

Everything learned (the collaborative filter, the cohorts, the soft-prompting
model, majorities, letter calibration) sees only the training group's seen
answers. The main table scores the training group's held-out answers; the
fold-in table places each unseen respondent from ``K`` of their seen answers
and scores their held-out ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from persona_engine.errors import DataError
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



@dataclass(frozen=True)
class EvaluationSplit:
    """The split of one answer matrix ``(n_respondents, n_questions)``.

    Attributes
    ----------
    seen:
        The answers anything may learn from or condition on: held-out cells
        set to ``MISSING``. Shape ``(n_respondents, n_questions)``.
    held_out:
        Bool ``(n_respondents, n_questions)``: the cells that are scored.
    trained:
        Bool ``(n_respondents,)``: the training group. Respondents with too
        few answers to hold any out are always in it (and never scored).
    protocol:
        Which answers were held out, in words for tables and reports
        (:attr:`~persona_engine.evaluation.protocol.HoldoutSplit.protocol`).
    """

    seen: np.ndarray
    held_out: np.ndarray
    trained: np.ndarray
    protocol: str = ""

    @property
    def leave_one_out(self) -> bool:
        """Whether one answer per respondent was held out (a short battery)."""
        return "leave-one-out" in self.protocol

    @property
    def training_answers(self) -> np.ndarray:
        """The training group's seen answers, ``(n_trained, n_questions)``: all that is learned from."""
        return self.seen[self.trained]

    @property
    def unseen(self) -> np.ndarray:
        """Bool ``(n_respondents,)``: the unseen group."""
        return ~self.trained


def evaluation_split(answers: np.ndarray, *, respondent_fraction: float = 0.2,
                     question_fraction: float = 0.2, min_answers: int = 5,
                     random_state: int = 0) -> EvaluationSplit:
    """Split respondents into groups and each one's answers into seen and held out.

    ``answers``: ``(n_respondents, n_questions)`` option codes, ``MISSING``
    where unknown. Respondents with fewer than ``min_answers`` answers stay
    in training with all their answers; when that is most of them (a short
    battery), every respondent with two answers or more has one held out.
    """
    if not 0 <= respondent_fraction < 1 or not 0 < question_fraction < 1:
        raise DataError(f"fractions {respondent_fraction} (respondents) and {question_fraction} (answers)",
                        expected="a respondent fraction in [0, 1) and an answer fraction in (0, 1)")
    answers = np.asarray(answers)
    split = holdout_split(answers, fraction=question_fraction, min_answers=min_answers,
                          random_state=random_state)
    eligible = np.flatnonzero(split.eligible)
    if eligible.size < 2:
        needed = 2 if split.leave_one_out else min_answers
        raise DataError(f"{eligible.size} respondents with at least {needed} answers",
                        expected="at least two respondents to evaluate on")
    rng = np.random.default_rng([random_state, 1])
    n_unseen = int(round(respondent_fraction * eligible.size))
    trained = np.ones(answers.shape[0], dtype=bool)
    trained[rng.choice(eligible, n_unseen, replace=False)] = False
    return EvaluationSplit(seen=split.train_answers, held_out=split.test_mask, trained=trained,
                           protocol=split.protocol)


def keep_answers(seen: np.ndarray, k: int | None, random_state: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Keep ``k`` random known answers per row of ``seen`` ``(m, n_questions)`` (``None``: all).

    Returns ``(partial, enough)``: the reduced answers ``(m, n_questions)``
    and a bool ``(m,)`` of the rows that had at least ``k`` answers (the
    others keep all of theirs and should not be counted at ``k``).
    """
    seen = np.asarray(seen)
    known = seen != MISSING
    if k is None:
        return seen.copy(), known.any(axis=1)
    rng = np.random.default_rng(random_state)
    keys = np.where(known, rng.random(seen.shape), np.inf)
    ranks = np.argsort(np.argsort(keys, axis=1), axis=1)
    partial = np.where(ranks < k, seen, MISSING).astype(seen.dtype)
    return partial, known.sum(axis=1) >= k


def subsample(rows: np.ndarray, limit: int | None, random_state: int) -> np.ndarray:
    """At most ``limit`` of ``rows`` (sorted), drawn without replacement; ``None``: all."""
    rows = np.asarray(rows)
    if limit is None or rows.size <= limit:
        return rows
    return np.sort(np.random.default_rng(random_state).choice(rows, limit, replace=False))
