"""SPSS, Stata and SAS files: labels as the codebook, missing codes, the codebook command, fit."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pyreadstat = pytest.importorskip("pyreadstat")

from persona_engine.cli import main  # noqa: E402
from persona_engine.errors import DataError  # noqa: E402
from persona_engine.ingest import codebook_json, infer_codebook, read_opinions  # noqa: E402
from persona_engine.ingest.labelled import is_non_answer  # noqa: E402
from persona_engine.opinion_data import MISSING  # noqa: E402

GSS = Path(__file__).resolve().parent.parent / "sample_data" / "gss_spending"
BOOK = json.loads((GSS / "codebook.json").read_text())
NAT = list(BOOK["questions"])
SPENDING = {-1: "too much", 0: "about right", 1: "too little"}
STATA_LABEL_LIMIT = 80  # Stata keeps variable labels to 80 characters


def gss_table() -> pd.DataFrame:
    return pd.read_csv(GSS / "gss_spending.csv")


def metadata_labels() -> dict:
    return {c: {int(k): v for k, v in m["labels"].items()} for c, m in BOOK["metadata"].items() if "labels" in m}


def question_texts(limit: int | None = None) -> dict:
    return {q: BOOK["questions"][q]["text"][:limit] for q in NAT}


@pytest.fixture(scope="module")
def gss():
    return read_opinions(GSS)


def write_dta(table: pd.DataFrame, path: Path, rng) -> pd.DataFrame:
    """``table`` as a labelled Stata file, half its blanks coded ``.d`` (don't know); the table written."""
    dta = table.copy()
    for q in NAT:
        column = dta[q].astype(object)
        column[column.isna() & (rng.random(len(dta)) < 0.5)] = "d"
        dta[q] = column
    pyreadstat.write_dta(
        dta, path, column_labels=question_texts(STATA_LABEL_LIMIT),
        variable_value_labels={**{q: {**SPENDING, "d": "Don't know"} for q in NAT}, **metadata_labels()},
        missing_user_values={q: ["d"] for q in NAT})
    return dta


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The GSS sample as a labelled .sav (missing codes 8 and 9, a weight) and .dta (missing .d)."""
    folder = tmp_path_factory.mktemp("labelled")
    rng = np.random.default_rng(14)
    table = gss_table()
    sav = table.copy()
    blank = sav[NAT].isna().to_numpy()
    sav[NAT] = np.where(blank, rng.choice([8.0, 9.0, np.nan], size=blank.shape), sav[NAT].to_numpy())
    sav["wtssall"] = rng.uniform(0.3, 3.0, len(sav)).round(4)
    pyreadstat.write_sav(
        sav, folder / "gss.sav", file_label=BOOK["name"],
        column_labels={**question_texts(), "wtssall": "Weight variable for all samples"},
        variable_value_labels={**{q: {**SPENDING, 8: "Don't know", 9: "No answer"} for q in NAT},
                               **metadata_labels()},
        missing_ranges={q: [8, 9] for q in NAT}, variable_measure={q: "ordinal" for q in NAT})
    dta = write_dta(table, folder / "gss.dta", rng)
    return {"folder": folder, "sav": folder / "gss.sav", "dta": folder / "gss.dta",
            "weights": sav["wtssall"].to_numpy(), "sav_codes": sav[NAT].to_numpy(),
            "dta_codes": dta[NAT].to_numpy()}


def test_a_labelled_sav_reads_as_the_csv_with_its_codebook(files, gss):
    data = read_opinions(files["sav"])
    assert data.source.format == "spss" and data.source.name == BOOK["name"]
    assert data.questions == gss.questions  # ids, text, options in code order, ordinal
    np.testing.assert_array_equal(data.answers, gss.answers)
    assert np.isin(files["sav_codes"], [8, 9]).any()  # the user-missing codes are there, and missing
    assert (data.answers[np.isin(files["sav_codes"], [8, 9])] == MISSING).all()
    np.testing.assert_array_equal(data.respondent_ids, gss.respondent_ids)
    np.testing.assert_allclose(data.weights, files["weights"])  # found by its variable label
    for column in ("sex", "degree", "race", "partyid", "polviews"):
        assert data.metadata[column].tolist() == gss.metadata[column].tolist()


def test_a_labelled_dta_reads_as_the_csv_with_its_codebook(files, gss):
    data = read_opinions(files["dta"])
    assert data.source.format == "stata"
    assert [q.options for q in data.questions] == [q.options for q in gss.questions]
    assert [q.text for q in data.questions] == [q.text[:STATA_LABEL_LIMIT].strip() for q in gss.questions]
    np.testing.assert_array_equal(data.answers, gss.answers)
    assert (files["dta_codes"] == "d").any()
    assert data.metadata["partyid"].tolist() == gss.metadata["partyid"].tolist()


def test_a_compressed_zsav_and_an_upload_read_alike(files, gss, tmp_path):
    table, meta = pyreadstat.read_sav(files["sav"], user_missing=True)
    pyreadstat.write_sav(table, tmp_path / "gss.zsav", compress=True, column_labels=meta.column_names_to_labels,
                         variable_value_labels=meta.variable_value_labels, missing_ranges=meta.missing_ranges)
    np.testing.assert_array_equal(read_opinions(tmp_path / "gss.zsav").answers, gss.answers)
    upload = read_opinions(files["sav"].read_bytes(), name="gss.sav")
    np.testing.assert_array_equal(upload.answers, gss.answers)


def test_non_answer_labels_are_missing_and_a_codebook_can_keep_them(tmp_path):
    table = pd.DataFrame({"caseid": [1, 2, 3, 4, 5, 6], "trust": [1, 2, 3, 7, 8, 9.0],
                          "satis": [0, 5, 10, 3, 98, 10.0], "age": [30, 41, 89, 52, 60, 25.0]})
    pyreadstat.write_sav(
        table, tmp_path / "s.sav",
        column_labels={"trust": "Can most people be trusted?", "satis": "How satisfied are you?"},
        variable_value_labels={"trust": {1: "Can trust", 2: "Depends", 3: "Cannot trust", 7: "-7. Skipped on web",
                                         8: "Don\u2019t know", 9: "IAP"},
                               "satis": {0: "Extremely dissatisfied", 10: "Extremely satisfied", 98: "Refusal"},
                               "age": {89: "89 or older", 98: "Don't know"}},
        variable_measure={"trust": "nominal", "satis": "ordinal", "age": "scale"})
    data = read_opinions(tmp_path / "s.sav")
    trust, satis = data.questions
    assert trust.options == ("Can trust", "Depends", "Cannot trust") and not trust.ordinal
    assert satis.options == ("Extremely dissatisfied", "3", "5", "Extremely satisfied") and satis.ordinal
    assert data.answers[3:, 0].tolist() == [MISSING] * 3 and data.answers[4, 1] == MISSING
    assert list(data.metadata.columns) == ["age"]  # a scale with one labelled value is a measurement
    book = codebook_json(infer_codebook(tmp_path / "s.sav"))
    assert book["questions"]["trust"]["missing"] == [7, 8, 9]
    kept = {"questions": {"trust": {"options": ["Can trust", "Depends", "Cannot trust", "Don't know"],
                                    "codes": [1, 2, 3, 8], "missing": [7, 9]}}}
    again = read_opinions(tmp_path / "s.sav", codebook=kept)
    assert again.questions[0].options[-1] == "Don't know" and again.answers[4, 0] == 3
    assert again.questions[0].text == "Can most people be trusted?"  # the file's text stays
    assert is_non_answer("Don't know/Refused (VOL.)") and not is_non_answer("Not at all")


def test_errors_name_the_file(tmp_path):
    (tmp_path / "broken.sav").write_bytes(b"$FL2@(#) IBM SPSS STATISTICS" + bytes(40))
    with pytest.raises(DataError, match=r"broken\.sav: could not be read as an SPSS file"):
        read_opinions(tmp_path / "broken.sav")
    pyreadstat.write_dta(gss_table().head(50), tmp_path / "plain.dta")
    with pytest.raises(DataError, match=r"plain\.dta: no variable has value labels") as error:
        read_opinions(tmp_path / "plain.dta")
    assert "codebook" in str(error.value)
    listed = read_opinions(tmp_path / "plain.dta", codebook={"id": "id", "questions": {q: {} for q in NAT[:3]}})
    assert [q.id for q in listed.questions] == NAT[:3]
    (tmp_path / "frame.pkl").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(DataError, match="never read"):
        read_opinions(tmp_path / "frame.pkl")


def test_the_codebook_command_round_trips(files, tmp_path, capsys):
    assert main(["codebook", str(files["sav"])]) == 0
    written = json.loads(capsys.readouterr().out)
    assert written["weight"] == "wtssall" and written["id"] == "id"
    scale = written["scales"][written["questions"]["natspac"]["scale"]]
    assert scale["options"] == ["too much", "about right", "too little"] and scale["missing"] == [8, 9]
    assert written["metadata"]["partyid"]["labels"]["0"] == "Strong Democrat"
    first, again = read_opinions(files["sav"]), read_opinions(files["sav"], codebook=written)
    assert again.questions == first.questions and again.metadata.equals(first.metadata)
    np.testing.assert_array_equal(again.answers, first.answers)
    assert main(["codebook", str(GSS), "-o", str(tmp_path / "codebook.json")]) == 0
    table = read_opinions(GSS / "gss_spending.csv", codebook=tmp_path / "codebook.json")
    gss = read_opinions(GSS)
    assert table.questions == gss.questions and table.metadata.equals(gss.metadata)
    assert main(["codebook", str(GSS.parent / "polis" / "brexit-consensus")]) == 2
    assert "has no codebook" in capsys.readouterr().err


def fitted_study(data_file: Path, out: Path, capsys) -> Path:
    """``persona-engine fit`` on ``data_file`` (300 respondents), checked with ``info``; the study folder."""
    assert main(["fit", str(data_file), "--out", str(out), "--k", "2", "--dim", "4",
                 "--cohort-space", "answers"]) == 0
    capsys.readouterr()
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["respondents"] == 300 and info["questions"] == len(NAT)
    return out


def test_fit_on_a_sav_gives_a_study(files, tmp_path, capsys):
    small = tmp_path / "small.sav"
    table, meta = pyreadstat.read_sav(files["sav"], user_missing=True, row_limit=300)
    pyreadstat.write_sav(table, small, column_labels=meta.column_names_to_labels,
                         variable_value_labels=meta.variable_value_labels, missing_ranges=meta.missing_ranges)
    fitted_study(small, tmp_path / "study", capsys)


def _short_named(table: pd.DataFrame) -> pd.DataFrame:
    return table[[c for c in table.columns if len(c) <= 8]]  # SPSS portable and SAS transport: 8-character names


@pytest.mark.parametrize("suffix", [".por", ".xpt"])
def test_a_portable_spss_or_sas_transport_file_reads_as_the_csv_with_its_codebook(gss, tmp_path, suffix):
    # pyreadstat writes neither format's value labels, so these need the codebook, as they would without labels.
    table = _short_named(gss_table())
    book = {**BOOK, "ignore": [c for c in BOOK["ignore"] if c in table.columns]}
    if suffix == ".por":  # the portable format keeps names in capitals only
        pyreadstat.write_por(table, tmp_path / "gss.por")
        book = {**book, "id": book["id"].upper(), "ignore": [c.upper() for c in book["ignore"]],
                "questions": {q.upper(): v for q, v in book["questions"].items()},
                "metadata": {m.upper(): v for m, v in book["metadata"].items()}}
    else:
        pyreadstat.write_xport(table, tmp_path / "gss.xpt")
    (tmp_path / "codebook.json").write_text(json.dumps(book))
    data = read_opinions(tmp_path / f"gss{suffix}", codebook=tmp_path / "codebook.json")
    assert data.source.format == {".por": "spss", ".xpt": "sas"}[suffix]
    assert [q.options for q in data.questions] == [q.options for q in gss.questions]
    assert [q.text for q in data.questions] == [q.text for q in gss.questions]
    np.testing.assert_array_equal(data.answers, gss.answers)
    np.testing.assert_array_equal(data.respondent_ids, gss.respondent_ids)


def test_fit_on_a_dta_gives_a_study(tmp_path, capsys):
    small = tmp_path / "small.dta"
    write_dta(gss_table().head(300), small, np.random.default_rng(3))
    out = fitted_study(small, tmp_path / "study", capsys)
    assert main(["profile", str(out), "--cohort", "0"]) == 0
    assert "too little" in capsys.readouterr().out  # options are the value labels, not codes
