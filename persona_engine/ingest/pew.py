"""Pew American Trends Panel waves, in the layout of the OpinionQA data set.

A wave folder (e.g. ``American_Trends_Panel_W27``) holds:

* ``responses.csv``: one row per respondent; ``QKEY`` is the respondent id,
  each question key (``CARS1_W27``) holds the chosen option's *text*,
  demographic columns (``CREGION``, ``AGE``, ``POLPARTY``, ...) hold text,
  and ``WEIGHT_W27`` the survey weight;
* ``info.csv``: one row per question with ``key``, ``question`` (wording),
  ``references`` (a Python-list string of option texts) and
  ``option_ordinal`` (a list of the numeric scale positions of the first
  ``len(option_ordinal)`` references). References after those, such as
  'Refused', are non-answers and become MISSING;
* optionally ``metadata.csv``: ``key`` and ``options`` of each demographic.

Options are put in scale order by their ``option_ordinal`` values (Pew lists
'A mix of both' last but scores it 1.5, between 1 and 2). A question whose
values are all equal (OpinionQA writes ``[1, 1, 1, ...]`` for unordered
choices such as 'industry') is nominal.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import PurePath

import numpy as np
import pandas as pd

from persona_engine.errors import DataError
from persona_engine.ingest.codebook import metadata_column
from persona_engine.ingest.files import InputFile
from persona_engine.ingest.options import ColumnValues, coded_answers
from persona_engine.ingest.table_files import read_table
from persona_engine.ingest.tables import respondent_ids, survey_weights
from persona_engine.opinion_data import OpinionData, Question, Source

RESPONSES_FILE = "responses.csv"
INFO_FILE = "info.csv"
METADATA_FILE = "metadata.csv"
ID_COLUMN = "QKEY"
INFO_COLUMNS = ("key", "question", "references", "option_ordinal")


def read_pew(responses: InputFile, info: InputFile, metadata: InputFile | None = None,
             *, name: str | None = None, max_bytes: int | None = None) -> OpinionData:
    """Read one Pew ATP wave folder into :class:`OpinionData`."""
    limit = {} if max_bytes is None else {"max_bytes": max_bytes}
    table = read_table(responses, **limit)
    where = responses.display
    ids = respondent_ids(table, ID_COLUMN, where)
    info_rows = _info_rows(read_table(info, **limit), info.display)

    questions, answers = [], []
    for key, text, references, ordinal in info_rows:
        if key not in table.columns:
            raise DataError(f"info.csv describes question '{key}', but {RESPONSES_FILE} has no "
                            "such column", file=where, column=key,
                            expected="the responses.csv and info.csv of the same wave")
        question, non_answers = _question(key, text, references, ordinal)
        codes = coded_answers(ColumnValues.of(table[key].tolist()), question.options,
                              non_answers, file=where, column_name=key, options=question.options)
        questions.append(question)
        answers.append(codes)

    weight_column = _weight_column(table.columns, [q.id for q in questions], where)
    demographics = _demographic_keys(metadata, **limit) if metadata is not None else []
    question_keys = {q.id for q in questions}
    others = [c for c in table.columns if c not in question_keys | {ID_COLUMN, weight_column}]
    others.sort(key=lambda c: (c not in demographics, demographics.index(c)
                               if c in demographics else 0))
    meta = pd.DataFrame({c: metadata_column(table[c].tolist()).to_numpy() for c in others},
                        index=ids)
    files = [where, info.display] + ([metadata.display] if metadata is not None else [])
    return OpinionData(
        respondent_ids=ids, questions=tuple(questions), answers=np.column_stack(answers),
        metadata=meta,
        weights=None if weight_column is None else survey_weights(table[weight_column], where,
                                                                   weight_column),
        source=Source(name=name or PurePath(where).parent.name or "pew", format="pew",
                      files=tuple(files), weight_column=weight_column),
    )


def _info_rows(info: pd.DataFrame, where: str) -> list[tuple]:
    """``(key, question, references, option_ordinal)`` per info.csv row."""
    for column in INFO_COLUMNS:
        if column not in info.columns:
            raise DataError(f"a Pew info.csv needs a '{column}' column", file=where, row=1,
                            column=column, expected=f"columns {', '.join(INFO_COLUMNS)}")
    rows = []
    for i, record in enumerate(info[list(INFO_COLUMNS)].itertuples(index=False), start=2):
        key, text, references, ordinal = record
        if pd.isna(key) or not str(key).strip():
            raise DataError("question key is blank", file=where, row=i, column="key")
        references = _literal_list(references, where, i, "references", str)
        ordinal = _literal_list(ordinal, where, i, "option_ordinal", (int, float))
        if len(ordinal) > len(references):
            raise DataError(f"{len(ordinal)} ordinal values for {len(references)} references",
                            file=where, row=i, column="option_ordinal",
                            expected="at most one value per reference")
        if len(set(references[:len(ordinal)])) < 2:
            raise DataError(f"question '{key}' has fewer than 2 answer options", file=where, row=i,
                            column="references", expected="at least 2 options before 'Refused'")
        rows.append((str(key).strip(), "" if pd.isna(text) else str(text).strip(), references,
                     [float(v) for v in ordinal]))
    if not rows:
        raise DataError("info.csv lists no questions", file=where)
    return rows


def _literal_list(cell, where: str, row: int, column: str, kind) -> list:
    """A Python-list string such as ``"['Yes', 'No']"``, read without ``eval``."""
    try:
        value = ast.literal_eval(str(cell))
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        value = None
    if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, kind) and not isinstance(v, bool) for v in value):
        what, example = ("texts", "['Yes', 'No']") if kind is str else ("numbers", "[1.0, 2.0]")
        raise DataError(f"cannot read '{str(cell)[:60]}' as a list of {what}", file=where,
                        row=row, column=column, expected=f"a list like {example}")
    return list(value)


def _question(key: str, text: str, references: list[str], ordinal: list[float]
              ) -> tuple[Question, list[str]]:
    """The question, with options in scale order, and its non-answer texts."""
    scored = references[:len(ordinal)]
    non_answers = references[len(ordinal):]
    if len(set(ordinal)) == 1:  # OpinionQA's mark for unordered choices
        return Question(key, text or key, tuple(scored), ordinal=False), non_answers
    order = sorted(range(len(scored)), key=lambda k: ordinal[k])
    return Question(key, text or key, tuple(scored[k] for k in order), ordinal=True,
                    option_values=tuple(ordinal[k] for k in order)), non_answers


def _weight_column(columns, question_keys: list[str], where: str) -> str | None:
    """``WEIGHT_W<wave>`` for the wave the question keys end in, else the first WEIGHT column."""
    waves = Counter(m.group(1) for k in question_keys if (m := re.search(r"_W(\d+)$", k)))
    if waves:
        wanted = f"WEIGHT_W{waves.most_common(1)[0][0]}"
        if wanted in columns:
            return wanted
    weights = [c for c in columns if str(c).upper().startswith("WEIGHT")]
    return weights[0] if weights else None


def _demographic_keys(metadata: InputFile, **limit) -> list[str]:
    table = read_table(metadata, **limit)
    if "key" not in table.columns:
        raise DataError("a Pew metadata.csv needs a 'key' column", file=metadata.display, row=1,
                        column="key", expected="columns key, options")
    if "options" in table.columns:
        for i, cell in enumerate(table["options"], start=2):
            _literal_list(cell, metadata.display, i, "options", str)
    return [str(k).strip() for k in table["key"].dropna()]
