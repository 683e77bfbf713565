"""Short batteries are evaluable: with fewer than 5 answers per respondent one is held out (leave-one-out).

Also: the evaluation's JSON never holds NaN (``null`` and a reason instead).
"""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from persona_engine.cli import main
from persona_engine.evaluation import evaluation_split
from persona_engine.evaluation.report import json_ready
from persona_engine.opinion_data import MISSING, OpinionData, Question
from persona_engine.evaluation.quality_table import quality_table
from persona_engine.evaluation.protocol import holdout_split
from persona_engine.study import fit_study

from tiny_llm import save_tiny_llm

torch.set_num_threads(1)
LEAVE_ONE_OUT = "held out: one answer per respondent (leave-one-out), respondents have fewer than 5 answers"


def strict_json(text: str):
    """``json.loads`` that refuses NaN and Infinity, which are not JSON."""
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


def battery(n_questions: int, n_respondents: int = 60, seed: int = 0) -> np.ndarray:
    """Two camps answering ``n_questions`` yes/no questions, 85% true to their camp; ``(n, q)``."""
    rng = np.random.default_rng(seed)
    camp = rng.integers(0, 2, n_respondents)
    return np.where(rng.random((n_respondents, n_questions)) < 0.85, camp[:, None], 1 - camp[:, None])


def battery_data(n_questions: int, n_respondents: int = 60) -> OpinionData:
    questions = [Question(f"q{j}", f"Do you agree with statement {j}?", ("no", "yes")) for j in range(n_questions)]
    return OpinionData(np.arange(n_respondents), questions, battery(n_questions, n_respondents))


def battery_file(folder, n_questions: int, n_respondents: int = 60):
    answers = battery(n_questions, n_respondents)
    table = pd.DataFrame({"respondent_id": np.arange(n_respondents),
                          **{f"q{j}": np.where(answers[:, j] == 1, "agree", "disagree") for j in range(n_questions)}})
    path = folder / f"battery{n_questions}.csv"
    table.to_csv(path, index=False)
    return path


# ------------------------------------------------------------------ the split
@pytest.mark.parametrize("n_questions", [2, 3, 4])
def test_a_short_battery_holds_out_one_answer_per_respondent(n_questions):
    answers = battery(n_questions)
    answers[0, 1:] = MISSING  # one answer only: nothing to place from, so not scored
    split = holdout_split(answers, random_state=1)
    assert split.leave_one_out and split.protocol == LEAVE_ONE_OUT
    hidden = split.test_mask.sum(axis=1)
    assert hidden[0] == 0 and (hidden[1:] == 1).all()
    assert split.eligible.sum() == len(answers) - 1
    assert (split.train_answers[split.test_mask] == MISSING).all()
    assert ((split.train_answers != MISSING).sum(axis=1)[1:] == n_questions - 1).all()


def test_a_long_battery_keeps_the_share_and_says_so():
    split = holdout_split(battery(12), random_state=0)
    assert not split.leave_one_out
    assert (split.test_mask.sum(axis=1) == 2).all()
    assert split.protocol == "held out: 20% of each respondent's answers (respondents with at least 5)"


def test_the_evaluation_split_of_a_short_battery_scores_respondents_and_says_how():
    split = evaluation_split(battery(3), respondent_fraction=0.2, random_state=0)
    assert split.leave_one_out and split.protocol == LEAVE_ONE_OUT
    assert split.held_out[split.trained].any(axis=1).sum() > 30
    assert split.unseen.sum() == 12


# ---------------------------------------------------------- the quality table
@pytest.mark.parametrize("n_questions", [2, 3])
def test_the_quality_table_of_a_short_battery_scores_respondents(n_questions):
    table = quality_table(battery_data(n_questions), seeds=(0,))
    assert (table["respondents"] == 60).all()
    assert table["accuracy"].map(math.isfinite).all()
    assert table["accuracy"].between(0, 1).all()


def test_evaluate_on_a_three_question_battery_prints_finite_json(tmp_path, capsys):
    assert main(["evaluate", str(battery_file(tmp_path, 3)), "--json", "--seeds", "0"]) == 0
    result = strict_json(capsys.readouterr().out)
    assert all(row["respondents"] > 0 for row in result["results"])
    assert all(math.isfinite(row["accuracy"]) for row in result["results"])
    assert result["held_out"].startswith("held out: one answer per respondent (leave-one-out)")


def test_evaluate_says_in_its_table_how_answers_were_held_out(tmp_path, capsys):
    assert main(["evaluate", str(battery_file(tmp_path, 3)), "--seeds", "0"]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert "respondents scored, held out: one answer per respondent (leave-one-out)" in header


# ------------------------------------------------------------------ JSON
def test_json_ready_writes_null_with_a_reason_for_nan():
    rows = [{"method": "a", "accuracy": 0.5, "low": 0.4}, {"method": "b", "accuracy": float("nan"),
                                                          "low": np.float64("inf")}]
    ready = json_ready({"accuracy": rows, "facts": {"loss": float("nan"), "nested": {"n": 3}}})
    text = json.dumps(ready, allow_nan=False)
    back = strict_json(text)
    assert back["accuracy"][0] == {"method": "a", "accuracy": 0.5, "low": 0.4}
    assert back["accuracy"][1]["accuracy"] is None and back["accuracy"][1]["low"] is None
    assert "not measured" in back["accuracy"][1]["reason"]
    assert back["facts"]["loss"] is None and back["facts"]["reason"] and back["facts"]["nested"] == {"n": 3}


# --------------------------------------------------------- evaluate-steering
def test_evaluate_steering_on_a_three_question_battery(tmp_path, capsys):
    study = fit_study(battery_data(3, n_respondents=40), dim=4, random_state=0).save(tmp_path / "short")
    model = save_tiny_llm(tmp_path / "tiny-model")
    arguments = ["evaluate-steering", str(study), "--model", str(model), "--train-examples", "16", "--steps", "2",
                 "--max-respondents", "12", "--max-text-respondents", "4", "--max-fold-in-respondents", "4",
                 "--bootstrap", "50", "--no-html"]
    assert main(arguments + ["--out", str(tmp_path / "report"), "--json"]) == 0
    result = strict_json(capsys.readouterr().out)
    assert result["facts"]["held_out"] == LEAVE_ONE_OUT and result["facts"]["leave_one_out"] is True
    accuracy = {row["method"]: row for row in result["accuracy"]}
    for method in ("SPM (individual)", "collaborative filter", "question majority", "cohort majority"):
        assert accuracy[method]["respondents"] > 0 and math.isfinite(accuracy[method]["accuracy"]), method
    assert all(row["accuracy"] is not None or row["reason"] for row in result["accuracy"])
    strict_json((tmp_path / "report" / "settings.json").read_text())
    assert LEAVE_ONE_OUT in (tmp_path / "report" / "report.md").read_text()
