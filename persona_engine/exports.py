"""Tables written for spreadsheets: no cell a spreadsheet would run as a formula.

A respondent id, a metadata value or an answer's text read from someone's
file can start with ``=``, ``+``, ``-`` or ``@`` (or a tab or carriage
return); opened in Excel or LibreOffice such a cell is a formula, which can
run commands or send data away ("CSV injection"). Every CSV and XLSX the
project writes goes through :func:`spreadsheet_safe`, which starts such text
cells with an apostrophe (OWASP's advice), so they show as the text they
are. Numbers, and text that is just a number such as ``-1.5``, are left as
they are.

The study's own exports (the Cohorts page's downloads) are built here too,
so that any front end writes the same files: :func:`respondents_csv` and
:func:`cohort_workbook`.
"""

from __future__ import annotations

import io

import pandas as pd

from persona_engine.cohorts.distinctive import consensus_questions, distinctive_answers
from persona_engine.cohorts.profiles import cohort_overview
from persona_engine.cohorts.statistics import weighting_note

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def looks_like_formula(value) -> bool:
    """Whether ``value`` is text a spreadsheet would take for a formula (not a plain number like ``-1.5``)."""
    return isinstance(value, str) and value.startswith(FORMULA_START) and not _is_number(value)


def neutralised(value):
    """``value``, with an apostrophe in front if it is text a spreadsheet would take for a formula."""
    return "'" + value if looks_like_formula(value) else value


def spreadsheet_safe(table: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``table`` whose text cells, column names included, never start a formula."""
    safe = table.copy()
    for column in safe.columns:
        if safe[column].dtype == object or pd.api.types.is_string_dtype(safe[column]):
            safe[column] = safe[column].map(neutralised)
    safe.columns = [neutralised(c) for c in safe.columns]
    return safe


def workbook(sheets: dict[str, pd.DataFrame]) -> bytes:
    """An XLSX file with one sheet per ``{name: table}``, every table :func:`spreadsheet_safe`."""
    buffer = io.BytesIO()
    with pd.ExcelWriter(buffer, engine="openpyxl") as writer:
        for name, table in sheets.items():
            spreadsheet_safe(table).to_excel(writer, sheet_name=name[:31], index=False)
    return buffer.getvalue()


def respondents_csv(study) -> str:
    """CSV text of the study's respondents with their cohort, map position and metadata (:meth:`Study.respondents`)."""
    return spreadsheet_safe(study.respondents()).to_csv(index=False)


def cohort_sheets(study, *, weighted: bool = True) -> dict[str, pd.DataFrame]:
    """The sheets of :func:`cohort_workbook`, ``{sheet name: table}`` in order.

    * ``about``: one note saying whether shares and tests are weighted;
    * ``cohorts``: :func:`~persona_engine.cohorts.profiles.cohort_overview`, a row per cohort;
    * ``distinctive answers``: each cohort's 4 most distinctive answers
      (:func:`~persona_engine.cohorts.distinctive.distinctive_answers`);
    * ``consensus``: the 3 questions the cohorts agree on most
      (:func:`~persona_engine.cohorts.distinctive.consensus_questions`);
    * ``respondents``: as :func:`respondents_csv`.

    ``weighted``: weigh respondents by the survey weights, if the study has them.
    """
    data, labels = study.data, study.labels
    note = weighting_note(data, weighted)
    return {"about": pd.DataFrame({"note": [f"Shares and tests in these sheets are {note}."]}),
            "cohorts": cohort_overview(data, labels, weighted=weighted),
            "distinctive answers": distinctive_answers(data, labels, top=4, weighted=weighted),
            "consensus": consensus_questions(data, labels, weighted=weighted).head(3),
            "respondents": study.respondents()}


def cohort_workbook(study, *, weighted: bool = True) -> bytes:
    """An XLSX file of the study's cohorts, their answers and its respondents (:func:`cohort_sheets`)."""
    return workbook(cohort_sheets(study, weighted=weighted))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
