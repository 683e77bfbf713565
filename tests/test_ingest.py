"""Tests for the ingest stage: every format, the codebook, and every bad input.

Expected figures are computed from the raw files with the csv module, not
copied from the reader's output.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from persona_engine.errors import DataError
from persona_engine.ingest import read_codebook, read_opinions
from persona_engine.opinion_data import MISSING

ROOT = Path(__file__).resolve().parents[1]
POLIS = ROOT / "sample_data" / "polis"
GSS = ROOT / "sample_data" / "gss_spending"
GSS_CSV = GSS / "gss_spending.csv"
PEW = ROOT / "tests" / "fixtures" / "pew_wave"
NAT_ITEMS = list(json.loads((GSS / "questions.json").read_text())["items"])


def raw_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def gss_with_codebook():
    return read_opinions(GSS)


@pytest.fixture(scope="module")
def gss_without_codebook():
    return read_opinions(GSS_CSV)


# ----------------------------------------------------------------------- Polis
@pytest.mark.parametrize("conversation", ["brexit-consensus", "15-per-hour-seattle",
                                          "scoop-hivemind.ubi"])
def test_polis_folder(conversation):
    folder = POLIS / conversation
    votes = raw_rows(folder / "participants-votes.csv")
    comments = {r["comment-id"]: r for r in raw_rows(folder / "comments.csv")}
    vote_columns = [c for c in votes[0] if c.isdigit()]
    rejected = {c for c in vote_columns if comments.get(c, {}).get("moderated") == "-1"}
    kept = [c for c in vote_columns if c not in rejected]

    data = read_opinions(folder)

    assert data.source.format == "polis"
    assert data.n_respondents == len(votes)
    assert data.question_ids == kept
    assert not rejected & set(data.question_ids)
    assert data.questions[0].text == comments[kept[0]]["comment-body"].strip()
    assert data.questions[0].options == ("disagree", "pass", "agree")
    assert data.questions[0].option_values == (-1.0, 0.0, 1.0)
    expected = np.array([[{"-1": 0, "0": 1, "1": 2}.get(r[c], MISSING) for c in kept]
                         for r in votes])
    np.testing.assert_array_equal(data.answers, expected)
    groups = [r["group-id"] for r in votes]
    assert [("" if pd.isna(g) else str(g)) for g in data.metadata["polis_group"]] == groups
    summary = dict(row[:2] for row in csv.reader(open(folder / "summary.csv", encoding="utf-8")))
    assert data.source.name == summary["topic"]
    assert len(data.source.files) == 3


def test_seattle_drops_its_rejected_statements():
    data = read_opinions(POLIS / "15-per-hour-seattle")
    comments = raw_rows(POLIS / "15-per-hour-seattle" / "comments.csv")
    rejected = [r["comment-id"] for r in comments if r["moderated"] == "-1"]
    assert len(rejected) > 0
    assert data.n_questions == len(comments) - len(rejected)


def test_zip_of_polis_folder_reads_like_the_folder(tmp_path):
    archive = tmp_path / "brexit.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in (POLIS / "brexit-consensus").iterdir():
            zf.write(file, f"brexit-consensus/{file.name}")
        zf.writestr("__MACOSX/brexit-consensus/._comments.csv", b"\x00\x05junk")
    folder = read_opinions(POLIS / "brexit-consensus")
    for data in (read_opinions(archive),
                 read_opinions(archive.read_bytes(), name="upload.zip"),
                 read_opinions(io.BytesIO(archive.read_bytes()), name="upload.zip")):
        assert data.source.format == "polis"
        assert data.question_ids == folder.question_ids
        np.testing.assert_array_equal(data.answers, folder.answers)
        assert data.source.files[0].endswith("brexit-consensus/participants-votes.csv")


def test_polis_files_uploaded_together():
    folder = POLIS / "brexit-consensus"
    uploads = []
    for name in ("participants-votes.csv", "comments.csv"):
        upload = io.BytesIO((folder / name).read_bytes())
        upload.name = name  # what a Streamlit UploadedFile carries
        uploads.append(upload)
    data = read_opinions(uploads)
    assert data.source.format == "polis"
    assert data.n_questions == read_opinions(folder).n_questions


def test_polis_vote_outside_minus_one_to_one_names_row_and_column(tmp_path):
    folder = tmp_path / "conversation"
    shutil.copytree(POLIS / "brexit-consensus", folder)
    lines = (folder / "participants-votes.csv").read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[3].split(",")
    cells[header.index("5")] = "2"
    lines[3] = ",".join(cells)
    (folder / "participants-votes.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as error:
        read_opinions(folder)
    message = str(error.value)
    assert "participants-votes.csv" in message and "row 4" in message
    assert "column '5'" in message and "'2'" in message


# ------------------------------------------------------------------------- GSS
def test_gss_with_codebook(gss_with_codebook):
    data = gss_with_codebook
    rows = raw_rows(GSS_CSV)
    assert (data.n_respondents, data.n_questions) == (2348, 18) == (len(rows), len(NAT_ITEMS))
    assert data.question_ids == NAT_ITEMS
    assert data.source.format == "wide"
    assert any(f.endswith("codebook.json") for f in data.source.files)
    assert data.questions[0].options == ("too much", "about right", "too little")
    assert data.questions[0].text.startswith("Are we spending")
    assert list(data.respondent_ids[:3]) == [r["id"] for r in rows[:3]]
    natspac = np.array([{"-1.0": 0, "0.0": 1, "1.0": 2}.get(r["natspac"], MISSING) for r in rows])
    np.testing.assert_array_equal(data.answers[:, 0], natspac)
    strong_democrats = sum(r["partyid"] in ("0", "0.0") for r in rows)
    assert (data.metadata["partyid"] == "Strong Democrat").sum() == strong_democrats
    extremely_liberal = sum(r["polviews"] in ("1", "1.0") for r in rows)
    assert (data.metadata["polviews"] == "Extremely liberal").sum() == extremely_liberal
    assert "sumnat" not in data.metadata and "sumnatsoc" not in data.metadata
    assert {"age", "sex", "degree", "wrkstat"} <= set(data.metadata.columns)


def test_gss_without_codebook_sorts_columns_by_heuristics(gss_without_codebook, gss_with_codebook):
    data = gss_without_codebook
    assert data.n_respondents == 2348
    assert set(NAT_ITEMS) <= set(data.question_ids)
    # many distinct numbers (age, sums), a single value (year) and demographic names
    for column in ("year", "age", "educ", "rincom16", "sumnat", "sex", "partyid", "polviews"):
        assert column in data.metadata.columns and column not in data.question_ids
    assert "id" not in data.metadata.columns  # it became the respondent id
    assert data.questions[data.question_index("natspac")].options == ("-1", "0", "1")
    # the codebook's option order was chosen to match the codes' natural order
    columns = [data.question_index(q) for q in NAT_ITEMS]
    np.testing.assert_array_equal(data.answers[:, columns], gss_with_codebook.answers)


def test_explicit_codebook_path_equals_folder_codebook(gss_with_codebook):
    data = read_opinions(GSS_CSV, codebook=GSS / "codebook.json")
    np.testing.assert_array_equal(data.answers, gss_with_codebook.answers)
    assert data.source.name == "GSS 2018: national spending priorities"


def test_codebook_csv_form(tmp_path, gss_with_codebook):
    book = tmp_path / "codebook.csv"
    book.write_text(
        "column,role,text,options,codes,ordinal,values,missing,labels\n"
        "id,id,,,,,,,\n"
        "natspac,question,Space?,too much|about right|too little,-1|0|1,yes,,,\n"
        "natenvir,question,Environment?,too much|about right|too little,-1|0|1,,-1|0|1,,\n"
        "partyid,metadata,Party,,,,,,0=Strong Democrat|6=Strong Republican\n"
        "sumnat,ignore,,,,,,,\n")
    data = read_opinions(GSS_CSV, codebook=book)
    assert data.question_ids == ["natspac", "natenvir"]
    assert data.questions[1].option_values == (-1.0, 0.0, 1.0)
    np.testing.assert_array_equal(data.answers, gss_with_codebook.answers[:, :2])
    assert (data.metadata["partyid"] == "Strong Republican").sum() == \
        (gss_with_codebook.metadata["partyid"] == "Strong Republican").sum()
    # unlabelled codes keep their written form; columns the codebook leaves out are metadata
    assert set(data.metadata["partyid"].dropna()) >= {"1", "Strong Democrat"}
    assert "natheal" in data.metadata.columns and "sumnat" not in data.metadata.columns


def test_long_table_from_gss(tmp_path, gss_with_codebook):
    wide = pd.read_csv(GSS_CSV, dtype=str)
    long = wide.melt(id_vars=["id", "partyid"], value_vars=NAT_ITEMS,
                     var_name="item", value_name="response").dropna(subset=["response"])
    long = long.rename(columns={"id": "person"}).sample(frac=1.0, random_state=0)
    path = tmp_path / "gss_long.csv"
    long.to_csv(path, index=False)

    # the wide table's codebook serves: its absent metadata columns are skipped
    data = read_opinions(path, codebook=GSS / "codebook.json", respondent_column="person",
                         question_column="item", answer_column="response")

    assert data.source.format == "long"
    assert data.question_ids == NAT_ITEMS
    order = [list(data.respondent_ids).index(r) for r in gss_with_codebook.respondent_ids
             if r in set(data.respondent_ids)]
    answered = gss_with_codebook.observed.any(axis=1)
    assert data.n_respondents == answered.sum()
    np.testing.assert_array_equal(data.answers[order], gss_with_codebook.answers[answered])
    assert (data.metadata["partyid"] == "Strong Democrat").sum() == \
        (gss_with_codebook.metadata["partyid"][answered] == "Strong Democrat").sum()


def test_long_table_codebook_question_must_exist():
    table = b"respondent_id,question_id,answer\n1,q1,yes\n1,q2,no\n2,q1,no\n2,q2,yes\n"
    expect_error(table, name="long.csv", codebook={"questions": {"q3": "Third?"}},
                 contains=("codebook", "column 'q3'", "q1"))


def test_long_table_needs_its_columns():
    with pytest.raises(DataError, match="needs a 'question_id' column") as error:
        read_opinions(b"respondent_id,answer\n1,yes\n", name="l.csv", format="long")
    assert "l.csv" in str(error.value)


def test_long_table_repeated_answer_names_rows():
    table = b"respondent_id,question_id,answer\n1,q1,yes\n1,q2,no\n2,q1,no\n2,q1,yes\n"
    with pytest.raises(DataError, match=r"rows 4, 5") as error:
        read_opinions(table, name="answers.csv")
    assert "answers.csv" in str(error.value) and "'2'" in str(error.value)


# ----------------------------------------------------------------- other files
@pytest.mark.parametrize("suffix", [".tsv", ".parquet", ".xlsx"])
def test_table_formats_round_trip(tmp_path, suffix, gss_without_codebook):
    table = pd.read_csv(GSS_CSV)
    rows = 2348 if suffix != ".xlsx" else 300  # openpyxl is slow; 300 rows show the same
    path = tmp_path / f"gss{suffix}"
    if suffix == ".tsv":
        table.to_csv(path, sep="\t", index=False)
    elif suffix == ".parquet":
        table.to_parquet(path, index=False)
    else:
        table.head(rows).to_excel(path, index=False)
    data = read_opinions(path, codebook=GSS / "codebook.json")
    assert (data.n_respondents, data.n_questions) == (rows, 18)
    columns = [gss_without_codebook.question_index(q) for q in NAT_ITEMS]
    np.testing.assert_array_equal(data.answers, gss_without_codebook.answers[:rows, columns])
    assert list(data.respondent_ids[:5]) == list(gss_without_codebook.respondent_ids[:5])


def test_latin1_and_bom_files_are_decoded(tmp_path):
    text = "id;opinion;ville\n1;très bien;Montréal\n2;mal;Québec\n3;très bien;Lyon\n4;mal;Paris\n"
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes(text.encode("latin-1"))
    data = read_opinions(latin1)
    assert data.questions[data.question_index("opinion")].options == ("mal", "très bien")
    assert "Montréal" in data.questions[data.question_index("ville")].options
    bom = tmp_path / "bom.csv"
    bom.write_bytes(text.encode("utf-8-sig"))
    assert list(read_opinions(bom).respondent_ids) == ["1", "2", "3", "4"]  # 'id' found despite the BOM
    utf16 = tmp_path / "excel_unicode.txt"  # Excel's "Unicode Text": UTF-16, tab-separated
    utf16.write_bytes(text.replace(";", "\t").encode("utf-16"))
    assert "très bien" in read_opinions(utf16).questions[0].options


def test_an_upload_can_be_read_again():
    upload = io.BytesIO(GSS_CSV.read_bytes())
    upload.name = "gss_spending.csv"
    first, second = read_opinions(upload), read_opinions(upload)  # e.g. two runs of the app
    np.testing.assert_array_equal(first.answers, second.answers)
    assert first.n_respondents == 2348


def test_none_is_an_answer_not_a_missing_cell():
    table = b"id,friends_with_guns\n1,None\n2,Some\n3,None\n4,All or most\n5,\n"
    data = read_opinions(table, name="guns.csv")
    assert data.questions[0].options == ("All or most", "None", "Some")
    assert list(data.answers[:, 0]) == [1, 2, 1, 0, MISSING]


def test_free_text_without_codebook_becomes_metadata():
    comments = [f"I think reason number {i} matters most to me" for i in range(30)]
    table = pd.DataFrame({"q1": ["yes", "no"] * 15, "why": comments})
    data = read_opinions(table.to_csv(index=False).encode(), name="survey.csv")
    assert data.question_ids == ["q1"]
    assert data.metadata["why"].iloc[3] == comments[3]


def test_pew_wave_fixture():
    data = read_opinions(PEW)
    rows = raw_rows(PEW / "responses.csv")
    assert data.source.format == "pew"
    assert (data.n_respondents, data.n_questions) == (len(rows), 7)
    assert list(data.respondent_ids) == [r["QKEY"] for r in rows]
    cars2 = data.questions[data.question_index("CARS2_W27")]
    assert cars2.options == ("Mostly positive", "A mix of both", "Mostly negative")
    assert cars2.option_values == (1.0, 1.5, 2.0)
    assert not data.questions[data.question_index("INDUSTRY_W27")].ordinal
    cars1 = data.question_index("CARS1_W27")
    refused = [i for i, r in enumerate(rows) if r["CARS1_W27"] == "Refused"]
    assert refused and all(data.answers[i, cars1] == MISSING for i in refused)
    a_lot = [i for i, r in enumerate(rows) if r["CARS1_W27"] == "A lot"]
    assert all(data.answers[i, cars1] == 0 for i in a_lot)
    np.testing.assert_allclose(data.weights, [float(r["WEIGHT_W27"]) for r in rows])
    assert list(data.metadata["POLPARTY"]) == [r["POLPARTY"] for r in rows]
    assert "WEIGHT_W27" not in data.metadata.columns


def test_pew_lists_are_never_evaluated(tmp_path):
    folder = tmp_path / "wave"
    shutil.copytree(PEW, folder)
    marker = tmp_path / "pwned"
    info = pd.read_csv(folder / "info.csv", dtype=str, keep_default_na=False)
    info.loc[2, "references"] = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    info.to_csv(folder / "info.csv", index=False)
    with pytest.raises(DataError) as error:
        read_opinions(folder)
    assert "info.csv" in str(error.value) and "row 4" in str(error.value)
    assert "column 'references'" in str(error.value)
    assert not marker.exists()


def test_pew_answer_outside_references_names_row(tmp_path):
    folder = tmp_path / "wave"
    shutil.copytree(PEW, folder)
    responses = pd.read_csv(folder / "responses.csv", dtype=str, keep_default_na=False)
    responses.loc[4, "CARS5_W27"] = "Maybe"
    responses.to_csv(folder / "responses.csv", index=False)
    with pytest.raises(DataError) as error:
        read_opinions(folder)
    message = str(error.value)
    assert "responses.csv" in message and "row 6" in message
    assert "column 'CARS5_W27'" in message and "'Maybe'" in message


# ------------------------------------------------------------------ bad inputs
def expect_error(*args, contains: tuple[str, ...], **kwargs) -> str:
    with pytest.raises(DataError) as error:
        read_opinions(*args, **kwargs)
    message = str(error.value)
    for part in contains:
        assert part in message, f"{part!r} not in {message!r}"
    return message


def test_binary_and_empty_files():
    expect_error(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", name="answers.csv",
                 contains=("answers.csv", "binary"))
    expect_error(b"", name="answers.csv", contains=("answers.csv", "empty"))
    expect_error(b"id,q1,q2\n", name="answers.csv", contains=("answers.csv", "no rows"))
    expect_error(b"not a parquet file", name="answers.parquet",
                 contains=("answers.parquet", "Parquet"))
    expect_error(b"not a workbook", name="answers.xlsx", contains=("answers.xlsx", "XLSX"))


def test_ragged_rows_and_repeated_column_names():
    expect_error(b"id,q1\n1,2\n2,3,4\n", name="a.csv", contains=("a.csv", "row 3"))
    expect_error(b"id,q1,q1\n1,2,3\n", name="a.csv", contains=("a.csv", "column 'q1'", "twice"))


@pytest.mark.parametrize("lines, row, cells", [
    (["id,q1,q2", "1,yes,no,no,yes", "2,no,yes", "3,yes,yes"], 2, 5),  # pandas took it for row names
    (["id,q1,q2", "1,yes,no", "2,no,yes", "3,yes,no,no,yes", "4,no,no"], 4, 5),
])
def test_a_ragged_csv_names_the_file_the_row_and_both_cell_counts(tmp_path, lines, row, cells):
    path = tmp_path / "ragged.csv"
    path.write_text("\n".join(lines) + "\n")
    message = expect_error(path, contains=(str(path), f"row {row}:", f"{cells} cells",
                                           "header (row 1) has 3"))
    assert "question columns" not in message


def test_a_ragged_row_below_a_cell_with_a_line_break_gives_row_and_line(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text('id,q1,note\n1,yes,"two\nlines"\n2,no,ok\n3,yes,ok,extra\n')
    expect_error(path, contains=("ragged.csv", "row 4:", "4 cells", "has 3", "line 5 of the file"))


def test_row_names_without_a_header_cell_are_still_read(tmp_path):
    path = tmp_path / "write_table.csv"  # R's write.table(sep=","): one more cell on every row
    path.write_text("q1,q2\nr1,yes,no\nr2,no,yes\nr3,yes,yes\n")
    data = read_opinions(path)
    assert data.question_ids == ["q1", "q2"] and list(data.answers[:, 0]) == [1, 0, 1]


@pytest.mark.parametrize("content", [bytes(range(128, 256)) * 8, bytes(range(1, 256)),
                                     b"\x8d\x90\xff\xfe" * 100 + b",\n"])
def test_a_binary_file_is_not_a_text_table(tmp_path, content):
    path = tmp_path / "answers.csv"
    path.write_bytes(content)
    message = expect_error(path, contains=(str(path), "not a text table"))
    assert all(kind in message for kind in ("CSV", "TSV", "Parquet", "XLSX"))


def test_a_cp1252_csv_is_still_read_as_latin1(tmp_path):
    text = "id,opinion\n1,très bien\n2,“mal”\n3,très bien\n4,€ cher\n"
    path = tmp_path / "windows.csv"
    path.write_bytes(text.encode("cp1252"))
    options = read_opinions(path).questions[0].options
    assert options == tuple(sorted({v.encode("cp1252").decode("latin-1")
                                    for v in ("très bien", "“mal”", "€ cher")}))


def test_utf8_text_whose_bytes_cp1252_leaves_undefined_is_not_binary():
    rows = "".join(f"{i},Москва,согласен\n{i + 100},Санкт-Петербург,против\n" for i in range(20))
    data = read_opinions(f"id,город,мнение\n{rows}".encode(), name="ru.csv")  # "с" is D1 81
    assert data.questions[1].options == ("против", "согласен")


def test_duplicate_respondent_ids_name_the_rows():
    table = b"id,q1,q2\n7,1,2\n8,2,1\n7,1,1\n9,2,2\n"
    expect_error(table, name="a.csv", id_column="id",
                 contains=("a.csv", "column 'id'", "'7'", "rows 2, 4"))


def test_question_with_fewer_than_two_options():
    book = {"questions": {"natspac": {"options": ["too much"]}}}
    expect_error(GSS_CSV, codebook=book, contains=("codebook", "column 'natspac'", "2 answer options"))
    table = b"id,q1,q2\n1,yes,a\n2,yes,b\n"
    expect_error(table, name="a.csv", codebook={"questions": {"q1": "Agree?", "q2": "Pick"}},
                 contains=("a.csv", "column 'q1'", "1 distinct"))


def test_free_text_declared_as_question_names_column_and_example():
    comments = [f"Because of reason {i}, which I explain at length" for i in range(30)]
    table = pd.DataFrame({"q1": ["yes", "no"] * 15, "why": comments}).to_csv(index=False)
    message = expect_error(table.encode(), name="survey.csv",
                           codebook={"questions": {"q1": "Agree?", "why": "Why?"}},
                           contains=("survey.csv", "column 'why'", "free text", "Because of reason"))
    assert "metadata or ignore" in message


def test_file_over_size_limit_is_refused_before_reading(tmp_path):
    expect_error(GSS_CSV, max_bytes=10_000, contains=("gss_spending.csv", "over the limit"))

    class HugeUpload(io.BytesIO):
        name = "huge.csv"
        size = 600 * 10**6

        def read(self, *args):
            raise AssertionError("read before the size was checked")

    expect_error(HugeUpload(), contains=("huge.csv", "600.0 MB", "500.0 MB"))


def test_unknown_format_and_unrecognisable_folders(tmp_path):
    expect_error(b"$FL2 spss", name="survey.sav", contains=("survey.sav", "could not be read as an SPSS file"))
    expect_error(b"\x80\x04K\x01.", name="frame.pkl", contains=("frame.pkl", "never read"))
    expect_error(GSS_CSV, format="spss", contains=("unknown format 'spss'",))
    assert read_opinions(GSS_CSV, format="auto").source.format == "wide"
    expect_error(ROOT / "sample_data" / "polis", contains=("3 Polis exports",))
    expect_error(POLIS / "brexit-consensus", format="pew", contains=("not a pew folder",))
    expect_error(tmp_path / "missing.csv", contains=("missing.csv", "no such file"))


def test_zip_without_recognisable_content():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("survey/README.md", "notes")
        zf.writestr("survey/logo.png", b"\x89PNG")
    expect_error(buffer.getvalue(), name="survey.zip",
                 contains=("survey.zip", "no recognisable survey data", "README.md"))


def test_zip_with_path_traversal_is_refused():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("../../etc/answers.csv", "id,q1\n1,yes\n2,no\n")
    expect_error(buffer.getvalue(), name="evil.zip", contains=("evil.zip", "unsafe path"))


def test_zip_bomb_stops_at_the_size_limit():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("answers.csv", b"id,q1\n" + b"0" * 30_000_000)
    assert len(buffer.getvalue()) < 100_000
    expect_error(buffer.getvalue(), name="bomb.zip", max_bytes=5_000_000,
                 contains=("bomb.zip/answers.csv", "over the limit"))


def test_codebook_errors_name_the_problem(tmp_path):
    expect_error(GSS_CSV, codebook={"questions": {"natspace": "Space?"}},
                 contains=("codebook", "column 'natspace'", "natspac"))
    message = expect_error(GSS_CSV, codebook={"questions": {"natspac": {
        "options": ["more", "less"], "codes": [1, 0]}}},
        contains=("gss_spending.csv", "row 2", "column 'natspac'", "'-1.0'"))
    assert "1 (more), 0 (less)" in message
    expect_error(GSS_CSV, codebook={"questions": {"natspac": {"option": ["a", "b"]}}},
                 contains=("unknown key", "'option'"))
    expect_error(GSS_CSV, codebook={"questions": {"natspac": {"scale": "spend"}}},
                 contains=("scale 'spend'",))
    broken = tmp_path / "codebook.json"
    broken.write_text('{"questions": {"natspac": "Space?",}}')
    expect_error(GSS_CSV, codebook=broken, contains=("codebook.json", "not valid JSON", "line 1"))
    bad_csv = tmp_path / "book.csv"
    bad_csv.write_text("column,role\nnatspac,questoin\n")
    expect_error(GSS_CSV, codebook=bad_csv, contains=("book.csv", "row 2", "unknown role"))


def test_codebook_missing_codes_become_missing_answers():
    table = b"id,q1\n1,1\n2,2\n3,9\n4,1\n"
    data = read_opinions(table, name="a.csv", codebook={
        "questions": {"q1": {"options": ["yes", "no"], "codes": [1, 2], "missing": [9]}}})
    assert list(data.answers[:, 0]) == [0, 1, MISSING, 0]


def test_read_codebook_accepts_the_json_form():
    book = read_codebook(GSS / "codebook.json")
    assert book.id_column == "id" and book.ignore == ("sumnat", "sumnatsoc")
    assert book.questions["natsci"].codes == (-1, 0, 1)
    assert book.metadata["partyid"].labels["0"] == "Strong Democrat"


# --------------------------------------------------------- user files untouched
def fingerprint(folder: Path) -> dict[str, tuple[str, int]]:
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(),
                                         p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_user_files_are_never_modified(tmp_path):
    archive = tmp_path / "polis.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in (POLIS / "scoop-hivemind.ubi").iterdir():
            zf.write(file, f"ubi/{file.name}")
    folders = [GSS, POLIS / "scoop-hivemind.ubi", PEW, tmp_path]
    before = [fingerprint(f) for f in folders]
    read_opinions(GSS)
    read_opinions(GSS_CSV)
    read_opinions(POLIS / "scoop-hivemind.ubi")
    read_opinions(PEW)
    read_opinions(archive)
    assert [fingerprint(f) for f in folders] == before
