"""Inputs that used to end in "all respondent vectors are identical" get their real reason.

And: progress bars only on a terminal; through a pipe an error is one line.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from persona_engine.cli import main
from persona_engine.cohorts.kmeans import MIN_RESPONDENTS, CohortFinder
from persona_engine.errors import DataError
from persona_engine.ingest import read_opinions
from persona_engine.ingest.polis import missing_comments
from persona_engine.opinion_data import OpinionData, Question
from persona_engine.study import fit_study

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data"
ROOT = Path(__file__).resolve().parent.parent


def fit_error(source: Path, tmp_path: Path, capsys) -> str:
    """The one error line ``persona-engine fit`` prints for ``source``."""
    assert main(["fit", str(source), "--out", str(tmp_path / "study")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in lines if line.startswith("persona-engine: error:")]
    assert len(errors) == 1, lines
    assert "identical" not in errors[0]
    return errors[0]


def test_polis_votes_without_comments_say_the_comments_are_missing(tmp_path, capsys):
    folder = tmp_path / "export"
    folder.mkdir()
    shutil.copy(SAMPLE / "polis" / "brexit-consensus" / "participants-votes.csv", folder)
    for source in (folder, folder / "participants-votes.csv"):
        error = fit_error(source, tmp_path, capsys)
        assert "this looks like a Polis export but comments.csv is missing" in error
    with pytest.raises(DataError, match="this looks like a Polis export but comments.csv is missing"):
        read_opinions(folder / "participants-votes.csv")  # reading alone says so, before any fit
    assert read_opinions(folder / "participants-votes.csv", format="wide").n_respondents > 0  # asked for a table
    assert missing_comments(["a/participants-votes.csv", "a/comments.csv"]) is None
    assert missing_comments(["answers.csv"]) is None


def test_too_few_respondents_say_how_many_are_needed(tmp_path, capsys):
    path = tmp_path / "four.csv"
    pd.DataFrame({"respondent_id": range(4), "q1": ["a", "b", "a", "b"], "q2": ["x", "y", "y", "x"]}).to_csv(
        path, index=False)
    error = fit_error(path, tmp_path, capsys)
    assert f"4 respondents is too few to find cohorts (at least {MIN_RESPONDENTS})" in error


def test_the_minimum_is_real(tmp_path):
    """Exactly MIN_RESPONDENTS respondents of two kinds give a study (bootstrap refits of one kind included)."""
    n = MIN_RESPONDENTS
    camp = np.arange(n) % 2
    data = OpinionData(np.arange(n), [Question(f"q{j}", f"q{j}", ("no", "yes")) for j in range(3)],
                       np.stack([camp, camp, 1 - camp], axis=1))
    for seed in range(3):
        assert fit_study(data, dim=4, random_state=seed).n_cohorts >= 1


def test_a_fixed_k_on_one_kind_of_respondent_is_one_cohort():
    """What a bootstrap resample of a small study can draw; an automatic k still refuses it."""
    assert CohortFinder(n_cohorts=2).fit(np.zeros((6, 3))).n_cohorts_ == 1
    with pytest.raises(DataError, match="identical"):
        CohortFinder().fit(np.zeros((6, 3)))


def test_a_column_of_one_huge_cell_is_not_a_question(tmp_path, capsys):
    path = tmp_path / "huge.csv"
    pd.DataFrame({"respondent_id": [1, 2, 3], "q1": ["x" * 5_000_000, "a", "b"]}).to_csv(path, index=False)
    error = fit_error(path, tmp_path, capsys)
    assert "no question has an answer that two respondents share" in error
    assert "question 'q1' has 3 different answers in 3 rows" in error and "5,000,000 characters" in error
    assert len(error) < 1000


def test_a_tiny_table_of_formulas_is_not_a_question(tmp_path, capsys):
    path = tmp_path / "formulas.csv"
    path.write_text('respondent_id,q1,q2\n1,=1+1,=SUM(A1:A2)\n2,+cmd,@x\n3,-2+3,"=HYPERLINK(""x"")"\n')
    error = fit_error(path, tmp_path, capsys)
    assert "no question has an answer that two respondents share" in error
    assert "looks like a spreadsheet formula" in error


def test_respondents_who_all_answer_alike_say_so():
    questions = [Question("q1", "q1", ("no", "yes")), Question("q2", "q2", ("no", "yes"))]
    data = OpinionData(np.arange(12), questions, np.ones((12, 2), dtype=int))
    with pytest.raises(DataError, match="all 12 respondents gave the same answers to every question"):
        fit_study(data)


def test_through_a_pipe_there_are_no_progress_bars_and_an_error_is_one_line(tmp_path):
    path = tmp_path / "battery.csv"
    rng = np.random.default_rng(0)
    camp = rng.integers(0, 2, 40)
    pd.DataFrame({"respondent_id": range(40),
                  **{f"q{j}": np.where((rng.random(40) < 0.85) == camp.astype(bool), "yes", "no") for j in range(3)}}
                 ).to_csv(path, index=False)
    command = [sys.executable, "-m", "persona_engine.cli", "fit", str(path), "--out", str(tmp_path / "s"), "--dim", "4"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "%|" not in done.stderr and "it/s" not in done.stderr and "\r" not in done.stderr
    assert done.stderr.strip().splitlines() == [line for line in done.stderr.strip().splitlines()
                                                if line.startswith("Read ")]
    failed = subprocess.run(command[:4] + [str(tmp_path / "missing.csv"), "--out", str(tmp_path / "t")],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert failed.returncode == 2
    assert len(failed.stderr.strip().splitlines()) == 1 and failed.stderr.startswith("persona-engine: error:")


# ------------------------------------------------------------ wide tables: ids and one-option questions
def test_a_repeated_respondent_id_is_an_error_naming_the_id_and_its_rows(tmp_path):

    table = tmp_path / "answers.csv"
    table.write_text("respondent_id,q1,q2\na,1,2\nb,2,1\na,1,1\nc,2,2\n")
    with pytest.raises(DataError) as caught:
        read_opinions(table)
    said = str(caught.value)
    assert "answers.csv" in said and "respondent id 'a' appears 2 times (rows 2, 4)" in said
    assert "column 'respondent_id'" in said


def test_a_question_with_one_option_is_dropped_with_a_warning(tmp_path, capsys):
    from persona_engine.errors import DataWarning

    table = tmp_path / "answers.csv"
    rows = [f"r{i},{'yes'},{i % 3},{(i // 2) % 2}" for i in range(30)]
    table.write_text("id,q1,q2,q3\n" + "\n".join(rows) + "\n")
    with pytest.warns(DataWarning, match=r"question q1 has one option \('yes'\): dropped"):
        data = read_opinions(table)
    assert data.question_ids == ["q2", "q3"] and "q1" in data.metadata.columns
    assert main(["fit", str(table), "--out", str(tmp_path / "study"), "--k", "2"]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warned == [f"persona-engine: warning: {table}, column 'q1': question q1 has one option ('yes'): "
                      "dropped from the questions (kept as metadata)"]
