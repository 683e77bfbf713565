"""The soft prompt's training settings: one dataclass, and every entry point defaults to it.

The CLI's defaults are tested in test_cli.py, the evaluation's in
test_evaluation.py and train_steering's in test_steering_study.py; here are
the dataclass, the training function and the app's Steer page.
"""

from __future__ import annotations

import inspect
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from persona_engine.errors import DataError
from persona_engine.steer import SteeringSettings, TrainingResult, train_soft_prompt, training
from persona_engine.steer.settings import validation_size

ROOT = Path(__file__).resolve().parent.parent
STUDY = ROOT / "sample_data" / "studies" / "gss_spending"


def test_settings_round_trip_through_json():
    for settings in (SteeringSettings(), SteeringSettings(kind="prompt", placement="question", steps=None,
                                                          epochs=1.5, words_share=0.5, teacher_fill=False,
                                                          max_examples=4000, max_val_examples=64)):
        saved = json.loads(json.dumps(settings.to_dict()))
        assert SteeringSettings.from_dict(saved) == settings
    assert SteeringSettings.from_dict({"lr": 0.01}) == SteeringSettings(lr=0.01)  # an older record
    with pytest.raises(DataError, match="unknown steering settings"):
        SteeringSettings.from_dict({"learning_rate": 0.01})


def test_settings_are_frozen_and_checked():
    with pytest.raises(AttributeError):
        SteeringSettings().lr = 0.1
    for bad in (dict(schedule="linear"), dict(kind="adapter"), dict(placement="end"), dict(words_share=1.5),
                dict(teacher_weight=-0.1), dict(steps=0), dict(batch_size=0), dict(lr=0.0)):
        with pytest.raises(DataError):
            SteeringSettings(**bad)


def test_train_soft_prompt_defaults_are_the_settings():
    parameters = inspect.signature(train_soft_prompt).parameters
    assert {name: parameters[name].default for name in SteeringSettings().training_options()} == \
        SteeringSettings().training_options()


def test_validation_size_follows_max_examples_unless_given():
    assert validation_size(None, None) == 256
    assert validation_size(400, None) == 100 and validation_size(40, None) == 48
    assert validation_size(400, 16) == 16


def test_the_time_estimate_assumes_the_runs_defaults(monkeypatch):
    """The estimate counts the steps the run will take with the same (default) settings."""
    answers = np.zeros((1000, 10), dtype=np.int16)  # 10,000 answers
    monkeypatch.setattr(training, "train_soft_prompt",
                        lambda *args, **options: TrainingResult(n_train=9744, seconds_per_step=1.0))
    seconds = training.estimate_training_seconds(None, object(), np.zeros((1000, 2)), [None] * 10, answers)
    defaults = SteeringSettings()
    n_val = validation_size(None, None)
    checks = min(defaults.steps, 10) + 1  # ~10 validation checks and the first, each a third of a step a batch
    assert seconds == pytest.approx(defaults.steps + checks * np.ceil(n_val / defaults.batch_size) / 3)


# ------------------------------------------------------------------ Steer page
@pytest.fixture
def steer_page(tmp_path, monkeypatch):
    """The Steer page on a writable copy of the sample study, with the tiny random model."""
    from streamlit.testing.v1 import AppTest

    from tiny_llm import save_tiny_llm

    sys.path.insert(0, str(ROOT))  # the app_pages/ are not part of the installed package
    monkeypatch.setenv("PERSONA_ENGINE_STUDIES", str(tmp_path / "studies"))
    copy = tmp_path / "gss"
    shutil.copytree(STUDY, copy)
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    app.session_state["study_path"] = str(copy)
    app.session_state["llm_model"] = str(save_tiny_llm(tmp_path / "tiny-llm"))
    app.run()
    app.switch_page("app_pages/steer.py").run()
    assert not app.exception, app.exception
    return app


def test_the_steer_page_estimates_and_trains_with_the_default_settings(steer_page, monkeypatch):
    from persona_engine.steer import study_steering

    asked = {}

    def estimate(study, llm, settings=None, **options):
        asked["estimate"] = (settings, options)
        return 60.0

    def train(study, llm, settings=None, **options):
        asked["training"] = (settings, {k: v for k, v in options.items() if k not in ("progress", "cancel")})
        return None, TrainingResult(steps=1)

    monkeypatch.setattr(study_steering, "estimate_steering_seconds", estimate)
    monkeypatch.setattr(study_steering, "train_steering", train)
    steer_page.button(key="FormSubmitter:train-Estimate the time").click().run()
    assert not steer_page.exception, steer_page.exception
    assert asked["estimate"] == (SteeringSettings(), {"resume": False})
    steer_page.button(key="FormSubmitter:train-Train").click().run()
    deadline = time.time() + 30
    while "training" not in asked and time.time() < deadline:
        time.sleep(0.1)
    assert asked["training"] == asked["estimate"]  # the estimate is of the run that is started
    time.sleep(0.5)  # the training thread ends; the form is back
    steer_page.run()

    steer_page.number_input[2].set_value(0)  # steps 0: no bound but the epochs
    steer_page.number_input[1].set_value(1.5)
    steer_page.button(key="FormSubmitter:train-Estimate the time").click().run()
    assert asked["estimate"][0] == replace(SteeringSettings(), steps=None, epochs=1.5)
    steer_page.checkbox[0].check()  # question dropout
    steer_page.button(key="FormSubmitter:train-Estimate the time").click().run()
    assert asked["estimate"][0] == replace(SteeringSettings(), steps=None, epochs=1.5, question_dropout=True)
