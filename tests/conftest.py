"""Fixtures shared by several test modules.

The Brexit study (the sample Polis conversation, fitted with ``random_state=0``)
is fitted once per test session and shared: tests that need to change a study
take a copy (``dataclasses.replace``) or save it and load it again.
"""

import sys
from pathlib import Path

import pytest

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data"


# ------------------------------------------------------------------ make test-fast
# `make test-fast` runs `pytest -m "not slow"`. Besides the tests marked slow in their own files (the real
# SmolLM2 model, the browser), these are marked slow here: the real model where a test does not say so,
# the fuzzing, and the longest of the rest by `pytest --durations` (seconds of `make test` on 2 shared
# cores, Dec 2026). A file, or a test with all its parameters. `make test` still runs every one of them.
SLOW = (
    "tests/test_browser.py",  # Chromium and the real model (already marked slow)
    "tests/test_fuzz.py",  # hypothesis: ~13 s
    "tests/test_app.py::test_a_new_question_is_put_to_every_cohort_with_the_real_model_and_labelled_an_estimate",  # 19
    "tests/test_unseen_questions.py::test_ask_every_cohort_a_new_question_with_the_real_model",  # real model
    "tests/test_quality.py::test_default_embedding_beats_the_question_majority_and_the_references",  # 5 data sets: 32
    "tests/test_app.py::test_fitting_from_the_data_page_saves_and_opens_a_new_study",  # 10
    "tests/test_sessions.py::test_train_steering_killed_while_installing_leaves_the_installed_model",  # 10
    "tests/test_steering_study.py::test_train_steering_installs_a_run_that_beats_the_majority_and_restores_the_previous",
    "tests/test_steering_study.py::test_ctrl_c_stops_training_and_saves_a_candidate",  # 8
    "tests/test_cli.py::test_evaluate_prints_the_quality_table_as_json",  # 7
    "tests/test_steering_study.py::test_another_base_model_or_a_refitted_study_is_refused",  # 6
    "tests/test_evaluation.py::test_evaluate_steering_command_prints_the_tables_and_writes_the_report",  # 6
    "tests/test_steering_study.py::test_steering_survives_a_re_save_and_is_dropped_by_a_refit",  # 6
    "tests/test_unseen_questions.py::test_the_command_prints_the_table_and_the_verdict_and_writes_the_report",  # 90+
    "tests/test_messages.py::test_through_a_pipe_there_are_no_progress_bars_and_an_error_is_one_line",  # 21
    "tests/test_app.py::test_who_is_in_a_cohort_says_so_in_words_when_there_is_no_metadata",  # 13 (fits a study)
    "tests/test_unseen_questions.py::test_no_held_out_question_reaches_anything_learned",  # these two share an 11 s
    "tests/test_unseen_questions.py::test_every_method_is_scored_on_every_question_once",  # fixture
    "tests/test_unseen_questions.py::test_dropout_and_shuffled_training_keep_held_out_questions_out_and_rearrange_the_examples",  # 35 under load
    "tests/test_messages.py::test_the_minimum_is_real",  # 4
    "tests/test_subsampling.py::test_nothing_is_subsampled_below_the_caps",  # 4
    "tests/test_study.py::test_optional_3d_map_is_saved_and_loaded",  # 4
    "tests/test_study.py::test_same_data_and_seed_give_the_same_study",  # 4 (test_reproducible.py covers seeds)
    "tests/test_subsampling.py::test_manifest_names_every_subsampled_step",  # 4
    "tests/test_evaluation_short.py::test_evaluate_steering_on_a_three_question_battery",  # 3
    "tests/test_study.py::test_save_killed_mid_write_never_corrupts_the_existing_study",  # 3 (a killed subprocess)
)


def pytest_collection_modifyitems(config, items):
    """Mark the tests listed in ``SLOW`` slow, so that ``-m "not slow"`` (make test-fast) leaves them out."""
    slow = set(SLOW)
    for item in items:
        test = item.nodeid.split("[", 1)[0]  # every parameter of a listed test
        if test in slow or test.split("::", 1)[0] in slow:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def torch_threads_kept():
    """Give the next test torch's thread count as this one found it.

    Test modules set one thread on import; a test that sets more (the real model's tests) or leaves
    more behind (test_app.py's test_who_is_in_a_cohort_says_so_in_words_when_there_is_no_metadata did)
    must not put the tests after it on two threads: on a busy 2-core machine test_steer.py's then took
    10 times as long (34 s instead of 3 s for one test).
    """
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    yield
    if before is not None and torch.get_num_threads() != before:
        torch.set_num_threads(before)


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
