"""Qualtrics exports: three header rows, platform columns, previews, both export variants."""

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from persona_engine.cli import main
from persona_engine.errors import DataError
from persona_engine.ingest import codebook_json, infer_codebook, read_opinions
from persona_engine.opinion_data import MISSING

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "qualtrics"
CHOICE_TEXT = FIXTURES / "choice_text.csv"
NUMERIC = FIXTURES / "numeric_values.csv"
QUESTIONS = ["Q1", "Q2_1", "Q2_2", "Q2_3", "Q3", "Q4"]
IDENTIFYING = ["IPAddress", "RecipientLastName", "RecipientFirstName", "RecipientEmail", "ExternalReference",
               "LocationLatitude", "LocationLongitude"]
PREVIEWS_AND_TESTS = 3


def header_rows(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        return list(csv.reader(handle))


@pytest.mark.parametrize("path", [CHOICE_TEXT, NUMERIC], ids=["choice text", "numeric values"])
def test_both_variants_load_with_question_text_and_platform_metadata(path):
    data = read_opinions(path)
    rows = header_rows(path)
    assert data.source.format == "qualtrics"
    assert [q.id for q in data.questions] == QUESTIONS
    assert data.questions[0].text == "How satisfied are you with the way democracy works in your country?"
    assert data.n_respondents == len(rows) - 3 - PREVIEWS_AND_TESTS
    assert list(data.respondent_ids[:2]) == [rows[3][rows[0].index("ResponseId")], rows[4][rows[0].index("ResponseId")]]
    assert set(data.metadata["DistributionChannel"]) == {"anonymous"}  # previews and tests are dropped
    assert {"Duration (in seconds)", "Finished", "UserLanguage", "party", "Q5"} <= set(data.metadata.columns)
    assert not set(IDENTIFYING + ["Q2_DO"]) & set(data.metadata.columns)
    q2_2 = data.question_index("Q2_2")
    assert len(data.questions[q2_2].options) == 5  # -99 (seen but not answered) is missing
    seen_not_answered = [r[rows[0].index("Q2_2")] for r in rows[3:]].index("-99")
    assert data.answers[list(data.respondent_ids).index(rows[3 + seen_not_answered][8]), q2_2] == MISSING


def test_choice_text_and_numeric_values_give_the_same_answers_under_other_names():
    text, codes = read_opinions(CHOICE_TEXT), read_opinions(NUMERIC)
    np.testing.assert_array_equal(text.respondent_ids, codes.respondent_ids)
    assert codes.questions[0].options == ("1", "2", "3", "4") and codes.questions[0].ordinal
    for j in range(len(QUESTIONS)):
        pairs = {(a, b) for a, b in zip(text.answers[:, j], codes.answers[:, j])}
        assert (MISSING, MISSING) in pairs or MISSING not in text.answers[:, j]
        assert len({a for a, _ in pairs}) == len(pairs) == len({b for _, b in pairs})  # one name per code


def test_an_xlsx_export_reads_as_the_csv(tmp_path):
    rows = header_rows(CHOICE_TEXT)
    pd.DataFrame(rows[1:], columns=rows[0]).to_excel(tmp_path / "survey.xlsx", index=False)
    from_xlsx, from_csv = read_opinions(tmp_path / "survey.xlsx"), read_opinions(CHOICE_TEXT)
    assert from_xlsx.questions == from_csv.questions
    np.testing.assert_array_equal(from_xlsx.answers, from_csv.answers)


def test_an_export_without_its_import_id_row_is_an_error(tmp_path):
    rows = header_rows(NUMERIC)
    path = tmp_path / "two_header_rows.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows[:2] + rows[3:])
    with pytest.raises(DataError, match=r"two_header_rows\.csv, row 3: .*not its ImportId row"):
        read_opinions(path)
    assert read_opinions(path, format="wide").source.format == "wide"  # read as a plain table if asked


def test_a_codebook_gives_choice_text_its_scale_order_and_round_trips(tmp_path, capsys):
    order = ["Very satisfied", "Fairly satisfied", "Not very satisfied", "Not at all satisfied"]
    data = read_opinions(CHOICE_TEXT, codebook={"questions": {"Q1": {"options": order}}})
    plain = read_opinions(CHOICE_TEXT)
    assert data.questions[0].options == tuple(order) and data.questions[0].ordinal
    assert data.questions[0].text == plain.questions[0].text and data.questions[1:] == plain.questions[1:]
    assert main(["codebook", str(CHOICE_TEXT), "-o", str(tmp_path / "codebook.json")]) == 0
    written = json.loads((tmp_path / "codebook.json").read_text(encoding="utf-8"))
    assert written["id"] == "ResponseId" and set(IDENTIFYING) <= set(written["ignore"])
    again = read_opinions(CHOICE_TEXT, codebook=tmp_path / "codebook.json")
    assert again.questions == plain.questions and again.metadata.equals(plain.metadata)
    np.testing.assert_array_equal(again.answers, plain.answers)
    assert codebook_json(infer_codebook(CHOICE_TEXT)) == written


def test_fit_on_a_qualtrics_export_gives_a_study(tmp_path, capsys):
    out = tmp_path / "study"
    assert main(["fit", str(NUMERIC), "--out", str(out), "--k", "2", "--dim", "2", "--cohort-space", "answers"]) == 0
    capsys.readouterr()
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["respondents"] == 27 and info["questions"] == len(QUESTIONS)


def test_choice_text_on_a_known_scale_is_ordinal_in_the_order_of_the_codes():
    text, codes = read_opinions(CHOICE_TEXT), read_opinions(NUMERIC)
    for j, question in enumerate(text.questions):
        answered = text.answers[:, j] != MISSING
        pairs = sorted(set(zip(text.answers[answered, j].tolist(), codes.answers[answered, j].tolist())))
        if question.id in ("Q1", "Q2_1", "Q2_2", "Q2_3"):  # satisfied and agree/disagree scales
            assert question.ordinal
            n = len(question.options)
            assert pairs == [(k, n - 1 - k) for k in range(n)]  # Qualtrics codes run from the positive pole
        else:  # media sources, and yes/no: no scale to find
            assert not question.ordinal
    assert text.questions[0].options[0] == "Not at all satisfied"
