"""Fixtures shared by several test modules.

The Brexit study (the sample Polis conversation, fitted with ``random_state=0``)
is fitted once per test session and shared: tests that need to change a study
take a copy (``dataclasses.replace``) or save it and load it again.
"""

from pathlib import Path

import pytest

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data"


@pytest.fixture(scope="session")
def brexit_data():
    """The sample Polis conversation as read from ``sample_data/``."""
    from persona_engine.ingest import read_opinions

    return read_opinions(SAMPLE / "polis" / "brexit-consensus")


@pytest.fixture(scope="session")
def brexit_study(brexit_data):
    """The Brexit study fitted with every default and ``random_state=0``."""
    from persona_engine.study import fit_study

    return fit_study(brexit_data, random_state=0)


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
