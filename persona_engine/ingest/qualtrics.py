"""Qualtrics exports (CSV or XLSX, "choice text" or "numeric values").

A Qualtrics export has three header rows: the column ids (``Q1``,
``StartDate``, ...), each column's question text, and each column's ImportId
as JSON (``{"ImportId":"QID1"}``). Its codebook follows from them:

* **questions** are the survey's closed questions: columns whose ImportId is a
  question (``QID<n>``, not a ``_TEXT`` entry, ``_DO`` display order or timing
  click count) and whose answers are closed (2 to :data:`MAX_AUTO_OPTIONS`
  distinct answers, whole numbers if numeric). Row 2 is the question text. In
  a "numeric values" export the options are the codes in numeric order
  (ordinal); in a "choice text" export the option texts in scale order (ordinal)
  when they are a known response scale (:mod:`~persona_engine.ingest.scales`),
  else in alphabetical order (nominal), unless a codebook gives their order. ``-99`` (seen but not
  answered) is missing.
* the platform's columns (StartDate, EndDate, Status, Progress, Duration,
  Finished, RecordedDate, DistributionChannel, UserLanguage, ...), embedded
  data, typed-in text and timings are **metadata**; ``ResponseId`` is the id;
* columns that identify a person (:data:`IDENTIFYING`: IP address, location,
  recipient names and email, external reference) and display-order columns
  are **dropped**;
* **preview and test responses** (Status "Survey Preview" / "Survey Test", or
  1 / 2 in a numeric export; DistributionChannel "preview" / "test") are
  dropped.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from persona_engine.errors import DataError
from persona_engine.ingest.codebook import Codebook, MetadataSpec, QuestionSpec
from persona_engine.ingest.options import MAX_AUTO_OPTIONS, ColumnValues
from persona_engine.ingest.written_codebook import laid_over

PLATFORM_COLUMNS = {
    "startdate", "enddate", "status", "ipaddress", "progress", "duration (in seconds)",
    "finished", "recordeddate", "responseid", "recipientlastname", "recipientfirstname",
    "recipientemail", "externalreference", "externaldatareference", "locationlatitude",
    "locationlongitude", "distributionchannel", "userlanguage"}
"""Qualtrics' own columns, case-folded."""
IDENTIFYING = {"ipaddress", "recipientlastname", "recipientfirstname", "recipientemail",
               "externalreference", "externaldatareference", "locationlatitude",
               "locationlongitude"}
"""Columns that identify a respondent; never read into the data."""
ID_COLUMNS = ("responseid", "_recordid")
PREVIEW_STATUS = {"survey preview", "survey test", "1", "2"}
PREVIEW_CHANNELS = {"preview", "test"}
SEEN_NOT_ANSWERED = -99
QUESTION_IMPORT_ID = re.compile(r"^QID\d+")
NOT_AN_ANSWER = re.compile(r"_(TEXT|DO|FIRST_CLICK|LAST_CLICK|PAGE_SUBMIT|CLICK_COUNT)\b|_DO_",
                           re.IGNORECASE)
HEADER_ROWS = 3


@dataclass(frozen=True)
class QualtricsTable:
    """A Qualtrics export as a wide table of answers and the codebook its headers imply.

    ``file_rows[i]`` is the spreadsheet row (header = 1) of ``table``'s row
    ``i``, for error messages: the two header rows and dropped previews
    shift them.
    """

    table: pd.DataFrame
    codebook: Codebook
    file_rows: np.ndarray


def looks_like_qualtrics(table: pd.DataFrame) -> bool:
    """Whether a table read with one header row is a Qualtrics export."""
    platform = sum(str(c).casefold() in PLATFORM_COLUMNS for c in table.columns)
    return platform >= 3 or (len(table) >= 2 and bool(_import_ids(table.iloc[1])))


def qualtrics_table(table: pd.DataFrame, where: str, *,
                    codebook: Codebook | None = None) -> QualtricsTable:
    """Split the header rows off ``table`` (read with row 1 as its header) and infer its codebook."""
    import_ids = _import_ids(table.iloc[1]) if len(table) >= 2 else {}
    if not import_ids:
        raise DataError("looks like a Qualtrics export, but row 3 is not its ImportId row "
                        "(cells like {\"ImportId\":\"QID1\"})", file=where, row=3,
                        expected="the export with its three header rows (Qualtrics: Data & "
                                 "Analysis, Export data, CSV or Excel), or format='wide' for a "
                                 "table with one header row")
    texts = {c: _text(table[c].iloc[0]) for c in table.columns}
    answers = table.iloc[HEADER_ROWS - 1:].reset_index(drop=True)
    rows = np.arange(len(answers)) + HEADER_ROWS + 1
    keep = ~_previews(answers)
    answers, rows = answers[keep].reset_index(drop=True), rows[keep]
    if answers.empty:
        raise DataError("has no responses besides previews and tests", file=where,
                        expected="a survey with real responses")

    id_column = next((c for c in answers.columns if c.casefold() in ID_COLUMNS), None)
    questions, metadata, ignore = {}, {}, []
    for column in answers.columns:
        import_id = import_ids.get(column, "")
        plain = column.casefold()
        if column == id_column:
            continue
        if plain in IDENTIFYING or re.search(r"_DO(_|$)", import_id, re.IGNORECASE):
            ignore.append(column)
        elif (QUESTION_IMPORT_ID.match(import_id) and not NOT_AN_ANSWER.search(import_id)
              and _closed(answers[column])):
            questions[column] = QuestionSpec(column, texts[column])
        else:
            metadata[column] = MetadataSpec(column, texts[column] if texts[column] != column
                                            else None)
    inferred = Codebook(questions, metadata, id_column, None, tuple(ignore),
                        (SEEN_NOT_ANSWERED,), None, where)
    book = laid_over(inferred, codebook) if codebook is not None else inferred
    if not book.questions:
        raise DataError("holds no closed questions (no column has a QID ImportId and closed "
                        "answers)", file=where,
                        expected="a survey export with multiple-choice questions, or a codebook "
                                 "listing the questions")
    return QualtricsTable(answers, book, rows)


def _import_ids(row: pd.Series) -> dict[str, str]:
    """Column -> ImportId, for the cells of ``row`` that are ImportId JSON."""
    found = {}
    for column, cell in row.items():
        text = str(cell).strip() if isinstance(cell, str) else ""
        if not text.startswith("{"):
            continue
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            continue
        if isinstance(parsed, dict) and "ImportId" in parsed:
            found[column] = str(parsed["ImportId"])
    return found


def _text(cell) -> str | None:
    return None if not isinstance(cell, str) or not cell.strip() else " ".join(cell.split())


def _previews(answers: pd.DataFrame) -> np.ndarray:
    """Rows that are previews or tests, shape ``(n_rows,)``."""
    flagged = np.zeros(len(answers), dtype=bool)
    for column in answers.columns:
        plain = column.casefold()
        if plain in ("status", "distributionchannel"):
            values = answers[column].map(lambda v: str(v).strip().casefold()
                                         .removesuffix(".0")).to_numpy(dtype=object)
            wanted = PREVIEW_STATUS if plain == "status" else PREVIEW_CHANNELS
            flagged |= np.isin(values, list(wanted))
    return flagged


def _closed(values: pd.Series) -> bool:
    column = ColumnValues.of(values.tolist()).without([SEEN_NOT_ANSWERED])
    if not 2 <= column.n_distinct <= MAX_AUTO_OPTIONS:
        return False
    return not column.numeric or column.whole_numbers
