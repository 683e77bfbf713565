"""Inputs the fuzz test (tests/test_fuzz.py) found escaping as something other than DataError.

Each is kept here as a plain example, so it stays fixed whatever Hypothesis
draws next time.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from persona_engine.cohorts.kmeans import CohortFinder
from persona_engine.errors import DataError
from persona_engine.ingest import read_opinions
from persona_engine.study import fit_study

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


def test_a_ragged_csv_with_a_cell_over_the_csv_modules_limit_is_a_data_error(tmp_path):
    huge = "x" * 200_000  # the csv module's default field limit is 131,072 characters
    (tmp_path / "answers.csv").write_text(f"respondent_id,q1\n1,a\n2,b,{huge}\n3,a\n")
    with pytest.raises(DataError) as caught:
        read_opinions(tmp_path / "answers.csv")
    assert "answers.csv" in str(caught.value)


def test_a_polis_summary_with_a_cell_over_the_csv_modules_limit_is_a_data_error(tmp_path):
    votes = "participant,0,1\n" + "".join(f"{i},{(-1) ** i},{(-1) ** (i // 2)}\n" for i in range(12))
    folder = write(tmp_path / "polis", {
        "participants-votes.csv": votes,
        "comments.csv": "comment-id,comment-body,moderated\n0,hi,1\n1,there,1\n",
        "summary.csv": "topic," + "y" * 200_000 + "\n"})
    with pytest.raises(DataError) as caught:
        read_opinions(folder)
    assert "summary.csv" in str(caught.value)


def test_a_parquet_file_with_invalid_utf8_text_is_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"respondent_id": [str(i) for i in range(12)], "q1": ["Qzz", "b"] * 6})
    pq.write_table(table, tmp_path / "answers.parquet", compression="none", use_dictionary=False)
    data = (tmp_path / "answers.parquet").read_bytes()
    assert data.count(b"Qzz") >= 1
    (tmp_path / "answers.parquet").write_bytes(data.replace(b"Qzz", b"Q\xddz"))
    with pytest.raises(DataError) as caught:
        read_opinions(tmp_path / "answers.parquet")
    assert "Parquet" in str(caught.value)


def test_a_study_where_most_respondents_answered_nothing_still_fits(tmp_path):
    # Found by seed 31: a bootstrap draw of only unanswered respondents gave
    # k-means all-zero weights, and scikit-learn's ValueError escaped.
    rows = ["a", "", "b", "", "", "", "", "a", "", "", ""]
    csv = "respondent_id,q1\n" + "".join(f"r{i},{answer}\n" for i, answer in enumerate(rows))
    data = read_opinions(write(tmp_path / "in", {"answers.csv": csv}) / "answers.csv")
    assert int(data.observed.sum()) == 3
    try:
        study = fit_study(data, dim=2, n_cohorts=2, random_state=0)
    except DataError:
        return  # a clear refusal is as good as a fit
    assert len(study.cohorts.labels_) == data.n_respondents


def test_cohort_weights_that_are_all_zero_are_a_data_error():
    finder = CohortFinder(n_cohorts=2, random_state=0)
    with pytest.raises(DataError, match="not all zero"):
        finder.fit(np.random.default_rng(0).normal(size=(20, 2)), sample_weight=np.zeros(20))


def test_a_codebook_row_longer_than_its_header_names_the_row():
    # Found by seed 41: csv.DictReader files the surplus cells under the key None.
    from persona_engine.ingest import read_codebook

    text = b"column,text\nq1,How?\nq2,Why?,extra,cells\n"
    with pytest.raises(DataError) as caught:
        read_codebook(text, name="codebook.csv")
    message = str(caught.value)
    assert "codebook.csv" in message and "row 3" in message and "4 cells" in message


def test_an_xlsx_whose_headers_are_blank_after_trimming_names_both_columns(tmp_path):
    # Found by seed 53: " " and a no-break space both become "" once trimmed, and
    # the table then had two columns of the same name.
    import pandas as pd

    pd.DataFrame({"respondent_id": ["a", "b", "c"], " ": ["x", "y", "x"], "\xa0": ["y", "y", "x"]}).to_excel(
        tmp_path / "answers.xlsx", index=False)
    with pytest.raises(DataError) as caught:
        read_opinions(tmp_path / "answers.xlsx")
    assert "answers.xlsx" in str(caught.value) and "columns 2 and 3" in str(caught.value)
