"""Inputs the fuzz test (tests/test_fuzz.py) found escaping as something other than DataError.

Each is kept here as a plain example, so it stays fixed whatever Hypothesis
draws next time.
"""

import json
from pathlib import Path

import pandas as pd
import pytest

from persona_engine.errors import DataError
from persona_engine.ingest import read_opinions

ANSWERS = "respondent_id,q1\n" + "".join(f"{i},{'ab'[i % 2]}\n" for i in range(1, 13))


def write(folder: Path, files: dict[str, bytes | str]) -> Path:
    folder.mkdir(exist_ok=True)
    for name, content in files.items():
        data = content.encode() if isinstance(content, str) else content
        (folder / name).write_bytes(data)
    return folder


@pytest.mark.parametrize("ending", ["\r", "\r\n", "\n"])
def test_every_line_ending_reads_the_same(tmp_path, ending):
    text = ANSWERS.replace("\n", ending)
    data = read_opinions(write(tmp_path / "study", {"answers.csv": text}))
    assert data.n_respondents == 12
    assert sorted(data.questions[0].options) == ["a", "b"]


def test_a_polis_summary_with_classic_mac_line_endings_is_read(tmp_path):
    votes = "participant,0,1\n" + "".join(f"{i},{(-1) ** i},{(-1) ** (i // 2)}\n"
                                          for i in range(12))
    folder = write(tmp_path / "polis", {
        "participants-votes.csv": votes,
        "comments.csv": "comment-id,comment-body,moderated\n0,hi,1\n1,there,1\n",
        "summary.csv": "topic,Bike lanes\rurl,https://pol.is/x\r"})
    data = read_opinions(folder)
    assert data.n_questions == 2


@pytest.mark.parametrize("codebook", [
    {"metadata": [{}]},
    {"metadata": 3},
    {"questions": {"q1": {"options": ["a", "b"], "codes": 3}}},
    {"questions": {"q1": {"options": 5}}},
    {"questions": {"q1": {"options": [["a"], "b"]}}},
    {"questions": {"q1": {"text": ["not", "text"]}}},
    {"ignore": {"a": 1}},
    {"id": ["respondent_id"]},
    {"scales": {"s": {"options": ["a", "b"]}}, "questions": {"q1": {"scale": ["s"]}}},
])
def test_a_codebook_of_the_wrong_shapes_is_a_data_error_naming_the_file(tmp_path, codebook):
    folder = write(tmp_path / "study", {"answers.csv": ANSWERS,
                                        "codebook.json": json.dumps(codebook)})
    with pytest.raises(DataError) as caught:
        read_opinions(folder)
    assert "codebook.json" in str(caught.value)


def test_a_codebook_bare_value_still_means_a_one_item_list(tmp_path):
    rows = "".join(f"{i},{'ab'[i % 2]},x{i}\n" for i in range(1, 13)) + "13,refused,x13\n"
    folder = write(tmp_path / "study", {
        "answers.csv": "respondent_id,q1,unused\n" + rows,
        "codebook.json": json.dumps({"missing": "refused", "ignore": "unused",
                                     "questions": {"q1": {"options": ["a", "b"]}}})})
    data = read_opinions(folder)
    assert [q.id for q in data.questions] == ["q1"]
    assert "refused" not in data.questions[0].options


def test_a_parquet_column_of_records_is_refused_naming_the_column(tmp_path):
    table = pd.DataFrame({"respondent_id": range(12),
                          "q1": ["a", "b"] * 6,
                          "q2": [{"x": 1}] * 12})
    table.to_parquet(tmp_path / "answers.parquet")
    with pytest.raises(DataError) as caught:
        read_opinions(tmp_path / "answers.parquet")
    assert caught.value.column == "q2"
    assert "lists or records" in str(caught.value)


def test_a_qualtrics_export_with_a_date_typed_status_and_no_answers_is_refused(tmp_path):
    # Qualtrics' two header rows, then no responses; Status came back as dates.
    table = pd.DataFrame({
        "StartDate": ["Start Date", '{"ImportId":"startDate"}'],
        "ResponseId": ["Response ID", '{"ImportId":"_recordId"}'],
        "Q1": ["Do you agree?", '{"ImportId":"QID1"}'],
        "Status": pd.to_datetime(["2024-01-01", "2024-01-02"])})
    table.to_parquet(tmp_path / "answers.parquet")
    with pytest.raises(DataError):
        read_opinions(tmp_path / "answers.parquet")
