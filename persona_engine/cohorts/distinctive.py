"""What sets each cohort apart, and what every cohort agrees on: Polis's representativeness and consensus.

Plain functions over :class:`OpinionData` and cohort labels
``(n_respondents,)`` that return pandas DataFrames, weighted as
:mod:`~persona_engine.cohorts.statistics` says:

* :func:`representativeness`: every answer's representativeness for every cohort;
* :func:`distinctive_answers`: each cohort's most distinctive answers;
* :func:`consensus_questions`: answers every cohort leans towards.

They follow Polis's math (``polismath/math/repness.clj``, as ported in the
red-dwarf library): representativeness = smoothed in-cohort share / smoothed
out-of-cohort share, tested with the two-proportion z-test; consensus with the
one-proportion test. Significance is one-sided at ``confidence`` (90% in Polis).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import norm

from persona_engine.cohorts.statistics import (effective_counts, mark_weighting, one_proportion_z, share_of,
                                               smoothed_share, tally_answers, two_proportion_z)
from persona_engine.opinion_data import OpinionData, Question
from persona_engine.wording import short_question_texts

__all__ = ["consensus_questions", "distinctive_answers", "representativeness"]


def representativeness(data: OpinionData, labels, confidence: float = 0.90, *,
                       weighted: bool = True) -> pd.DataFrame:
    """Polis's representativeness of every answer for every cohort.

    One row per cohort × question × option: ``cohort``, ``question_id``,
    ``question`` (short text), ``option``, ``answer``, ``n_in`` (cohort
    members who answered), ``share_in`` (raw share among them),
    ``share_out`` (raw share among everyone else), ``representativeness``
    (smoothed in-share / smoothed out-share), ``z`` (two-proportion test),
    ``significant`` (``z`` above the one-sided critical value at
    ``confidence``) and ``score`` = representativeness × z × smoothed
    in-share, Polis's ranking metric without its agree-above-half factor,
    which has no meaning for questions with more than two answers. Weighted,
    smoothing and tests use Kish effective counts.
    """
    tally = tally_answers(data, labels, weighted)
    short = short_question_texts(data.questions)
    critical = norm.ppf(confidence)
    cohorts = tally.cohorts
    frames = []
    for j, question in enumerate(data.questions):
        m = question.n_options
        w_in, s_in = tally.weight[:, j, :m], tally.square[:, j]
        w_out = np.maximum(w_in.sum(axis=0)[None, :] - w_in, 0)  # everyone but the cohort
        s_out = np.maximum(s_in.sum() - s_in, 0)
        c_in, n_in = effective_counts(w_in, s_in)
        c_out, n_out = effective_counts(w_out, s_out)
        n_in, n_out = n_in[:, None], n_out[:, None]
        p_in, p_out = smoothed_share(c_in, n_in), smoothed_share(c_out, n_out)
        z = two_proportion_z(c_in, n_in, c_out, n_out)
        ratio = p_in / p_out
        frames.append(pd.DataFrame({
            "cohort": np.repeat(cohorts, m),
            "question_id": question.id,
            "question": short[j],
            "option": np.tile(np.arange(m), len(cohorts)),
            "answer": np.tile(np.array(question.options, dtype=object), len(cohorts)),
            "n_in": np.repeat(tally.count[:, j, :m].sum(axis=1), m),
            "share_in": share_of(w_in, w_in.sum(axis=1, keepdims=True)).ravel(),
            "share_out": share_of(w_out, w_out.sum(axis=1, keepdims=True)).ravel(),
            "representativeness": ratio.ravel(),
            "z": z.ravel(),
            "significant": (z > critical).ravel(),
            "score": (ratio * z * p_in).ravel(),
        }))
    return mark_weighting(pd.concat(frames, ignore_index=True), data, weighted)


def distinctive_answers(data: OpinionData, labels, top: int = 5, confidence: float = 0.90, *,
                        weighted: bool = True) -> pd.DataFrame:
    """Each cohort's most distinctive answers, at most one per question.

    Significant answers more common in the cohort than outside, best
    ``score`` first (see :func:`representativeness`). As in Polis, a cohort
    with no significant answer still gets its single best one, with
    ``significant`` False so that readers can tell.
    """
    table = representativeness(data, labels, confidence, weighted=weighted)
    table = table[table["representativeness"] > 1]
    picked = []
    for _, rows in table.groupby("cohort", sort=True):
        rows = rows.sort_values(["significant", "score"], ascending=False, kind="stable")
        rows = rows.drop_duplicates("question_id")
        significant = rows[rows["significant"]]
        picked.append(significant.head(top) if len(significant) else rows.head(1))
    columns = ["cohort", "question_id", "question", "answer", "share_in", "share_out",
               "representativeness", "z", "significant"]
    picked = pd.concat(picked, ignore_index=True)[columns] if picked else pd.DataFrame(columns=columns)
    return mark_weighting(picked, data, weighted)


def consensus_questions(data: OpinionData, labels, threshold: float = 0.5,
                        confidence: float = 0.90, *, weighted: bool = True) -> pd.DataFrame:
    """Answers that every cohort leans towards, strongest consensus first.

    An answer is a consensus when, in every cohort, its smoothed share is
    above ``threshold`` and significantly so (Polis's one-proportion test at
    ``confidence``, on Kish effective counts when weighted). On ordinal
    questions with four or more options, each side of the scale (e.g. "agree
    or strongly agree") also counts as an answer. Columns: ``question_id``,
    ``question``, ``answer``, ``consensus`` (Polis's group-aware consensus:
    the product over cohorts of the smoothed share), ``lowest_share`` (raw,
    in the least convinced cohort), ``overall_share``.
    """
    tally = tally_answers(data, labels, weighted)
    short = short_question_texts(data.questions)
    critical = norm.ppf(confidence)
    rows = []
    for j, question in enumerate(data.questions):
        weight = tally.weight[:, j, :question.n_options]
        answered, square = weight.sum(axis=1), tally.square[:, j]
        for name, options in _answer_sets(question):
            chose = weight[:, options].sum(axis=1)
            count, n = effective_counts(np.column_stack([chose, answered - chose]), square)
            p = smoothed_share(count[:, 0], n)
            if np.all(p > threshold) and np.all(one_proportion_z(count[:, 0], n, threshold) > critical):
                share = np.where(answered > 0, share_of(chose, answered), 0.0)
                rows.append((question.id, short[j], name, float(np.prod(p)), float(np.min(share)),
                             float(np.nan_to_num(share_of(chose.sum(), answered.sum())))))
    table = pd.DataFrame(rows, columns=["question_id", "question", "answer", "consensus",
                                        "lowest_share", "overall_share"])
    table = table.sort_values("consensus", ascending=False, kind="stable").reset_index(drop=True)
    return mark_weighting(table, data, weighted)


def _answer_sets(question: Question) -> list[tuple[str, list[int]]]:
    """Single options, plus both sides of a long ordinal scale (middle option excluded)."""
    sets = [(label, [o]) for o, label in enumerate(question.options)]
    m = question.n_options
    if question.ordinal and m >= 4:
        half = m // 2
        sets.append((" or ".join(question.options[:half]), list(range(half))))
        sets.append((" or ".join(question.options[m - half:]), list(range(m - half, m))))
    return sets
