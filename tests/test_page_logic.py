"""What the app's pages show, computed by the package so that any front end can do it too.

Persona specs (``persona_engine.personas``), chat transcripts
(``persona_engine.transcripts``), the cohort exports (``persona_engine.exports``)
and the Steer page's runs table and the sidebar's steering label
(``persona_engine.steer.runs``), on the bundled sample study.
"""

import io
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from persona_engine.errors import DataError
from persona_engine.exports import cohort_sheets, cohort_workbook, respondents_csv
from persona_engine.personas import (answers_spec, cohort_spec, map_point_spec, persona_from_spec, respondent_spec,
                                     selection_spec, side_by_side_specs)
from persona_engine.steer.runs import RUN_COLUMNS, runs_table, steering_label
from persona_engine.study import Study
from persona_engine.transcripts import NOTE, finish_reply, reply_stance, settle, transcript

ROOT = Path(__file__).resolve().parent.parent
STUDY = ROOT / "sample_data" / "studies" / "gss_spending"


@pytest.fixture(scope="module")
def study():
    return Study.load(STUDY)


# ------------------------------------------------------------------ persona specs
def test_each_kind_of_spec_builds_its_persona(study):
    rid = str(study.data.respondent_ids[7])
    respondent = persona_from_spec(study, respondent_spec(rid))
    assert respondent.source == "respondent" and respondent.name == f"respondent {rid}"
    np.testing.assert_allclose(respondent.vector, study.embeddings[7])

    cohort = persona_from_spec(study, cohort_spec(np.int64(2)))
    assert cohort.name == "cohort 2" and cohort.details["size"] == int(np.sum(study.labels == 2))
    np.testing.assert_allclose(cohort.vector, study.centroids[2])

    point = persona_from_spec(study, map_point_spec(np.array([1.0, -0.5])))
    assert point.source == "map_point" and point.details["point"] == (1.0, -0.5)

    you = persona_from_spec(study, answers_spec({"natfare": "too much"}))
    assert you.name == "you" and you.details["answers"] == {"natfare": "too much"}

    ids = [str(r) for r in study.data.respondent_ids[:40]]
    selection = persona_from_spec(study, selection_spec(ids))
    assert selection.name == "selection of 40" and selection.details["size"] == 40
    np.testing.assert_allclose(selection.vector, study.embeddings[:40].mean(axis=0), rtol=1e-5)


def test_specs_are_plain_json_that_survives_a_round_trip(study):
    specs = [respondent_spec(17), cohort_spec(np.int64(1)), map_point_spec((np.float32(1.5), 2)),
             answers_spec({"natfare": 0}), selection_spec(np.array(["3", "4"], dtype=object))]
    assert [json.loads(json.dumps(spec)) for spec in specs] == specs
    assert specs[0] == {"kind": "respondent", "id": "17"} and specs[1] == {"kind": "cohort", "cohort": 1}
    assert specs[2] == {"kind": "map_point", "point": [1.5, 2.0]}
    assert specs[4] == {"kind": "selection", "ids": ["3", "4"], "name": "selection of 2"}


def test_a_spec_the_study_lacks_is_an_error_naming_it(study):
    with pytest.raises(DataError, match="no-such"):
        persona_from_spec(study, respondent_spec("no-such"))
    with pytest.raises(DataError, match="no cohort"):
        persona_from_spec(study, cohort_spec(study.n_cohorts))
    with pytest.raises(ValueError, match="unknown persona kind 'ghost'"):
        persona_from_spec(study, {"kind": "ghost"})


def test_side_by_side_offers_every_cohort_after_the_personas_met_before(study):
    cohorts = [cohort_spec(c) for c in range(study.n_cohorts)]
    assert side_by_side_specs(study) == cohorts
    last, handed = respondent_spec(study.data.respondent_ids[3]), map_point_spec((0.0, 1.0))
    assert side_by_side_specs(study, (last, handed)) == [handed, last, *cohorts]  # the last given comes first
    # None, a cohort already offered and a fold-in without answers yet are not offered again
    assert side_by_side_specs(study, (None, cohort_spec(1), answers_spec({}))) == cohorts


# ------------------------------------------------------------------ transcripts
def grounded_reply(content: str) -> dict:
    return {"role": "assistant", "content": content, "pending": True,
            "grounding": {"grounded": True, "question_id": "natfare", "stance": "too much",
                          "matches": [{"question_id": "natfare", "similarity": 0.8123}]}}


def test_a_finished_reply_is_trimmed_and_takes_the_stance_of_its_words(study):
    message = grounded_reply("  We spend too little on welfare.  ")
    finish_reply(study, message)
    assert message["content"] == "We spend too little on welfare."
    assert (message["pending"], message["stopped"], message["stance"]) == (False, False, "too little")
    assert reply_stance(study, grounded_reply("I think we are spending too much on welfare.")) == "too much"
    assert reply_stance(study, {"content": "too much", "grounding": {"grounded": False}}) is None
    assert reply_stance(study, {"content": "too much"}) is None


def test_settling_keeps_a_half_written_reply_as_stopped_and_leaves_finished_ones():
    done = {"role": "assistant", "content": "Done.", "pending": False, "stance": "too much"}
    half = {**grounded_reply("I think we are spend "), "stance": "too much"}
    messages = [{"role": "user", "content": "Hello"}, done, half]
    settle(messages)
    assert half["stopped"] and not half["pending"] and half["content"] == "I think we are spend"
    assert half["stance"] is None
    assert done == {"role": "assistant", "content": "Done.", "pending": False, "stance": "too much"}


def test_a_transcript_has_the_note_the_settings_and_each_replys_grounding():
    reply = {**grounded_reply("Too much, frankly."), "pending": False, "stance": "too much"}
    ungrounded = {"role": "assistant", "content": "Why not.", "grounding": {"grounded": False, "matches": []}}
    conversations = {"cohort 0": [{"role": "user", "content": "Welfare?"}, reply],
                     "unsteered model": [{"role": "user", "content": "A joke?"}, ungrounded]}
    settings = {"study": "GSS", "model": "tiny", "strength": 1.25, "voice": 0.5, "max_new_tokens": 40}
    markdown, payload = transcript(conversations, settings)
    lines = markdown.splitlines()
    assert lines[0] == "# Persona Engine chat (GSS)" and f"> {NOTE}" in lines
    assert "Model: tiny · strength 1.25 · soft prompt in the reasons 0.5" in lines
    assert "## cohort 0" in lines and "**You:** Welfare?" in lines and "**cohort 0:** Too much, frankly." in lines
    assert ("*Grounded in natfare (similarity 0.81); persona's answer: too much; reply's stance: too much*"
            in lines)
    assert "**unsteered model:** Why not." in lines and "*Not grounded in the study.*" in lines
    data = json.loads(payload)
    assert data["note"] == NOTE and data["strength"] == 1.25 and data["max_new_tokens"] == 40
    assert data["conversations"] == conversations


def test_a_transcript_without_a_voice_setting_says_the_default():
    from persona_engine.steer.voice import VOICE

    markdown, _ = transcript({}, {"study": "s", "model": "m", "strength": 1.0})
    assert f"soft prompt in the reasons {VOICE:g}" in markdown


# ------------------------------------------------------------------ exports
def test_the_cohort_workbook_has_its_sheets_in_order_with_every_respondent(study):
    sheets = cohort_sheets(study, weighted=True)
    assert list(sheets) == ["about", "cohorts", "distinctive answers", "consensus", "respondents"]
    assert sheets["about"]["note"][0] == "Shares and tests in these sheets are unweighted."  # the sample has no weights
    assert sheets["cohorts"]["size"].sum() == study.data.n_respondents == len(sheets["respondents"])
    assert len(sheets["consensus"]) <= 3 and (sheets["distinctive answers"].groupby("cohort").size() <= 4).all()
    read = pd.read_excel(io.BytesIO(cohort_workbook(study)), sheet_name=None)
    assert list(read) == list(sheets)
    assert read["respondents"]["respondent_id"].astype(str).tolist() == study.data.respondent_ids.astype(str).tolist()
    assert read["cohorts"]["size"].tolist() == sheets["cohorts"]["size"].tolist()


def test_the_respondents_csv_has_a_row_per_respondent_and_no_formula_cells(study):
    table = pd.read_csv(io.StringIO(respondents_csv(study)), dtype={"respondent_id": str})
    assert len(table) == study.data.n_respondents
    assert list(table.columns[:5]) == ["respondent_id", "cohort", "map_x", "map_y", "n_answers"]
    assert (table["cohort"].to_numpy() == study.labels).all()
    hostile = SimpleNamespace(respondents=lambda: pd.DataFrame({"respondent_id": ["=HYPERLINK(1)", "-1.5"]}))
    assert respondents_csv(hostile).splitlines() == ["respondent_id", "'=HYPERLINK(1)", "-1.5"]


# ------------------------------------------------------------------ steering runs
def test_the_runs_table_has_a_row_per_recorded_run(study):
    from persona_engine.steer.steering_folder import training_runs

    runs = training_runs(study)
    table = runs_table(runs)
    assert list(table.columns) == RUN_COLUMNS and len(table) == len(runs) == 1
    row = table.iloc[0]
    assert row["outcome"] == "installed"  # recorded before outcomes were
    assert row["minutes"] == round(runs[0]["seconds"] / 60, 1) and row["steps"] == runs[0]["result"]["steps"]
    assert row["max examples"] == runs[0]["options"]["max_examples"]
    assert runs_table([]).columns.tolist() == RUN_COLUMNS and runs_table([]).empty


def test_a_run_recorded_without_its_accuracy_takes_that_of_its_best_check():
    run = {"seconds": 90, "outcome": "candidate", "options": {"epochs": 2.0},
           "result": {"best_val_loss": 0.5, "history": [{"val_loss": 0.7, "val_accuracy": 0.4},
                                                        {"val_loss": 0.5, "val_accuracy": 0.6}]}}
    row = runs_table([run, {**run, "result": {**run["result"], "val_accuracy": 0.65}}])
    assert row["letter accuracy"].tolist() == [0.6, 0.65]
    assert row["outcome"].tolist() == ["candidate"] * 2 and row["minutes"].tolist() == [1.5, 1.5]


def score(**flags):
    return SimpleNamespace(**{"beats_majority": False, "at_or_below_chance": False, "validated": True, **flags})


@pytest.mark.parametrize("status, label", [
    (None, "not trained yet"),
    (SimpleNamespace(active=None, candidate=None), "not trained yet"),
    (SimpleNamespace(active=score(beats_majority=True), candidate=None), "trained"),
    (SimpleNamespace(active=score(at_or_below_chance=True), candidate=None), "no better than chance, not used"),
    (SimpleNamespace(active=score(), candidate=None),
     "installed, but not better than each question's majority answer"),
    (SimpleNamespace(active=score(validated=False), candidate=None), "installed, not validated"),
    (SimpleNamespace(active=score(beats_majority=True), candidate=score()),
     "trained (an unsaved run awaits Keep or Discard on the Steer page)"),
])
def test_the_steering_label_says_trained_only_for_a_model_that_beats_the_majority(status, label):
    assert steering_label(status) == label


def test_the_sample_studys_steering_is_trained(study):
    from persona_engine.steer.steering_folder import steering_status

    assert steering_label(steering_status(study)) == "trained"
