"""The evaluation harness: metrics against hand-computed cases, a split that leaks nothing, and a
run end to end on the tiny random Llama (the real model's figures are in docs/results.md)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from persona_engine.cli import main
from persona_engine.embed.factorization import EMBEDDERS
from persona_engine.errors import DataError
from persona_engine.evaluation import (
    EvaluationSettings,
    accuracy_interval,
    alignment,
    bootstrap_interval,
    evaluate_steering,
    evaluation_split,
    keep_answers,
    read_report,
    write_report,
)
from persona_engine.evaluation import baselines, harness, stages
from persona_engine.ingest import read_opinions
from persona_engine.opinion_data import MISSING
from persona_engine.study import Study
from tiny_llm import save_tiny_llm, tiny_llm

torch.set_num_threads(1)
SAMPLE = Path(__file__).resolve().parent.parent / "sample_data"
TINY = EvaluationSettings(train_examples=32, train_steps=3, val_examples=16, max_respondents=40, max_text_respondents=12,
                          max_fold_in_respondents=12, calibration_prompts=8, n_bootstrap=200)


# ----------------------------------------------------------------- metrics
def test_macro_accuracy_averages_respondents_not_answers():
    answers = np.array([[0, 1, 2], [1, MISSING, 0]])
    predicted = np.array([[0, 1, 0], [1, 0, 1]])
    mask = np.array([[True, True, True], [True, False, False]])
    interval = accuracy_interval(predicted, answers, mask, n_resamples=500)
    assert interval.mean == pytest.approx((2 / 3 + 1) / 2)  # not 3/4, the share of answers
    assert interval.n == 2 and interval.low <= interval.mean <= interval.high


def test_bootstrap_interval_matches_the_normal_approximation_and_is_seeded():
    values = np.r_[np.ones(200), np.zeros(200)]
    interval = bootstrap_interval(values, n_resamples=4000, random_state=1)
    half_width = 1.96 * np.sqrt(0.25 / 400)  # 0.049
    assert interval.mean == 0.5
    assert interval.low == pytest.approx(0.5 - half_width, abs=0.008)
    assert interval.high == pytest.approx(0.5 + half_width, abs=0.008)
    assert bootstrap_interval(values, n_resamples=4000, random_state=1) == interval
    constant = bootstrap_interval([0.7] * 9 + [np.nan])
    assert (constant.low, constant.mean, constant.high, constant.n) == pytest.approx((0.7, 0.7, 0.7, 9))
    assert np.isnan(bootstrap_interval([]).mean)
    with pytest.raises(DataError):
        bootstrap_interval([1.0], confidence=95)


def test_alignment_of_ordered_options_is_one_minus_the_normalized_wasserstein_distance():
    assert alignment([1, 0, 0], [1, 0, 0]) == 1
    assert alignment([1, 0, 0], [0, 0, 1]) == 0  # all mass at opposite ends
    assert alignment([1, 0, 0], [0, 1, 0]) == pytest.approx(0.5)  # one step of two
    assert alignment([0.5, 0.5, 0], [0, 0.5, 0.5]) == pytest.approx(0.5)
    assert alignment([2, 0, 0], [0, 3, 0]) == pytest.approx(0.5)  # counts are normalized
    # uneven option values: the step from 0 to 1 is a third of the scale 0..3
    assert alignment([1, 0, 0], [0, 1, 0], values=[0, 1, 3]) == pytest.approx(1 - 1 / 3)
    # option values given out of order are sorted by value
    assert alignment([0, 1, 0], [0, 0, 1], values=[3, 0, 1]) == pytest.approx(1 - 1 / 3)


def test_alignment_of_unordered_options_and_with_non_answers():
    assert alignment([1, 0, 0], [0, 1, 0], ordinal=False) == 0
    assert alignment([0.5, 0.5, 0], [0.5, 0, 0.5], ordinal=False) == pytest.approx(0.5)
    # a refused option (index 2) is dropped and both renormalized
    assert alignment([0.5, 0, 0.5], [1, 0, 0], non_answers=[2]) == 1
    assert alignment([0.25, 0.25, 0.5], [0, 1, 0], non_answers=[2]) == pytest.approx(0.5)
    assert np.isnan(alignment([0, 0, 1], [1, 0, 0], non_answers=[2]))  # the model only refuses
    assert np.isnan(alignment([1, 0], [0, 1], non_answers=[1]))  # one option left: nothing to compare
    with pytest.raises(DataError):
        alignment([1, 0], [1, 0, 0])


# ------------------------------------------------------------------- split
def test_the_split_keeps_held_out_answers_and_unseen_respondents_apart():
    answers = read_opinions(SAMPLE / "polis" / "brexit-consensus").answers
    split = evaluation_split(answers, respondent_fraction=0.25, random_state=3)
    known = answers != MISSING
    assert not (split.held_out & (split.seen != MISSING)).any()  # a held-out cell is never seen
    assert np.array_equal(split.seen[known & ~split.held_out], answers[known & ~split.held_out])
    assert split.held_out[known].sum() > 0 and not split.held_out[~known].any()
    eligible = known.sum(axis=1) >= 5
    assert split.unseen.sum() == round(0.25 * eligible.sum())
    assert not (split.unseen & ~eligible).any()  # too few answers: always trained, never scored
    assert split.training_answers.shape == (split.trained.sum(), answers.shape[1])
    again = evaluation_split(answers, respondent_fraction=0.25, random_state=3)
    assert np.array_equal(again.trained, split.trained) and np.array_equal(again.held_out, split.held_out)


def test_keep_answers_keeps_exactly_k_of_each_row():
    seen = np.array([[0, 1, MISSING, 2, 1], [MISSING, 1, MISSING, MISSING, MISSING]])
    partial, enough = keep_answers(seen, 2, random_state=0)
    assert ((partial != MISSING).sum(axis=1) == [2, 1]).all() and enough.tolist() == [True, False]
    kept = partial != MISSING
    assert np.array_equal(partial[kept], seen[kept])
    everything, enough = keep_answers(seen, None)
    assert np.array_equal(everything, seen) and enough.all()


# --------------------------------------------------------------- baselines
def test_demographics_are_words_not_codes_or_opinion_derived_groups():
    gss = Study.load(SAMPLE / "studies" / "gss_spending").data
    columns = baselines.demographic_columns(gss)
    assert {"sex", "partyid", "polviews", "age"} <= set(columns)
    assert not {"year", "id", "xnorcsiz", "wrkstat"} & set(columns)  # constant, id, numeric codes
    text = baselines.describe_respondent(gss.metadata.iloc[0], columns)
    assert text.startswith("About me: ") and "age: 43;" in text and "partyid: Not very strong Republican" in text
    polis = read_opinions(SAMPLE / "polis" / "brexit-consensus")
    assert baselines.demographic_columns(polis) == []  # Polis's groups come from the votes


def test_context_lists_the_most_similar_answered_questions_never_the_asked_one():
    gss = Study.load(SAMPLE / "studies" / "gss_spending").data
    questions = gss.questions
    similarity = baselines.question_similarity(questions)
    assert similarity.shape == (18, 18) and np.allclose(np.diag(similarity), 1, atol=1e-4)
    row = gss.answers[0].copy()
    asked = int(np.flatnonzero(row != MISSING)[0])
    text = baselines.describe_answers(questions, row, asked, similarity, n_context=5)
    lines = text.splitlines()[1:]
    assert len(lines) == 5 and questions[asked].text not in text
    nearest = [j for j in np.argsort(-similarity[asked]) if j != asked and row[j] != MISSING][:5]
    assert lines[0].startswith(f"- {questions[nearest[0]].text}")
    assert all(f"My answer: {questions[j].options[row[j]]}." in text for j in nearest)


# ------------------------------------------------------------- settings
def test_the_evaluation_trains_with_the_steering_settings_and_its_values_are_unchanged():
    from dataclasses import asdict, replace

    from persona_engine.steer import SteeringSettings

    settings = EvaluationSettings()
    assert settings.steering() == replace(SteeringSettings(), max_examples=20000, max_val_examples=128)
    assert EvaluationSettings.for_steering(settings.steering()) == settings
    # The evaluation's numbers depend on these: the same seeds must keep giving the same ones.
    training_knobs = {k: v for k, v in asdict(settings).items() if k in (
        "train_examples", "train_steps", "val_examples", "epochs", "batch_size", "lr", "schedule", "kind",
        "n_virtual_tokens", "placement", "words_share", "teacher_weight", "teacher_fill", "random_state")}
    assert training_knobs == dict(train_examples=20000, train_steps=1250, val_examples=128, epochs=None,
                                  batch_size=32, lr=3e-3, schedule="cosine", kind="prefix", n_virtual_tokens=4,
                                  placement="reply", words_share=0.0, teacher_weight=0.7, teacher_fill=True,
                                  random_state=0)


# ------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def study(brexit_study, tmp_path_factory):
    # A copy of the session's Brexit study (conftest), saved and loaded back: the shared one keeps no path.
    return Study.load(replace(brexit_study, path=None).save(tmp_path_factory.mktemp("studies") / "brexit"))


@pytest.fixture(scope="module")
def evaluated(study):
    learned_from = {}
    real_fit, real_train = EMBEDDERS["softmax"].fit, stages.train_soft_prompt

    def fit_spy(self, X, *args, **kwargs):
        # The first fit is the filter; later ones are the cohort-space choice's inner refits.
        learned_from.setdefault("embedding", np.array(X))
        learned_from.setdefault("inner fits", []).append(np.array(X))
        return real_fit(self, X, *args, **kwargs)

    def train_spy(llm, spm, embeddings, questions, answers, **options):
        learned_from["soft prompt"] = np.array(answers)
        learned_from["options"] = options
        return real_train(llm, spm, embeddings, questions, answers, **options)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(EMBEDDERS["softmax"], "fit", fit_spy)
        patch.setattr(stages, "train_soft_prompt", train_spy)
        result = evaluate_steering(study, tiny_llm(), TINY)
    return result, learned_from


def test_nothing_is_learned_from_held_out_answers_or_unseen_respondents(study, evaluated):
    _, learned_from = evaluated
    split = evaluation_split(study.data.answers, random_state=TINY.random_state)
    expected = split.training_answers
    for stage in ("embedding", "soft prompt"):
        assert np.array_equal(learned_from[stage], expected), stage
    # Choosing where to find cohorts refits the filter on parts of the same answers, nothing more.
    inner = learned_from["inner fits"][1:]
    assert inner
    for answers in inner:
        given = answers != MISSING
        assert answers.shape == expected.shape and np.array_equal(answers[given], expected[given])
    held_out_of_trained = split.held_out[split.trained]
    assert held_out_of_trained.any() and (expected[held_out_of_trained] == MISSING).all()
    # The filter may teach cells nobody answered, never a held-out one.
    options = learned_from["options"]
    cells = options["teacher_cells"]
    assert cells.shape == expected.shape and cells.any()
    assert not cells[held_out_of_trained].any()
    assert np.array_equal(cells, study.data.answers[split.trained] == MISSING)
    assert options["max_steps"] == TINY.train_steps and options["epochs"] is None
    assert {k: options[k] for k in TINY.steering().training_options()} == TINY.steering().training_options()


def test_the_harness_scores_every_method_with_intervals(evaluated):
    result, _ = evaluated
    table = result.accuracy.set_index("method")
    expected = {"question only", "question only, calibrated", "context", "context, calibrated",
                "SPM (individual)", "SPM (cohort)", "SPM (untrained)", "question majority",
                "collaborative filter", "cohort majority"}
    assert set(table.index) == expected  # no demographics: Polis has none
    assert ((table["low"] <= table["accuracy"]) & (table["accuracy"] <= table["high"])).all()
    assert table.loc["SPM (individual)", "respondents"] == 40
    assert table.loc["context", "respondents"] == 12
    assert table["accuracy"].between(0, 1).all()
    assert table.loc["collaborative filter", "accuracy"] > table.loc["question only", "accuracy"] - 0.5
    fold_in = result.fold_in
    assert set(fold_in["k"].astype(str)) >= {"1", "5", "all"}
    assert (fold_in.groupby("k")["method"].count() == 3).all()
    by_cohort = result.alignment_by_cohort()
    assert by_cohort["alignment"].between(0, 1).all()
    assert set(by_cohort["method"]) >= {"SPM (individual)", "SPM (cohort)", "collaborative filter"}
    assert result.facts["alignment_weighted"] is False  # Polis has no survey weights


def test_the_report_folder_round_trips_and_says_whether_targets_are_met(evaluated, tmp_path):
    result, _ = evaluated
    folder = write_report(result, tmp_path / "report", command="persona-engine evaluate-steering X")
    assert {p.name for p in folder.iterdir()} == {"report.md", "accuracy.csv", "fold_in.csv",
                                                 "alignment.csv", "settings.json", "figures.html"}
    back = read_report(folder)
    assert back.accuracy["accuracy"].to_numpy() == pytest.approx(result.accuracy["accuracy"].to_numpy())
    assert back.settings["train_examples"] == TINY.train_examples
    text = (folder / "report.md").read_text()
    assert "persona-engine evaluate-steering X" in text and ("**Met**" in text or "**Not met**" in text)
    assert "plotly" in (folder / "figures.html").read_text()[:5_000_000]
    with pytest.raises(DataError, match="not an evaluation report"):
        read_report(tmp_path)


def test_evaluate_steering_command_prints_the_tables_and_writes_the_report(study, tmp_path, capsys):
    model = save_tiny_llm(tmp_path / "tiny-model")
    out = tmp_path / "report"
    code = main(["evaluate-steering", str(study.path), "--model", str(model), "--out", str(out),
                 "--train-examples", "16", "--steps", "3", "--no-teacher-fill",
                 "--max-respondents", "20", "--max-text-respondents", "6",
                 "--max-fold-in-respondents", "6", "--bootstrap", "100", "--no-html"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "SPM (individual)" in printed and "collaborative filter" in printed and str(out) in printed
    saved = json.loads((out / "settings.json").read_text())
    assert saved["settings"]["max_respondents"] == 20 and "--max-respondents 20" in saved["command"]
    assert saved["settings"]["train_steps"] == 3 and saved["settings"]["teacher_fill"] is False
    assert saved["facts"]["training"]["steps"] <= 3
    assert not (out / "figures.html").exists()


def test_alignment_per_cohort_weighs_answers_and_distributions_by_the_survey_weights():
    from persona_engine.opinion_data import Question

    question = Question("q", "q?", ("less", "same", "more"), ordinal=True)
    answers = np.array([[0], [0], [2], [2]])  # one cohort of four: less, less, more, more
    labels, mask = np.zeros(4, dtype=int), np.ones((4, 1), dtype=bool)
    probs = np.zeros((4, 1, 3))
    probs[[0, 1], 0, 0] = 1  # the method says "less" for the first two, "same" for the others
    probs[[2, 3], 0, 1] = 1
    plain = harness.alignment_table([question], answers, {"m": probs}, labels, mask, 1)
    # model (.5, .5, 0) against real (.5, 0, .5): W1 = .5 over a span of 2
    assert plain["alignment"].item() == pytest.approx(1 - 0.5 / 2)
    weights = np.array([3.0, 3.0, 1.0, 1.0])
    weighted = harness.alignment_table([question], answers, {"m": probs}, labels, mask, 1, weights)
    # model (.75, .25, 0) against real (.75, 0, .25): W1 = .25
    assert weighted["alignment"].item() == pytest.approx(1 - 0.25 / 2)
    assert weighted["n"].item() == 4
