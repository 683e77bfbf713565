"""Any group of respondents against everyone: what a selection on the map believes.

The app lets people pick respondents by hand (a lasso on the map, a click);
these functions describe such a group the way :mod:`persona_engine.cohorts.profiles`
and :mod:`persona_engine.cohorts.distinctive` describe cohorts, by treating the
group as a cohort of its own against everyone else. They also compare two cohorts question by question.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd

from persona_engine.cohorts.distinctive import distinctive_answers
from persona_engine.cohorts.profiles import answer_distribution
from persona_engine.errors import DataError
from persona_engine.opinion_data import OpinionData
from persona_engine.wording import short_question_texts


def selection_labels(data: OpinionData, respondent_ids: Iterable) -> np.ndarray:
    """``(n_respondents,)`` int64: 1 for the respondents in ``respondent_ids``, else 0.

    Unknown ids are refused, so that a stale selection cannot silently shrink.
    """
    row_of = {rid: row for row, rid in enumerate(data.respondent_ids)}
    labels = np.zeros(data.n_respondents, dtype=np.int64)
    for rid in respondent_ids:
        row = row_of.get(str(rid))
        if row is None:
            raise DataError(f"no respondent '{rid}' in this study", column="respondent_id")
        labels[row] = 1
    return labels


def selection_profile(data: OpinionData, respondent_ids: Iterable, top: int = 5) -> pd.DataFrame:
    """The selected group's most distinctive answers against everyone else.

    Columns as :func:`~persona_engine.cohorts.distinctive.distinctive_answers` (``share_in``
    in the group, ``share_out`` among the others) plus ``share_all`` (among
    everyone). Empty when the group is empty or is everyone.
    """
    labels = selection_labels(data, respondent_ids)
    n_in = int(labels.sum())
    if n_in == 0 or n_in == data.n_respondents:
        return pd.DataFrame(columns=["question_id", "question", "answer", "share_in", "share_out",
                                     "share_all", "representativeness", "z", "significant"])
    table = distinctive_answers(data, labels, top=top)
    table = table[table["cohort"] == 1].drop(columns="cohort").reset_index(drop=True)
    everyone = answer_distribution(data, labels)
    everyone = everyone[everyone["cohort"] == 1].set_index(["question_id", "answer"])["overall_share"]
    table.insert(5, "share_all", [float(everyone.get((q, a), np.nan))
                                  for q, a in zip(table["question_id"], table["answer"])])
    return table


def cohort_differences(data: OpinionData, labels, a: int, b: int, top: int = 8) -> pd.DataFrame:
    """The questions on which cohorts ``a`` and ``b`` differ most.

    One row per question, largest difference first: ``question_id``,
    ``question`` (short text), ``distance`` (total variation distance between
    the two cohorts' answer distributions, 0 to 1), and the answer whose share
    differs most: ``answer``, ``share_a``, ``share_b``.
    """
    labels = np.asarray(labels)
    for cohort in (a, b):
        if not np.any(labels == cohort):
            raise DataError(f"no cohort {cohort} in this study")
    table = answer_distribution(data, labels)
    short = dict(zip(data.question_ids, short_question_texts(data.questions)))
    share_a = table[table["cohort"] == a].set_index(["question_id", "option"])
    share_b = table[table["cohort"] == b].set_index(["question_id", "option"])
    rows = []
    for question_id in data.question_ids:
        pa = share_a.loc[question_id, "share"].fillna(0).to_numpy()
        pb = share_b.loc[question_id, "share"].fillna(0).to_numpy()
        biggest = int(np.argmax(np.abs(pa - pb)))
        rows.append((question_id, short[question_id], float(0.5 * np.abs(pa - pb).sum()),
                     share_a.loc[question_id, "answer"].iloc[biggest], float(pa[biggest]),
                     float(pb[biggest])))
    frame = pd.DataFrame(rows, columns=["question_id", "question", "distance", "answer", "share_a", "share_b"])
    return frame.sort_values("distance", ascending=False, kind="stable").head(top).reset_index(drop=True)
