"""A study's steering: trained on its training answers, saved in its folder, used from the CLI.

The LLM is the tiny random Llama of ``tiny_llm`` (saved as a model folder for
the CLI's ``--model``). On the Brexit Polis sample it cannot beat each
question's majority answer, so its runs are never installed; on a study of
two camps that answer every question oppositely (majority about 0.5) it
learns the camps within a few dozen steps, and its runs are.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from persona_engine.cli import main
from persona_engine.errors import DataError
from persona_engine.llm import load_llm
from persona_engine.opinion_data import MISSING, OpinionData, Question, Source
from persona_engine.evaluation.protocol import holdout_split
from persona_engine.steer import SteeringSettings, TrainingResult, steering_folder, study_steering
from persona_engine.steer.steering_folder import (
    CANDIDATE,
    CHECKPOINT,
    PREVIOUS,
    discard_candidate,
    keep_candidate,
    load_holdout,
    load_steering,
    restore_previous,
    steering_status,
    training_runs,
)
from persona_engine.steer.study_steering import estimate_steering_seconds, train_steering
from persona_engine.study import STEERING, Study, fit_study
from tiny_llm import save_tiny_llm, tiny_llm

torch.set_num_threads(1)
FAST = dict(max_examples=48, epochs=1, batch_size=16, max_val_examples=32)
LEARNS = dict(steps=30, batch_size=16, lr=1e-2)
"""Enough for the tiny model to learn the two camps (validation accuracy 1 against a majority of about 0.5)."""


def two_camps_data(n: int = 60) -> OpinionData:
    ids = np.array([f"r{i}" for i in range(n)], dtype=object)
    questions = tuple(Question(f"q{i}", text, ("yes", "no", "maybe")) for i, text in
                      enumerate(["Tea?", "Raise taxes?", "More parks?", "Less war?", "Trains?", "Cats?"]))
    answers = np.where(np.arange(n)[:, None] % 2 == 0, 0, 2).repeat(len(questions), axis=1).astype(np.int16)
    return OpinionData(ids, questions, answers, pd.DataFrame(index=ids), source=Source("two camps", "synthetic"))


def weights(folder: Path) -> bytes:
    return (folder / "model.safetensors").read_bytes()


@pytest.fixture(scope="module")
def fitted(brexit_study):
    """The session's Brexit study (conftest): tests save a copy, ``replace(fitted, path=None)``, never it."""
    return brexit_study


@pytest.fixture(scope="module")
def camps():
    return fit_study(two_camps_data(), random_state=0)


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    return save_tiny_llm(tmp_path_factory.mktemp("models") / "tiny-chat-model")


@pytest.fixture(scope="module")
def llm(model_folder):
    return load_llm(model_folder, device="cpu")


@pytest.fixture(scope="module")
def trained(camps, llm, tmp_path_factory):
    """A saved two-camps study whose soft prompt, trained by train_steering, was installed; and the run's result."""
    study = Study.load(replace(camps, path=None).save(tmp_path_factory.mktemp("studies") / "camps"))
    spm, result = train_steering(study, llm, **LEARNS)
    return study, spm, result


def test_train_steering_saves_a_folder_that_loads_back(trained, llm):
    study, spm, result = trained
    folder = study.path / STEERING
    assert study.steering_path == folder
    assert {p.name for p in folder.iterdir()} == {"config.json", "model.safetensors", "holdout.safetensors",
                                                   "training.json"}
    assert not (study.path / CHECKPOINT).exists() and not (study.path / CANDIDATE).exists()
    config = json.loads((folder / "config.json").read_text())
    assert config["base_model"] == "tiny-chat-model" and config["study_fingerprint"] == study.fingerprint
    assert config["holdout"] == {"method": "holdout_split", "fraction": 0.2, "min_answers": 5, "random_state": 0}
    runs = training_runs(study)
    assert len(runs) == 1 and runs[0]["options"]["steps"] == LEARNS["steps"] and runs[0]["outcome"] == "installed"
    recorded = runs[0]["result"]
    assert recorded["val_accuracy"] == result.val_accuracy > recorded["val_majority_accuracy"]
    assert recorded["val_chance_accuracy"] == pytest.approx(1 / 3)
    losses = [h["train_loss"] for h in recorded["history"]]
    assert losses and all(np.isfinite(losses))
    loaded = load_steering(study.path, llm)
    personas = study.centroids
    with torch.no_grad():
        torch.testing.assert_close(loaded(personas), spm(personas))
    status = steering_status(study)
    assert status.active.beats_majority and not status.active.at_or_below_chance
    assert status.candidate is None and status.previous is None


def test_held_out_answers_are_recorded_and_never_trained_on(trained, llm, monkeypatch):
    study, _, _ = trained
    expected = holdout_split(study.data.answers, fraction=0.2, random_state=0).test_mask
    assert np.array_equal(load_holdout(study), expected)
    seen = {}

    def spy(llm, spm, embeddings, questions, answers, **options):
        seen["answers"] = answers
        return real(llm, spm, embeddings, questions, answers, **{**options, "max_steps": 1})

    real = study_steering.train_soft_prompt
    monkeypatch.setattr(study_steering, "train_soft_prompt", spy)
    copy = Study.load(study.path)
    copy.save(study.path.parent / "held-out-questions")
    train_steering(copy, llm, holdout=["q0", "q1"], **FAST)
    assert (seen["answers"][:, :2] == MISSING).all()
    assert (seen["answers"][:, 2:] == copy.data.answers[:, 2:]).all()
    saved = copy.steering_path or copy.path / CANDIDATE  # a one-step run may not beat the majority
    config = json.loads((saved / "config.json").read_text())
    assert config["holdout"] == {"method": "questions", "questions": ["q0", "q1"]}
    with pytest.raises(DataError, match="no question with id"):
        train_steering(copy, llm, holdout=["no such question"], **FAST)


def test_another_base_model_or_a_refitted_study_is_refused(trained, camps, tmp_path):
    study, _, _ = trained
    with pytest.raises(DataError, match="trained for the language model 'tiny-chat-model'"):
        load_steering(study, tiny_llm(name="another-model"))
    refit = fit_study(camps.data, random_state=1)
    refit.path = study.path  # the same folder, other embeddings
    with pytest.raises(DataError, match="other embeddings"):
        load_steering(refit, tiny_llm(name="tiny-chat-model"))
    unsaved = fit_study(camps.data, random_state=0)
    with pytest.raises(DataError, match="not been saved"):
        train_steering(unsaved, tiny_llm())
    with pytest.raises(DataError, match="no soft-prompting model yet"):
        load_steering(unsaved.save(tmp_path / "bare"), tiny_llm())


def test_steering_survives_a_re_save_and_is_dropped_by_a_refit(trained, llm, tmp_path):
    study, spm, _ = trained
    copy = Study.load(study.path)
    moved = copy.save(tmp_path / "moved")  # saved elsewhere: the steering comes along
    copy.save(moved)  # saved over itself
    assert Study.load(moved).steering_path == moved / STEERING
    with torch.no_grad():
        torch.testing.assert_close(load_steering(moved, llm)(study.centroids), spm(study.centroids))
    refit = fit_study(study.data, random_state=1)
    refit.save(moved)  # new embeddings: the old soft prompt no longer fits them
    assert Study.load(moved).steering_path is None and not (moved / STEERING).exists()


# ------------------------------------------------------- a run never poisons a study
def cancelled_at(step: int):
    """A ``(progress, cancel)`` pair that cancels once ``step`` steps have run."""
    done = []
    return (lambda stage, at, total, info: done.append(at)), (lambda: bool(done) and done[-1] >= step)


def test_a_cancelled_run_is_a_candidate_and_leaves_the_installed_model(trained, llm, tmp_path):
    study = Study.load(Study.load(trained[0].path).save(tmp_path / "camps"))
    installed = weights(study.steering_path)
    progress, cancel = cancelled_at(1)
    _, result = train_steering(study, llm, progress=progress, cancel=cancel, **LEARNS)
    assert result.stopped == "cancelled" and result.steps <= 2  # the cancel took effect within a step
    assert weights(study.steering_path) == installed  # chat still uses the installed model
    status = steering_status(study)
    assert status.active.beats_majority and status.previous is None
    assert status.candidate.stopped == "cancelled" and "cancelled after" in status.candidate.why_not_installed
    [run] = training_runs(study, "candidate")
    assert run["outcome"] == "candidate" and run["result"]["val_majority_accuracy"] is not None
    assert not (study.path / CHECKPOINT).exists()


def test_a_finished_run_below_the_majority_is_not_installed_and_cannot_be_kept(fitted, llm, tmp_path):
    study = Study.load(replace(fitted, path=None).save(tmp_path / "brexit"))
    _, result = train_steering(study, llm, **FAST)
    assert result.stopped != "cancelled" and result.val_accuracy <= result.val_majority_accuracy
    assert study.steering_path is None  # never installed
    candidate = steering_status(study).candidate
    assert candidate.accuracy == result.val_accuracy and candidate.majority == result.val_majority_accuracy
    assert "majority answer" in candidate.why_not_installed
    with pytest.raises(DataError, match=rf"accuracy {result.val_accuracy:.3f} is not above the "
                                        rf"{result.val_majority_accuracy:.3f} of always giving each question"):
        keep_candidate(study)
    assert study.steering_path is None and (study.path / CANDIDATE).is_dir()  # refused: nothing moved
    assert discard_candidate(study) and steering_status(study).candidate is None
    assert not discard_candidate(study)
    with pytest.raises(DataError, match="no candidate"):
        keep_candidate(study)


def test_keep_installs_a_candidate_that_beats_the_majority_and_the_previous_can_be_restored(trained, llm,
                                                                                              tmp_path):
    study = Study.load(Study.load(trained[0].path).save(tmp_path / "camps"))
    first = weights(study.steering_path)
    with pytest.raises(DataError, match="no previous"):
        restore_previous(study)
    # Cancelled once a validation check has seen the camps learnt (it beats the majority).
    checks = []
    _, result = train_steering(
        study, llm, random_state=1, progress=lambda stage, step, total, info: checks.append(
            info.get("val_accuracy", 0.0)), cancel=lambda: bool(checks) and checks[-1] == 1.0,
        **{**LEARNS, "steps": 60})
    assert result.stopped == "cancelled" and result.val_accuracy > result.val_majority_accuracy
    candidate = steering_status(study).candidate
    assert candidate.beats_majority and weights(study.steering_path) == first
    second = weights(study.path / CANDIDATE)
    kept = keep_candidate(study)
    assert kept.folder == study.steering_path and weights(study.steering_path) == second
    status = steering_status(study)
    assert status.candidate is None and weights(study.path / PREVIOUS) == first
    assert training_runs(study)[-1]["outcome"] == "kept"
    restore_previous(study)  # the first model back; the kept one becomes the previous
    assert weights(study.steering_path) == first and weights(study.path / PREVIOUS) == second
    restore_previous(study)
    assert weights(study.steering_path) == second and weights(study.path / PREVIOUS) == first
    # A finished run that beats the majority is installed; the model it replaces is kept.
    train_steering(study, llm, **LEARNS)
    assert weights(study.path / PREVIOUS) == second and steering_status(study).active.beats_majority


def test_a_restore_cut_short_by_a_crash_is_finished(trained, tmp_path):
    study = Study.load(Study.load(trained[0].path).save(tmp_path / "camps"))
    shutil.copytree(study.steering_path, study.path / PREVIOUS)
    (study.path / PREVIOUS / "marker.txt").write_text("the previous model")
    # restore_previous staged the previous model and made the installed one the previous, then died.
    shutil.copytree(study.path / PREVIOUS, study.path / steering_folder.RESTORING)
    status = steering_status(study)  # any look at the study finishes the restore
    assert (study.steering_path / "marker.txt").is_file() and not (study.path / steering_folder.RESTORING).exists()
    assert status.active is not None


def test_the_active_model_at_or_below_chance_is_reported_and_can_be_refused(trained, llm, tmp_path):
    study = Study.load(Study.load(trained[0].path).save(tmp_path / "camps"))
    runs = training_runs(study)
    runs[-1]["result"].update(val_accuracy=0.112, val_majority_accuracy=0.5, val_chance_accuracy=1 / 3)
    (study.steering_path / "training.json").write_text(json.dumps({"runs": runs}))  # the poisoned study
    active = steering_status(study).active
    assert active.at_or_below_chance and not active.beats_majority and "0.112" in active.summary()
    assert load_steering(study, llm) is not None  # reported, not refused, unless asked
    with pytest.raises(DataError, match="no better than chance"):
        load_steering(study, llm, refuse_below_chance=True)


def test_older_runs_get_their_baselines_recomputed(trained):
    study, _, result = trained
    runs = training_runs(study)
    for key in ("val_accuracy", "val_majority_accuracy", "val_chance_accuracy"):
        del runs[-1]["result"][key]  # as runs were recorded before the baselines
    older = steering_folder.run_score(runs[-1], study.steering_path, study)
    assert older.majority == pytest.approx(result.val_majority_accuracy)
    assert older.chance == pytest.approx(result.val_chance_accuracy)
    assert older.accuracy == pytest.approx(result.val_accuracy)


def test_cancel_keeps_the_best_weights_and_resume_continues_the_candidate(fitted, llm, tmp_path):
    study = Study.load(replace(fitted, path=None).save(tmp_path / "brexit"))
    options = dict(max_examples=96, epochs=1, batch_size=16, max_val_examples=32, words_share=0.0)
    progress, cancel = cancelled_at(2)
    _, stopped = train_steering(study, llm, progress=progress, cancel=cancel, **options)
    assert stopped.stopped == "cancelled" and stopped.steps == 2
    assert [r["result"]["stopped"] for r in training_runs(study, "candidate")] == ["cancelled"]
    saved = study_steering.SoftPromptModel.from_pretrained(study.path / CANDIDATE, llm)  # the best weights
    _, resumed = train_steering(study, llm, resume=True, max_examples=32, epochs=1, batch_size=16,
                                max_val_examples=32, words_share=0.0)
    runs = training_runs(study, "candidate")  # still below the majority: still a candidate
    assert [r["resumed"] for r in runs] == [False, True] and resumed.steps == 2
    assert np.array_equal(steering_folder.read_holdout(study.path / CANDIDATE),
                          holdout_split(study.data.answers, random_state=0).test_mask)
    # Resuming starts from the candidate's weights, not from a fresh model.
    assert resumed.history[0]["val_loss"] <= stopped.best_val_loss + 1e-6
    assert saved.config.study_fingerprint == study.fingerprint
    with pytest.raises(DataError, match="keeps its held-out answers"):
        train_steering(study, llm, resume=True, holdout=["0"])
    with pytest.raises(DataError, match="is 'prefix', not 'prompt'"):
        train_steering(study, llm, resume=True, kind="prompt")


def test_resume_prefers_an_interrupted_runs_checkpoint(trained, llm, tmp_path):
    study, spm, _ = trained
    copy = Study.load(Study.load(study.path).save(tmp_path / "copy"))
    checkpoint = copy.path / CHECKPOINT
    changed = load_steering(copy, llm)
    with torch.no_grad():
        changed.mlp[2].bias.add_(0.5)  # what a killed run might have reached
    changed.save_pretrained(checkpoint)
    steering_folder.write_holdout(checkpoint, load_holdout(copy))
    assert steering_status(copy).interrupted
    starts = []
    real = study_steering.train_soft_prompt

    def spy(llm, soft_prompt, *args, **options):
        starts.append(soft_prompt.mlp[2].bias.detach().clone())
        return real(llm, soft_prompt, *args, **{**options, "max_steps": 1})

    study_steering.train_soft_prompt = spy
    try:
        train_steering(copy, llm, resume=True, **FAST)
    finally:
        study_steering.train_soft_prompt = real
    torch.testing.assert_close(starts[0], changed.mlp[2].bias.detach())
    assert not checkpoint.exists()


def test_train_steering_defaults_are_the_steering_settings_and_are_recorded(fitted, llm, tmp_path, monkeypatch):
    study = Study.load(replace(fitted, path=None).save(tmp_path / "brexit"))
    given = {}
    real = study_steering.train_soft_prompt

    def spy(llm, soft_prompt, embeddings, questions, **options):
        given["training"] = options
        return real(llm, soft_prompt, embeddings, questions, **{**options, "max_steps": 1})

    monkeypatch.setattr(study_steering, "train_soft_prompt", spy)
    monkeypatch.setattr(study_steering, "estimate_training_seconds",
                        lambda llm, spm, **options: given.update(estimate=options) or 1.0)
    defaults = SteeringSettings()
    estimate_steering_seconds(study, llm)
    spm, _ = train_steering(study, llm)
    for options in (given["training"], given["estimate"]):  # the estimate times the run it estimates
        assert {k: options[k] for k in defaults.training_options()} == defaults.training_options()
        assert options["teacher"] is not None and options["teacher_cells"] is not None
    assert (spm.config.kind, spm.config.n_virtual_tokens, spm.config.placement) == (
        defaults.kind, defaults.n_virtual_tokens, defaults.placement)
    [run] = training_runs(study, "candidate")  # one step does not beat the majority
    assert run["options"] == defaults.to_dict()


def test_train_steering_takes_settings_and_overrides_and_records_them(fitted, llm, tmp_path, monkeypatch):
    study = Study.load(replace(fitted, path=None).save(tmp_path / "brexit"))
    given = []
    monkeypatch.setattr(study_steering, "train_soft_prompt",
                        lambda llm, spm, *args, **options: given.append(options) or TrainingResult(steps=1))
    settings = SteeringSettings(steps=7, lr=0.01, words_share=0.25, teacher_weight=0.0, teacher_fill=False,
                                random_state=5)
    train_steering(study, llm, settings, batch_size=8, kind="prompt", n_virtual_tokens=2)
    used = SteeringSettings(**{**settings.to_dict(), "batch_size": 8, "kind": "prompt", "n_virtual_tokens": 2})
    assert given[0]["max_steps"] == 7 and given[0]["batch_size"] == 8 and given[0]["lr"] == 0.01
    assert given[0]["teacher"] is None and given[0]["teacher_cells"] is None  # no teacher, no fill
    assert training_runs(study, "candidate")[-1]["options"] == used.to_dict()  # not validated: a candidate
    # A resumed run keeps the saved model's form, and records it.
    train_steering(study, llm, SteeringSettings(), resume=True)
    resumed = SteeringSettings.from_dict(training_runs(study, "candidate")[-1]["options"])
    assert (resumed.kind, resumed.n_virtual_tokens) == ("prompt", 2) and resumed.steps == SteeringSettings.steps
    with pytest.raises(TypeError, match="steering settings"):
        train_steering(study, llm, epoch=1)


def test_train_steering_with_question_dropout_and_shuffled_orders_teaches_each_training_answer_once(
        camps, llm, tmp_path, monkeypatch):
    study = Study.load(replace(camps, path=None).save(tmp_path / "camps"))
    seen = {}
    real = study_steering.train_soft_prompt

    def spy(llm, soft_prompt, embeddings, questions, answers, **options):
        seen.update(embeddings=np.array(embeddings), questions=list(questions), answers=np.array(answers),
                    options=options)
        return real(llm, soft_prompt, embeddings, questions, answers, **{**options, "max_steps": 1})

    monkeypatch.setattr(study_steering, "train_soft_prompt", spy)
    train_steering(study, llm, question_dropout=True, train_shuffled_options=True, **FAST)
    n, ids = study.data.n_respondents, [q.id for q in study.data.questions]
    embeddings, questions, answers = seen["embeddings"], seen["questions"], seen["answers"]
    assert embeddings.shape[0] == answers.shape[0] == len(ids) * n  # six groups of one question
    assert len(questions) == 6 * len(ids) and {q.id for q in questions} == set(ids)  # every order of 3 options
    test_mask = holdout_split(study.data.answers, fraction=0.2, random_state=0).test_mask  # the default
    for g in range(len(ids)):
        rows = answers[g * n:(g + 1) * n]
        taught = [v for v, q in enumerate(questions) if (rows[:, v] != MISSING).any()]
        [j] = {ids.index(questions[v].id) for v in taught}  # each copy teaches one question
        without = np.where(test_mask, MISSING, study.data.answers)
        without[:, j] = MISSING  # placed without it, and without any held-out answer
        np.testing.assert_allclose(embeddings[g * n:(g + 1) * n], study.embedder.transform(without), atol=1e-5)
        for v in taught:  # each answer in its order: the option the respondent chose, by its words
            asked = rows[:, v] != MISSING
            words = np.array(questions[v].options)[rows[asked, v]]
            original = np.array(study.data.questions[j].options)[study.data.answers[asked, j]]
            assert (words == original).all()
        counted = sum(int((rows[:, v] != MISSING).sum()) for v in taught)
        assert counted == int((~test_mask[:, j] & (study.data.answers[:, j] != MISSING)).sum())
    runs = training_runs(study, "installed") or training_runs(study, "candidate")
    assert runs[-1]["options"]["question_dropout"] and runs[-1]["options"]["train_shuffled_options"]


def test_the_estimate_uses_earlier_runs_speed_else_at_most_two_timed_steps(trained, fitted, llm, tmp_path,
                                                                          training_steps):
    timed = training_steps
    fresh = Study.load(replace(fitted, path=None).save(tmp_path / "brexit"))  # no earlier run
    assert estimate_steering_seconds(fresh, llm, **FAST) > 0 and timed == [2]
    study, _, result = trained
    [run] = training_runs(study)
    expected = result.seconds_per_step * LEARNS["steps"] + run["seconds"] - result.seconds_per_step * result.steps
    assert estimate_steering_seconds(study, llm, **LEARNS) == pytest.approx(expected)
    assert estimate_steering_seconds(study, llm, **{**LEARNS, "steps": 300}) > expected
    assert timed == [2]  # from the earlier run's speed: no step timed
    estimate_steering_seconds(study, llm, **{**LEARNS, "batch_size": 8})  # another step cost: timed again
    assert timed == [2, 2]


# ------------------------------------------------------------------------ CLI
@pytest.fixture(scope="module")
def cli_study(fitted, model_folder, tmp_path_factory):
    """The Brexit study with a soft prompt from train-steering, installed by hand for ask and chat.

    The tiny model cannot beat each question's majority here, so the command
    leaves its run as the candidate (exit status 1); ask and chat only need
    a model of the right study and base model.
    """
    folder = replace(fitted, path=None).save(tmp_path_factory.mktemp("cli") / "brexit")
    assert main(["train-steering", str(folder), "--model", str(model_folder), "--max-examples", "32",
                 "--epochs", "1", "--seed", "3"]) == 1
    os.rename(folder / CANDIDATE, folder / STEERING)
    return folder


def test_train_steering_command_records_its_options(cli_study, capsys):
    runs = training_runs(Study.load(cli_study))
    assert len(runs) == 1 and runs[0]["llm_dtype"] == "float32" and runs[0]["llm"] == "tiny-chat-model"
    assert SteeringSettings.from_dict(runs[0]["options"]) == SteeringSettings(max_examples=32, epochs=1,
                                                                              random_state=3)


def test_train_steering_prints_estimate_and_summary(fitted, model_folder, tmp_path, capsys):
    folder = replace(fitted, path=None).save(tmp_path / "brexit")
    assert main(["train-steering", str(folder), "--model", str(model_folder), "--max-examples", "16",
                 "--kind", "prompt", "--virtual-tokens", "2", "--dtype", "bfloat16", "--steps", "2"]) == 1
    captured = capsys.readouterr()
    assert "should take about" in captured.err
    assert f"Saved the run as a candidate in {folder / CANDIDATE}, not installed: its validation accuracy" \
        in captured.out and "majority answer" in captured.out
    assert "--keep-candidate" in captured.err and "--resume" in captured.err
    assert not (folder / STEERING).exists()
    config = json.loads((folder / CANDIDATE / "config.json").read_text())
    assert config["kind"] == "prompt" and config["n_virtual_tokens"] == 2
    [run] = training_runs(Study.load(folder), "candidate")
    assert run["options"]["steps"] == 2 and run["result"]["steps"] == 2  # --steps bounds the run
    assert main(["train-steering", str(folder), "--keep-candidate"]) == 2  # below the majority: refused
    assert "not above the" in capsys.readouterr().err and not (folder / STEERING).exists()
    assert main(["train-steering", str(folder), "--discard-candidate"]) == 0
    assert not (folder / CANDIDATE).exists()


def test_train_steering_installs_a_run_that_beats_the_majority_and_restores_the_previous(camps, model_folder,
                                                                                          tmp_path, capsys):
    folder = replace(camps, path=None).save(tmp_path / "camps")
    learns = ["--model", str(model_folder), "--steps", "30", "--batch-size", "16", "--lr", "0.01"]
    assert main(["train-steering", str(folder), *learns]) == 0
    assert f"Installed the soft prompt in {folder / STEERING}" in capsys.readouterr().out
    first = weights(folder / STEERING)
    assert main(["train-steering", str(folder), *learns, "--seed", "2"]) == 0
    assert "--restore-previous puts it back" in capsys.readouterr().err
    second = weights(folder / STEERING)
    assert weights(folder / PREVIOUS) == first != second
    assert main(["train-steering", str(folder), "--restore-previous"]) == 0
    assert weights(folder / STEERING) == first and weights(folder / PREVIOUS) == second
    assert "Restored the previous" in capsys.readouterr().out


def test_ctrl_c_stops_training_and_saves_a_candidate(fitted, model_folder, tmp_path):
    folder = replace(fitted, path=None).save(tmp_path / "brexit")
    # Answers taught in words make each step slow enough to be interrupted before early stopping.
    command = [sys.executable, "-m", "persona_engine.cli", "train-steering", str(folder), "--model",
               str(model_folder), "--epochs", "50", "--max-examples", "256", "--words-share", "0.5"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    # The checkpoint folder appears once the estimate is done and training has started.
    while not (folder / CHECKPOINT / "model.safetensors").exists() and process.poll() is None:
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.2)
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-2000:]
    assert "Stopping within a step" in err and "--resume" in err
    assert "not installed: it was cancelled after" in out
    study = Study.load(folder)
    runs = training_runs(study, "candidate")
    assert [r["result"]["stopped"] for r in runs] == ["cancelled"] and 0 < runs[0]["result"]["steps"] < 800
    assert study.steering_path is None and not (folder / CHECKPOINT).exists()


def test_ask_prints_distributions_that_sum_to_one(cli_study, model_folder, capsys):
    study = Study.load(cli_study)
    question = study.data.questions[0]
    capsys.readouterr()
    assert main(["ask", str(cli_study), "--cohort", "1", "--model", str(model_folder), "--json",
                 question.text]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["question_id"] == question.id and result["persona"] == "cohort 1"
    columns = result["distributions"]
    assert columns["option"] == list(question.options)
    for name in ("steered", "unsteered", "predicted"):
        assert len(columns[name]) == question.n_options
        assert abs(sum(columns[name]) - 1.0) < 1e-6 and min(columns[name]) >= 0
    point = ",".join(str(v) for v in study.latent_map.coords_[5])
    assert main(["ask", str(cli_study), f"--point={point}", "--model", str(model_folder), "--strength", "2",
                 "Do you like tea?", "--options", "yes | no | it depends"]) == 0
    out = capsys.readouterr().out
    assert "strength 2: Do you like tea?" in out
    assert "it depends" in out and "steered" in out and "predicted" not in out


def test_ask_and_chat_explain_what_is_missing(cli_study, fitted, model_folder, tmp_path, capsys):
    capsys.readouterr()
    cases = [
        (["ask", str(cli_study), "--cohort", "0", "Is this a study question?"], "--options"),
        (["ask", str(cli_study), "--cohort", "9", "--model", str(model_folder), "0"], "no cohort 9"),
        (["ask", str(cli_study), "--respondent", "0", "0"], "--model with that model's folder"),
        (["chat", str(replace(fitted, path=None).save(tmp_path / "bare")), "--cohort", "0", "--model",
          str(model_folder)],
         "train-steering"),
        (["ask", str(cli_study), "--point", "1,x", "0"], "two numbers"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()[-1]  # after any model-loading bar
        assert err.startswith("persona-engine: error:") and message in err


def test_chat_answers_piped_input_with_the_conversation_so_far(cli_study, model_folder, monkeypatch, capsys):
    from persona_engine import steer

    calls = []
    real = steer.chat

    def spy(llm, messages, soft_prompt, persona, **options):
        calls.append(([dict(m) for m in messages], persona, options))
        yield from real(llm, messages, soft_prompt, persona, **options)

    monkeypatch.setattr(steer, "chat", spy)
    monkeypatch.setattr("sys.stdin", io.StringIO("Hello there\n\nWhat do you think of Brexit?\n/quit\nignored\n"))
    capsys.readouterr()
    assert main(["chat", str(cli_study), "--respondent", "3", "--model", str(model_folder), "--no-grounding",
                 "--max-new-tokens", "12", "--temperature", "0", "--system", "Be brief."]) == 0
    out = capsys.readouterr().out
    assert len(calls) == 2  # the blank line is skipped, /quit ends before 'ignored'
    first, second = calls[0][0], calls[1][0]
    assert first == [{"role": "user", "content": "Hello there"}]
    assert [m["role"] for m in second] == ["user", "assistant", "user"]
    assert second[1]["content"] and second[1]["content"] in out
    study = Study.load(cli_study)
    assert np.array_equal(calls[0][1], study.embeddings[study.data.respondent_index("3")])
    assert calls[0][2]["system"] == "Be brief." and calls[0][2]["temperature"] == 0


def test_chat_grounds_each_reply_and_says_what_grounded_it(cli_study, model_folder, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("Should Brexit be a success?\nTell me a joke.\n"))
    capsys.readouterr()
    assert main(["chat", str(cli_study), "--cohort", "0", "--model", str(model_folder),
                 "--max-new-tokens", "8", "--temperature", "0"]) == 0
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.startswith("[")]
    assert len(lines) == 2
    assert lines[0].startswith("[grounded in ") and "similarity" in lines[0]
    assert "; both: " in lines[0]  # the soft prompt's answer times the filter's
    assert lines[1].startswith("[not grounded")
    study = Study.load(cli_study)
    question_id = lines[0].split()[2]
    question = study.data.questions[study.data.question_index(question_id)]
    assert any(word in captured.out for word in ("I agree", "I disagree", "not sure", "Yes,", "No,")), \
        f"{question.text!r}: {captured.out!r}"


def test_chat_grounds_in_the_source_asked_for(cli_study, model_folder, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("Should Brexit be a success?\n"))
    capsys.readouterr()
    assert main(["chat", str(cli_study), "--cohort", "0", "--model", str(model_folder), "--max-new-tokens", "4",
                 "--temperature", "0", "--source", "collaborative filter", "--voice", "1"]) == 0
    assert "; collaborative filter: " in capsys.readouterr().err


def test_chat_ends_at_end_of_input(cli_study, model_folder, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("Hi"))  # no newline, no /quit
    assert main(["chat", str(cli_study), "--cohort", "0", "--model", str(model_folder),
                 "--max-new-tokens", "4", "--seed", "1"]) == 0
    assert "Chatting with cohort 0" in capsys.readouterr().err


def test_every_steering_command_has_help(capsys):
    for command in ["train-steering", "ask", "chat"]:
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        assert "usage: persona-engine " + command in capsys.readouterr().out
