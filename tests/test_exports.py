"""What the project writes for spreadsheets never runs as a formula there."""

from __future__ import annotations

import io

import pandas as pd
from openpyxl import load_workbook

from persona_engine.exports import neutralised, spreadsheet_safe, workbook

EVIL = ["=HYPERLINK(\"http://x\")", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\tlead", "\rlead"]


def test_formula_like_text_gets_an_apostrophe_and_everything_else_is_left_alone():
    assert [neutralised(v) for v in EVIL] == ["'" + v for v in EVIL]
    assert [neutralised(v) for v in ("-1.5", "+3", "yes", "a=b", 7, -2.0, None)] == [
        "-1.5", "+3", "yes", "a=b", 7, -2.0, None]


def test_a_safe_table_keeps_numbers_and_shape_and_neutralises_names_too():
    table = pd.DataFrame({"id": EVIL[:3], "share": [0.5, -0.25, 1.0], "=col": ["ok", "@x", "-7"]})
    safe = spreadsheet_safe(table)
    assert list(safe.columns) == ["id", "share", "'=col"]
    assert safe["share"].tolist() == [0.5, -0.25, 1.0] and safe["id"].str.startswith("'").all()
    assert safe["'=col"].tolist() == ["ok", "'@x", "-7"]
    assert table["id"].tolist() == EVIL[:3]  # the original is untouched


def test_the_workbook_and_the_csv_hold_no_cell_that_starts_a_formula():
    respondents = pd.DataFrame({"respondent_id": EVIL, "cohort": range(len(EVIL))})
    book = load_workbook(io.BytesIO(workbook({"respondents": respondents, "about": pd.DataFrame({"n": [1]})})))
    cells = [c.value for row in book["respondents"].iter_rows() for c in row]
    assert not [c for c in cells if isinstance(c, str) and c.startswith(("=", "+", "-", "@", "\t", "\r"))]
    assert book.sheetnames == ["respondents", "about"]
    assert all(c.data_type != "f" for row in book["respondents"].iter_rows() for c in row)  # no formulas
    text = spreadsheet_safe(respondents).to_csv(index=False)
    assert not [line for line in text.splitlines()[1:] if line.startswith(("=", "+", "-", "@"))]
