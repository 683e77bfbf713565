"""Wide and long tables of answers.

*Wide*: one row per respondent, one column per question, plus an optional id
column and metadata columns. *Long*: one row per answer, with a respondent
id, a question id and the answer.

Without a codebook, a wide table's columns are sorted into roles by these
rules, in order (a codebook overrides all of them):

1. an id column: the first column named like ``id``, ``respondent_id``,
   ``participant`` or ``QKEY`` whose values are all present (an id that
   repeats is an error naming its rows; without such a column respondents
   are numbered 1, 2, ... in row order);
2. a weight column: the first numeric column whose name contains ``weight``;
3. metadata: columns named like a demographic (age, sex, race, party, ...),
   columns with a single value (a :class:`~persona_engine.errors.DataWarning`
   says that such a question was dropped), columns of numbers with decimals, and columns
   with more than :data:`MAX_AUTO_OPTIONS` distinct values (ages, incomes,
   free-text comments);
4. every other column is a question.
"""

from __future__ import annotations

import difflib
import re
import warnings
from pathlib import PurePath

import numpy as np
import pandas as pd

from persona_engine.errors import DataError, DataWarning
from persona_engine.ingest.codebook import (Codebook, QuestionSpec, metadata_column,
                                            specified_question)
from persona_engine.ingest.options import MAX_AUTO_OPTIONS, ColumnValues
from persona_engine.opinion_data import MISSING, OpinionData, Question, Source

ID_NAMES = {"id", "respondent_id", "respondentid", "respondent", "participant",
            "participant_id", "participantid", "qkey", "caseid", "case_id", "responseid",
            "response_id", "resp_id", "respid", "pid", "uid", "user_id", "userid",
            "person_id", "personid", "subject_id", "record_id"}
DEMOGRAPHIC_NAMES = {
    "age", "agegroup", "age_group", "sex", "gender", "race", "ethnicity", "hispanic",
    "educ", "education", "degree", "income", "rincome", "party", "partyid", "polparty",
    "party_id", "polviews", "ideology", "polideology", "region", "cregion", "state", "country",
    "county", "city", "zip", "zipcode", "marital", "relig", "religion", "religattend",
    "citizen", "wrkstat", "employment", "occupation", "year", "wave", "date", "language",
}


def _plain(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", str(name).strip().casefold())


def is_weight_name(name: str) -> bool:
    return "weight" in _plain(name)


# ------------------------------------------------------------------------ wide
def read_wide(table: pd.DataFrame, file: str, *, codebook: Codebook | None = None,
              id_column: str | None = None, name: str | None = None,
              files: tuple[str, ...] = ()) -> OpinionData:
    """Read a wide table (one row per respondent) into :class:`OpinionData`."""
    columns = list(table.columns)
    book = codebook or Codebook()
    if codebook is not None:
        codebook.check_columns(columns, file)
    id_column = id_column or book.id_column
    if id_column is not None:
        ids = respondent_ids(table, id_column, file)
    else:
        id_column = _auto_id_column(table, file)
        ids = (id_texts(table[id_column]).to_numpy(dtype=object) if id_column
               else np.arange(1, len(table) + 1).astype(str))
    weight_column = book.weight_column or _auto_weight_column(table, exclude={id_column} | set(
        book.questions) | set(book.metadata) | set(book.ignore))

    questions: list[Question] = []
    answers: list[np.ndarray] = []
    metadata: dict[str, pd.Series] = {}
    for column in columns:
        if column in (id_column, weight_column) or column in book.ignore:
            continue
        values = table[column].tolist()
        if column in book.questions:
            question, coded = specified_question(book.questions[column], values, file=file,
                                                 missing=book.missing)
        elif column in book.metadata or book.questions or not _looks_like_question(column, values):
            if column not in book.metadata and not book.questions:
                _warn_if_one_option(column, values, file)
            spec = book.metadata.get(column)
            metadata[column] = metadata_column(values, spec.labels if spec else None)
            continue
        else:
            question, coded = specified_question(QuestionSpec(column), values, file=file,
                                                 missing=book.missing)
        questions.append(question)
        answers.append(coded)
    if not questions:
        raise DataError(f"found no question columns among {len(columns)} columns "
                        f"({', '.join(map(str, columns[:10]))})", file=file,
                        expected="columns of closed answers, or a codebook listing the questions")
    weights = None if weight_column is None else survey_weights(table[weight_column], file,
                                                                 weight_column)
    return OpinionData(
        respondent_ids=ids, questions=tuple(questions), answers=np.column_stack(answers),
        metadata=pd.DataFrame({c: s.to_numpy() for c, s in metadata.items()}, index=ids),
        weights=weights,
        source=Source(name=name or book.name or PurePath(file).stem, format="wide",
                      files=files or (file,), weight_column=weight_column),
    )


def _warn_if_one_option(column: str, values: list, file: str) -> None:
    """A column that would be a question but for its single answer is kept as metadata: say so."""
    if _plain(column) in DEMOGRAPHIC_NAMES | ID_NAMES:
        return
    observed = ColumnValues.of(values)
    if observed.n_distinct == 1 and (not observed.numeric or observed.whole_numbers):
        only = observed.spellings[0]
        warnings.warn(DataWarning(f"{file}, column '{column}': question {column} has one option ('{only}'): "
                                  "dropped from the questions (kept as metadata)"), stacklevel=2)


def _looks_like_question(column: str, values: list) -> bool:
    if _plain(column) in DEMOGRAPHIC_NAMES | ID_NAMES:
        return False
    observed = ColumnValues.of(values)
    if observed.n_distinct < 2 or observed.n_distinct > MAX_AUTO_OPTIONS:
        return False
    return not observed.numeric or observed.whole_numbers


def _auto_id_column(table: pd.DataFrame, file: str = "") -> str | None:
    """The first column named like an id whose values are all there; repeated ids are an error, never metadata.

    A column named like an id with a blank is taken for something else
    (metadata); one whose ids repeat would turn the same person into two
    respondents, so :func:`respondent_ids` raises, naming the id and its rows.
    """
    for column in table.columns:
        if _plain(column) in ID_NAMES:
            values = table[column]
            text = id_texts(values)
            if values.notna().all() and (text != "").all():
                if not text.is_unique:
                    respondent_ids(table, column, file)  # raises, naming the repeated id's rows
                return column
    return None


def _auto_weight_column(table: pd.DataFrame, exclude: set) -> str | None:
    for column in table.columns:
        if column not in exclude and is_weight_name(column) and ColumnValues.of(
                table[column].tolist()).numeric:
            return column
    return None


def respondent_ids(table: pd.DataFrame, column: str, file: str) -> np.ndarray:
    """The id column as unique strings, shape ``(n_rows,)``.

    Raises :class:`DataError` naming the rows of a blank or repeated id.
    """
    if column not in table.columns:
        raise DataError(f"has no id column '{column}'", file=file, column=column,
                        expected=f"one of {', '.join(map(str, table.columns[:12]))}")
    ids = id_texts(table[column])
    blank = table[column].isna().to_numpy() | (ids == "").to_numpy()
    if blank.any():
        raise DataError("respondent id is blank", file=file, row=int(np.flatnonzero(blank)[0]) + 2,
                        column=column, expected="an id on every row")
    repeated = ids[ids.duplicated(keep=False)]
    if len(repeated):
        first = repeated.iloc[0]
        rows = [int(i) + 2 for i in np.flatnonzero((ids == first).to_numpy())]
        shown = ", ".join(map(str, rows[:6])) + (", ..." if len(rows) > 6 else "")
        raise DataError(f"respondent id '{first}' appears {len(rows)} times (rows {shown}); "
                        f"{repeated.nunique()} id(s) are repeated", file=file, column=column,
                        expected="one row per respondent")
    return ids.to_numpy(dtype=object)


def id_texts(values: pd.Series) -> pd.Series:
    """Ids as trimmed text; a whole number read as ``7.0`` (Excel, Parquet) is ``"7"``."""
    def text(value) -> str:
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            return str(int(value))
        return str(value).strip()
    return pd.Series([text(v) for v in values], index=values.index, dtype=object)


def survey_weights(values: pd.Series, file: str, column: str) -> np.ndarray:
    """Survey weights, shape ``(n_respondents,)``; every row needs a weight >= 0."""
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(numbers) | (numbers < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"weight '{values.iloc[i]}' is not a number >= 0", file=file, row=i + 2,
                        column=column, expected="a non-negative weight on every row")
    return numbers


# ------------------------------------------------------------------------ long
def read_long(table: pd.DataFrame, file: str, *, codebook: Codebook | None = None,
              respondent_column: str = "respondent_id", question_column: str = "question_id",
              answer_column: str = "answer", name: str | None = None,
              files: tuple[str, ...] = ()) -> OpinionData:
    """Read a long table (one row per answer) into :class:`OpinionData`.

    Other columns that hold one value per respondent (e.g. party) become
    metadata; a numeric column named like ``weight`` becomes the weights.
    """
    book = codebook or Codebook()
    if book.id_column in table.columns:
        respondent_column = book.id_column
    for column in (respondent_column, question_column, answer_column):
        if column not in table.columns:
            raise DataError(f"a long table needs a '{column}' column", file=file, row=1,
                            column=column,
                            expected=f"columns {respondent_column}, {question_column}, "
                                     f"{answer_column}; found {', '.join(map(str, table.columns))}")
    rid = _key_column(table, respondent_column, file)
    qid = _key_column(table, question_column, file)
    repeated = pd.DataFrame({"r": rid, "q": qid}).duplicated(keep=False).to_numpy()
    if repeated.any():
        first = (rid[repeated][0], qid[repeated][0])
        rows = [int(i) + 2 for i in np.flatnonzero((rid == first[0]) & (qid == first[1]))]
        raise DataError(f"respondent '{first[0]}' answers question '{first[1]}' more than once "
                        f"(rows {', '.join(map(str, rows[:6]))})", file=file,
                        column=answer_column, expected="one row per respondent and question")
    question_of_row, present = pd.factorize(qid)
    rows_of = dict(zip(present, np.split(np.argsort(question_of_row, kind="stable"),
                                         np.cumsum(np.bincount(question_of_row))[:-1])))
    extras = [c for c in table.columns
              if c not in (respondent_column, question_column, answer_column)]
    # A codebook may be shared with the wide form of the same survey, so only
    # its questions must all be present; absent metadata columns are skipped.
    for column in book.questions:
        if column not in set(present):
            close = difflib.get_close_matches(column, list(present), n=3)
            raise DataError(f"names question '{column}', which the long table does not have",
                            file=book.file, column=column,
                            expected=f"did you mean {', '.join(map(repr, close))}?" if close else
                            f"one of {', '.join(map(str, list(present)[:12]))}")
    order = [q for q in book.questions if q in set(present)] + [
        q for q in present if q not in book.questions]
    order = [q for q in order if q not in book.ignore]
    ids = pd.unique(rid)  # respondents and questions keep their first-appearance order
    respondent_of_row = pd.Index(ids).get_indexer(rid)

    answers = np.full((len(ids), len(order)), MISSING, dtype=np.int16)
    questions = []
    answer_values = table[answer_column].to_numpy(dtype=object)
    for j, question_id in enumerate(order):
        rows = rows_of[question_id]
        spec = book.questions.get(question_id, QuestionSpec(str(question_id)))
        try:
            question, coded = specified_question(spec, answer_values[rows], file=file,
                                                 missing=book.missing)
        except DataError as error:  # rows are counted within the question; report file rows
            row = None if error.row is None else int(rows[error.row - 2]) + 2
            raise DataError(error.message, file=file, row=row,
                            column=answer_column if error.column == spec.id else error.column,
                            expected=error.expected) from None
        questions.append(question)
        answers[respondent_of_row[rows], j] = coded
    metadata, weights, weight_column = _respondent_columns(table, extras, respondent_of_row, len(ids),
                                                           book, file)
    return OpinionData(
        respondent_ids=ids, questions=tuple(questions), answers=answers,
        metadata=metadata.set_axis(ids), weights=weights,
        source=Source(name=name or book.name or PurePath(file).stem, format="long",
                      files=files or (file,), weight_column=weight_column),
    )


def _key_column(table: pd.DataFrame, column: str, file: str) -> np.ndarray:
    text = id_texts(table[column])
    blank = table[column].isna().to_numpy() | (text == "").to_numpy()
    if blank.any():
        raise DataError("cell is blank", file=file, row=int(np.flatnonzero(blank)[0]) + 2,
                        column=column, expected="a value on every row")
    return text.to_numpy(dtype=object)


def _respondent_columns(table, extras, respondent_of_row, n, book: Codebook, file: str):
    """Metadata, weights and the weights' column from the long table's other columns."""
    metadata: dict[str, np.ndarray] = {}
    weights = weight_column = None
    for column in extras:
        if column in book.ignore:
            continue
        per_row = pd.DataFrame({"r": respondent_of_row, "v": table[column].to_numpy(dtype=object)})
        known = per_row.dropna(subset=["v"])
        if (known.groupby("r")["v"].nunique() > 1).any():
            continue  # varies within a respondent: not a property of the respondent
        first = known.drop_duplicates("r").set_index("r")["v"].reindex(range(n))
        is_weight = column == book.weight_column or (book.weight_column is None and weights is None
                                                     and is_weight_name(column))
        if is_weight and ColumnValues.of(first.tolist()).numeric:
            weights, weight_column = survey_weights(first.reset_index(drop=True), file, column), column
            continue
        spec = book.metadata.get(column)
        metadata[column] = metadata_column(first.tolist(), spec.labels if spec else None).to_numpy()
    return pd.DataFrame(metadata, index=pd.RangeIndex(n)), weights, weight_column
