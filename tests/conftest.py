"""Fixtures shared by several test modules."""

import pytest


@pytest.fixture
def training_steps(monkeypatch):
    """Steps of every ``train_soft_prompt`` run during the test, time estimates' probes included."""
    from persona_engine.steer import training

    steps, real = [], training.train_soft_prompt

    def spy(*args, **options):
        result = real(*args, **options)
        steps.append(result.steps)
        return result

    monkeypatch.setattr(training, "train_soft_prompt", spy)
    return steps
