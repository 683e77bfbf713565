import json
from pathlib import Path

import pytest

from persona_engine.cli import main

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data"


@pytest.fixture(scope="module")
def study_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli") / "brexit"
    assert main(["fit", str(SAMPLE / "polis" / "brexit-consensus"), "--out", str(folder), "--seed", "1",
                 "--cohort-space", "answers"]) == 0
    return folder


def test_fit_writes_a_study_that_info_and_profile_read(study_folder, capsys):
    assert (study_folder / "manifest.json").is_file()
    capsys.readouterr()
    assert main(["info", str(study_folder), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["respondents"] == 204 and info["questions"] == 50
    assert info["manifest"]["parameters"]["random_state"] == 1
    assert info["manifest"]["fitted"]["cohort_space"] == "answers"
    assert main(["profile", str(study_folder), "--cohort", "0", "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert "Cohort 0: most distinctive answers" in out and "Cohort 1:" not in out


def test_evaluate_prints_the_quality_table_as_json(capsys):
    assert main(["evaluate", str(SAMPLE / "polis" / "brexit-consensus"), "--json", "--seeds", "0", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    paired = result["our_cohorts_minus_polis"]
    rows = {row["method"]: row["accuracy"] for row in result["results"]}
    assert paired["splits"] == 2 and paired["standard_error"] > 0
    # The paired difference is the difference of the two methods' mean accuracies over the same splits.
    assert paired["mean"] == pytest.approx(rows["our cohorts"] - rows["Polis cohorts"], abs=1e-9)
    assert 0 < paired["wins"] + paired["ties"] if paired["mean"] >= 0 else paired["wins"] < paired["splits"]
    assert set(rows) == {"question majority", "Polis cohorts", "paper MF", "softmax MF (default)", "our cohorts"}
    assert all(0.0 <= a <= 1.0 for a in rows.values())
    assert rows["softmax MF (default)"] > rows["question majority"]


def test_errors_are_one_line_and_exit_non_zero(tmp_path, capsys):
    assert main(["fit", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("persona-engine: error:") and "missing.csv" in err
    assert len(err.splitlines()) == 1
    assert main(["profile", str(tmp_path)]) == 2
    assert "not a Persona Engine study" in capsys.readouterr().err
    assert main(["fit", str(SAMPLE / "gss_spending"), "--out", str(tmp_path / "s"), "--k", "many"]) == 2
    assert "--k must be" in capsys.readouterr().err


def test_every_command_has_help(capsys):
    import argparse

    from persona_engine.cli import _build_parser

    (subcommands,) = [a for a in _build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    commands = list(subcommands.choices)
    assert {"fit", "evaluate", "profile", "info", "codebook", "train-steering", "ask", "chat",
            "evaluate-steering"} <= set(commands)
    for command in commands:
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        shown = capsys.readouterr().out
        assert shown.startswith("usage: persona-engine " + command), command
        assert "--debug" in shown, command  # every command can show a traceback on request


# ------------------------------------------------------------------ soft-prompt options
def test_steering_commands_default_to_the_steering_settings():
    from persona_engine.cli import _build_parser
    from persona_engine.cli.evaluation_commands import evaluation_settings
    from persona_engine.cli.steering_commands import steering_settings
    from persona_engine.evaluation import EvaluationSettings
    from persona_engine.steer import SteeringSettings

    parser = _build_parser()
    args = parser.parse_args(["train-steering", "STUDY"])
    assert steering_settings(args, max_examples=args.max_examples) == SteeringSettings()
    assert evaluation_settings(parser.parse_args(["evaluate-steering", "STUDY"])) == EvaluationSettings()
    args = parser.parse_args(["train-steering", "STUDY", "--steps", "all", "--epochs", "1.5", "--words-share",
                              "0.5", "--no-teacher-fill", "--kind", "prompt", "--max-examples", "400"])
    assert steering_settings(args, max_examples=args.max_examples) == SteeringSettings(
        steps=None, epochs=1.5, words_share=0.5, teacher_fill=False, kind="prompt", max_examples=400)
    args = parser.parse_args(["evaluate-steering", "STUDY", "--split", "questions", "--question-dropout",
                              "--train-shuffled-options"])
    assert evaluation_settings(args) == EvaluationSettings(question_dropout=True, train_shuffled_options=True,
                                                           max_text_respondents=60)  # each asked every question
    args = parser.parse_args(["train-steering", "STUDY", "--question-dropout"])
    assert steering_settings(args, max_examples=args.max_examples) == SteeringSettings(question_dropout=True)


def test_steering_options_state_the_settings_defaults(capsys):
    from persona_engine.steer import SteeringSettings

    defaults = SteeringSettings()
    for command in ["train-steering", "evaluate-steering"]:
        with pytest.raises(SystemExit):
            main([command, "--help"])
        shown = " ".join(capsys.readouterr().out.split())
        for text in [f"(default {defaults.lr:g})", f"(default {defaults.batch_size})",
                     f"(default {defaults.steps};", f"(default {defaults.words_share:g}:",
                     f"(default {defaults.teacher_weight:g};", f"(default {defaults.n_virtual_tokens};"]:
            assert text in shown, (command, text)


def test_chat_offers_the_grounding_sources_of_the_package():
    from persona_engine.cli import _build_parser
    from persona_engine.cli.persona_commands import GROUNDING_SOURCES
    from persona_engine.steer.grounding import SOURCES

    assert GROUNDING_SOURCES == SOURCES
    args = _build_parser().parse_args(["chat", "STUDY", "--cohort", "0", "--source", "both", "--voice", "0.5"])
    assert (args.source, args.voice) == ("both", 0.5)


def test_steps_must_be_a_positive_number_or_all(capsys):
    for steps in ["0", "many"]:
        with pytest.raises(SystemExit) as exit_info:
            main(["train-steering", "STUDY", "--steps", steps])
        assert exit_info.value.code == 2 and "--steps" in capsys.readouterr().err


def test_progress_bars_draw_one_bar_per_stage_with_the_loss_and_close(monkeypatch):
    import io
    import sys

    from persona_engine.cli.progress import ProgressBars

    class Terminal(io.StringIO):
        def isatty(self) -> bool:  # bars are drawn on a terminal only
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with ProgressBars(unit="step") as bars:
        bars("embedding", 1, 2, {"stage": "fit", "epoch": 0, "loss": 0.25})
        bars("embedding", 2, 2, {"stage": "done", "epoch": None, "loss": 0.125})
        bars("training", 0, 3, {})
        bars("training", 3, 3, {"loss": 0.5, "eta_seconds": 0.0})
        assert bars._bar is not None and bars._bar.n == 3
    assert bars._bar is None  # closed at the end of the block
    drawn = terminal.getvalue()
    assert "embedding" in drawn and "2/2" in drawn and "loss=0.125" in drawn
    assert "training" in drawn and "3/3" in drawn and "loss=0.500" in drawn and "eta" not in drawn
