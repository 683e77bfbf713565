"""The app's pages, driven by Streamlit's AppTest on the sample data.

AppTest cannot click on a Plotly chart, so the map's selection handler is
tested as the pure function it is, and a selection is sent as the chart's
widget state (:func:`select_on_map`); everything else goes through the pages.
Chat and steering use the tiny random model of tests/tiny_llm.py (through
``st.session_state["llm_model"]``, and ``PERSONA_ENGINE_MODEL`` for the model
the app starts loading in the background), so no test needs the real LLM.
"""

import json
import re
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the app's app_pages/ are not part of the installed package

from app_pages.state import PER_STUDY, study_id
from app_pages.widgets import CURSOR, codebook_dict, codebook_rows, cursor_grid, map_selection
from persona_engine.ingest import read_codebook, read_opinions
from persona_engine.personas import persona_from_spec
from persona_engine.cohorts.selections import cohort_differences, selection_labels, selection_profile
from persona_engine.study import Study
from tiny_llm import save_tiny_llm

STUDY = ROOT / "sample_data" / "studies" / "gss_spending"
BREXIT = ROOT / "sample_data" / "studies" / "brexit-consensus"
GSS = ROOT / "sample_data" / "gss_spending"


@pytest.fixture(scope="module")
def study():
    return Study.load(STUDY)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return str(save_tiny_llm(tmp_path_factory.mktemp("tiny-llm")))


@pytest.fixture(autouse=True)
def studies_folder(tmp_path, monkeypatch):
    folder = tmp_path / "studies"
    monkeypatch.setenv("PERSONA_ENGINE_STUDIES", str(folder))
    return folder


@pytest.fixture(autouse=True)
def background_model(tiny_model, monkeypatch):
    """The model app.py starts loading for every session: the tiny one, never the real SmolLM2."""
    monkeypatch.setenv("PERSONA_ENGINE_MODEL", tiny_model)


def open_app(study=STUDY, page=None, **state) -> AppTest:
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    app.session_state["study_path"] = str(study)
    for key, value in state.items():
        app.session_state[key] = value
    app.run()
    if page is not None:
        app.switch_page(f"app_pages/{page}.py").run()
    assert not app.exception, app.exception
    return app


def texts(elements) -> str:
    return " ".join(str(e.value) for e in elements)


def kept(app, key: str, study=STUDY):
    """What the session keeps for ``study`` alone (``app_pages.state.study_state``) under ``key``."""
    return app.session_state[PER_STUDY][study_id(study)].get(key)


# ------------------------------------------------------------------ frame
def test_the_cohorts_page_shows_the_sample_study_with_its_cohort_cards(study):
    app = open_app(page="cohorts")
    assert app.title[0].value == "Cohorts"
    sizes = [int(m.value.replace(",", "")) for m in app.metric if m.label == "Respondents"]
    assert sorted(sizes) == sorted(np.bincount(study.labels).tolist())
    assert "GSS 2018" in texts(app.sidebar.markdown) + texts(app.sidebar.caption)
    assert [b.label for b in app.get("download_button")][:2] == [
        "Respondents with their cohort (CSV)", "Cohorts, answers and respondents (XLSX)"]


def test_a_broken_study_path_gives_a_message_not_a_traceback(tmp_path):
    app = open_app(study=tmp_path)
    assert "not a Persona Engine study" in app.error[0].value


def test_the_sidebar_lists_saved_studies_and_opens_one(studies_folder):
    shutil.copytree(STUDY, studies_folder / "my-copy")
    app = open_app()
    picker = app.sidebar.selectbox[0]
    assert picker.options == ["gss_spending (sample)", "brexit-consensus (sample)", "my-copy"]
    picker.select("my-copy").run()
    assert not app.exception and Path(app.session_state["study_path"]) == studies_folder / "my-copy"


def test_an_unexpected_failure_is_a_short_message_and_the_traceback_goes_to_the_log(monkeypatch, caplog):
    import persona_engine.personas

    def broken(study, point):
        raise RuntimeError("the map's inverse is broken")

    monkeypatch.setattr(persona_engine.personas, "map_point_persona", broken)
    app = open_app(page="map")
    assert "Something went wrong" in app.error[0].value and "inverse is broken" in app.error[0].value
    assert "Traceback" not in " ".join(str(e.value) for e in app.error) and not app.code
    assert any(r.exc_info and "inverse is broken" in str(r.exc_info[1]) for r in caplog.records)


def test_an_unknown_persona_is_a_message_on_the_chat_page(tiny_model):
    app = open_app(page="chat", llm_model=tiny_model, chat_persona={"kind": "respondent", "id": "no-such"})
    assert "no-such" in texts(app.error) or "no-such" in texts(app.warning)


# ------------------------------------------------------------------ home
def test_the_app_opens_on_the_home_page_with_the_study_and_its_headline_figures(study):
    app = open_app()
    assert app.title[0].value == "Persona Engine"
    said = texts(app.markdown)
    assert "collaborative filtering" in said and "Li et al." in said and "NAACL 2024" in said
    assert "not what real people said" in texts(app.info) and "decisions about real people" in texts(app.info)
    assert "**GSS 2018: national spending priorities**: 2,348 respondents × 18 questions" in said
    assert "`gss_spending.csv`" in said and "`sample_data/gss_spending/`" in said
    assert [b.label for b in app.button] == ["Explore the cohorts", "Open the map", "Talk to cohorts side by side"]
    metrics = {m.label: m for m in app.metric}
    assert metrics["Respondents"].value == "2,348" and metrics["Questions"].value == "18"
    assert metrics["Cohorts"].value == str(study.n_cohorts) and metrics["Silhouette"].value == "0.09"
    # The evaluation report's held-out accuracies (docs/results.md): soft prompt, filter, majority.
    assert [metrics[label].value for label in ("Soft prompt, held-out accuracy", "Collaborative filter",
                                                "Each question's majority")] == ["0.625", "0.618", "0.561"]
    assert all(m.proto.help for m in app.metric)  # each figure says how it was computed
    assert "2912 answers of 800 respondents" in metrics["Collaborative filter"].proto.help
    assert "BIC" in metrics["Cohorts"].proto.help and "silhouette" in metrics["Silhouette"].proto.help
    assert "Language model" in texts(app.caption) and ": ready" in texts(app.caption)  # the tiny model is quick


def test_a_study_without_an_evaluation_shows_its_soft_prompts_validation_score():
    app = open_app(study=BREXIT)
    said = texts(app.markdown)
    assert "**Can there be consensus on Brexit?**: 204 respondents × 50 questions" in said
    assert "`sample_data/polis/brexit-consensus/`" in said
    metrics = {m.label: m for m in app.metric}
    assert "Soft prompt, held-out accuracy" not in metrics
    assert "validation answers" in metrics["Soft prompt, validation accuracy"].proto.help


def test_the_home_pages_first_steps_open_cohorts_the_map_and_chat_side_by_side(tiny_model):
    for label, title in (("Explore the cohorts", "Cohorts"), ("Open the map", "Latent map")):
        app = open_app()
        app.button[[b.label for b in app.button].index(label)].click().run()
        assert not app.exception and app.title[0].value == title
    app = open_app(llm_model=tiny_model)
    app.button[2].click().run()
    assert not app.exception, app.exception
    assert app.title[0].value == "Chat" and app.radio(key="chat_mode").value == "Side by side"
    assert app.multiselect(key="side_by_side_personas").value == ["cohort 0", "cohort 1"]


def test_the_language_model_loads_in_the_background_once_and_chat_reuses_it(tiny_model):
    from app_pages.state import _model_loads

    open_app(llm_model=tiny_model)
    load = _model_loads()[0][tiny_model]
    assert load.done.wait(60) and load.error is None
    app = open_app(page="chat", llm_model=tiny_model)
    assert _model_loads()[0][tiny_model] is load  # not loaded again
    app.chat_input[0].set_value("Hello").run()
    assert not app.exception and kept(app, "conversation")["messages"][-1]["role"] == "assistant"


# ------------------------------------------------------------------ per-study state
def select_on_map(app, study, rows) -> None:
    """Send a box selection of ``rows`` on the map as the browser would (AppTest cannot drag on a chart)."""
    from streamlit.proto.WidgetStates_pb2 import WidgetState

    coords = study.latent_map.coords_[rows]
    points = [{"x": float(x), "y": float(y), "customdata": [str(rid)]}
              for (x, y), rid in zip(coords, study.data.respondent_ids[rows])]
    box = [{"x": [float(coords[:, 0].min()), float(coords[:, 0].max())],
            "y": [float(coords[:, 1].min()), float(coords[:, 1].max())]}]
    selection = {"points": points, "point_indices": list(range(len(points))), "box": box, "lasso": []}
    states = app._tree.get_widget_states()
    chart = app.get("plotly_chart")[0].proto.id
    states.widgets.append(WidgetState(id=chart, string_value=json.dumps({"selection": selection})))
    app._run(states)


def shown_selection(app) -> str | None:
    return next((m.value for m in app.markdown if str(m.value).startswith("**Selection:")), None)


def switch_study(app, label: str) -> None:
    app.sidebar.selectbox[0].select(label).run()
    assert not app.exception, app.exception


def test_a_map_selection_never_follows_into_another_study(study):
    app = open_app(page="map")
    select_on_map(app, study, np.flatnonzero(study.labels == 1)[:208])
    assert shown_selection(app) == "**Selection: 208 respondents** (9% of everyone)"
    app.run()
    assert shown_selection(app) is not None  # it stays while the study does
    switch_study(app, "brexit-consensus (sample)")
    assert app.title[0].value == "Latent map" and "Can there be consensus" in texts(app.sidebar.caption)
    assert shown_selection(app) is None and "Chat with this selection" not in texts(app.button)
    app.run()
    assert shown_selection(app) is None
    # Plotly cannot be given a selection to draw, so it is not kept for the study's return either:
    # coming back shows the map as the chart shows it, with nothing selected.
    switch_study(app, "gss_spending (sample)")
    assert shown_selection(app) is None


def test_the_found_respondent_and_the_latent_cursor_start_afresh_in_another_study(study):
    app = open_app(page="map")
    rid = str(study.data.respondent_ids[5])
    app.text_input(key=f"find_respondent@{study_id(STUDY)}").input(rid).run()
    app.number_input(key="cursor_x").set_value(5.0).run()
    switch_study(app, "brexit-consensus (sample)")
    assert f"Respondent {rid}" not in texts(app.markdown) and not app.warning
    brexit = Study.load(BREXIT)
    largest = int(np.bincount(brexit.labels).argmax())
    assert app.number_input(key="cursor_x").value == round(float(brexit.centroid_coords()[largest][0]), 2)


def test_conversations_are_kept_per_study_through_reruns_pages_and_study_switches(tiny_model):
    app = open_app(page="chat", llm_model=tiny_model)
    app.chat_input[0].set_value("What about welfare?").run()
    assert [m.name for m in app.chat_message] == ["user", "assistant"]
    app.switch_page("app_pages/map.py").run()
    app.switch_page("app_pages/chat.py").run()
    assert [m.name for m in app.chat_message] == ["user", "assistant"]  # back from another page
    switch_study(app, "brexit-consensus (sample)")
    assert app.title[0].value == "Chat" and not app.chat_message  # the other study's conversation is not here
    app.chat_input[0].set_value("Should we leave?").run()
    assert not app.exception, app.exception
    assert kept(app, "conversation", BREXIT)["messages"][0]["content"] == "Should we leave?"
    switch_study(app, "gss_spending (sample)")
    assert [m.name for m in app.chat_message] == ["user", "assistant"]
    assert app.chat_message[0].markdown[0].value == "What about welfare?"
    assert [m["content"] for m in kept(app, "conversation")["messages"]][0] == "What about welfare?"


def test_side_by_side_conversations_and_handed_personas_stay_with_their_study(study, tiny_model):
    rid = str(study.data.respondent_ids[3])
    app = open_app(page="chat", llm_model=tiny_model, chat_persona={"kind": "respondent", "id": rid})
    app.radio(key="chat_mode").set_value("Side by side").run()
    app.multiselect(key="side_by_side_personas").set_value(["cohort 2", "cohort 3"]).run()
    app.chat_input[0].set_value("Hello").run()
    assert set(kept(app, "side_by_side")) >= {"cohort 2", "cohort 3"}
    switch_study(app, "brexit-consensus (sample)")  # two cohorts: no cohort 3 there
    assert not kept(app, "side_by_side", BREXIT) or not any(kept(app, "side_by_side", BREXIT).values())
    assert rid not in " ".join(app.multiselect(key="side_by_side_personas").options)
    switch_study(app, "gss_spending (sample)")
    assert kept(app, "chat_persona") == {"kind": "respondent", "id": rid}
    assert len(kept(app, "side_by_side")["cohort 3"]) == 2


# ------------------------------------------------------------------ data and cohorts
def test_data_page_reads_a_sample_and_shows_its_format_and_missingness():
    app = open_app(page="data")
    app.selectbox(key="data_sample").select("Polis: Can there be consensus on Brexit?").run()
    assert not app.exception
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Format"] == "polis" and metrics["Respondents"] == "204" and metrics["Questions"] == "50"
    assert len(app.get("plotly_chart")) == 2  # answered share per question, answers per respondent


def upload_on_the_data_page(name: str, content: bytes) -> AppTest:
    app = open_app(page="data")
    app.radio(key="data_source").set_value("My file").run()
    app.file_uploader[0].set_value((name, content, "text/csv")).run()
    assert not app.exception, app.exception
    return app


@pytest.mark.parametrize("name, content, said", [
    ("ragged.csv", b"id,q1,q2\n1,yes,no,no,yes\n2,no,yes\n3,yes,yes\n",
     ("ragged.csv, row 2:", "5 cells", "header (row 1) has 3")),
    ("answers.csv", bytes(range(128, 256)) * 8, ("answers.csv", "not a text table", "Parquet")),
])
def test_an_unreadable_upload_is_a_message_with_file_and_row_not_a_traceback(name, content, said):
    app = upload_on_the_data_page(name, content)
    message = texts(app.error)
    assert message.startswith("These answers cannot be read:")
    assert all(part in message for part in said), message
    assert "Traceback" not in message and not app.code and not app.metric  # nothing drawn after it


def test_the_data_preview_leaves_missing_answers_blank():
    app = open_app(page="data")  # the GSS table and codebook, with unanswered questions
    preview = app.dataframe[0]
    assert preview.proto.HasField("placeholder") and preview.proto.placeholder == ""
    answers = preview.value["natspac"]
    assert answers.isna().any() and not answers.isin(["None", "nan"]).any()


def test_the_missingness_chart_labels_every_question():
    app = open_app(page="data")
    questions = len(read_opinions(GSS).question_ids)
    spec = json.loads(app.get("plotly_chart")[0].proto.spec)
    axis = spec["layout"]["yaxis"]
    assert (axis["type"], axis["tickmode"], axis["dtick"]) == ("category", "linear", 1)
    assert len(spec["data"][0]["y"]) == questions == 18
    assert spec["layout"]["height"] >= 18 * questions  # room for each label


def test_the_app_config_allows_uploads_as_large_as_the_reader_hides_deploy_and_tracebacks():
    import tomllib

    from persona_engine.ingest import DEFAULT_MAX_BYTES

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] * 1_000_000 == DEFAULT_MAX_BYTES
    assert config["client"]["toolbarMode"] in ("viewer", "minimal")
    assert config["client"]["showErrorDetails"] in ("type", "none")  # no traceback reaches the browser


def test_fitting_from_the_data_page_saves_and_opens_a_new_study(studies_folder):
    app = open_app(page="data")
    app.selectbox(key="data_sample").select("Polis: Can there be consensus on Brexit?").run()
    app.button[-1].click().run()  # "Find cohorts in these answers"
    assert app.title[0].value == "Cohorts" and "Fit a new study" in texts(app.subheader)
    app.switch_page("app_pages/cohorts.py").run()  # AppTest reruns the page it was last told to
    # Only the form: the open study's results never sit under the new answers' form.
    assert "How many cohorts?" not in texts(app.subheader) and not app.metric
    assert "is shown here again once these answers are fitted or discarded" in texts(app.caption)
    app.selectbox(key="fit_k").select(3)
    app.button(key="FormSubmitter:fit-Fit and save").click().run()
    assert not app.exception, app.exception
    saved = [p for p in studies_folder.iterdir() if (p / "manifest.json").is_file()]
    assert len(saved) == 1 and Path(app.session_state["study_path"]) == saved[0]
    assert Study.load(saved[0]).n_cohorts == 3
    assert len([m for m in app.metric if m.label == "Respondents"]) == 3


def test_the_fit_progress_says_the_time_so_far_and_then_about_how_long_is_left():
    from app_pages.widgets import STAGES, fit_time

    assert fit_time(2.0, 0.05) == "2 s so far"  # no estimate while the first stage runs
    embedded = STAGES["embedding"][1]
    assert fit_time(6.0, embedded) == f"6 s so far, about {6 / embedded - 6:.0f} s left"
    assert fit_time(40.0, 0.99) == "40 s so far, about 1 s left"
    assert [STAGES[s][1] for s in ("embedding", "cohorts", "map")] == sorted(STAGES[s][1] for s in STAGES)


def test_cohort_cards_name_each_cohort_in_its_answers_words_and_say_how_it_differs(study):
    from persona_engine.cohorts.naming import cohort_names

    app = open_app(page="cohorts")
    headings = [m for m in app.markdown if str(m.value).startswith("#### Cohort")]
    expected = cohort_names(study.data, study.labels).set_index("cohort")
    assert len(headings) == study.n_cohorts
    for heading in headings:
        cohort, name = re.match(r"#### Cohort (\d+) · (.+)", heading.value).groups()
        assert name == expected.loc[int(cohort), "name"]
        assert heading.proto.help == expected.loc[int(cohort), "full_name"]  # the full name on hover
        assert re.match(r"(Too much|About right|Too little) on [a-zA-Z]", name), name  # option words, no codes
    assert len({h.value for h in headings}) == study.n_cohorts
    sentences = [m.value for m in app.markdown if "of all respondents" in str(m.value)]
    assert len(sentences) == study.n_cohorts and all(re.match(r"\d+% say “", s) for s in sentences)
    assert "Weakly separated cohorts: the silhouette is 0.09" in texts(app.warning)


def test_who_is_in_a_cohort_is_in_percent_sorted_by_the_largest_difference():
    app = open_app(page="cohorts")
    table = app.expander[0].dataframe[0]
    columns = json.loads(table.proto.columns)
    assert columns["cohort_percent"]["type_config"]["format"] == "%.0f%%"
    shares = table.value
    assert shares["cohort_percent"].between(0, 100).all() and shares["cohort_percent"].max() > 1
    gaps = shares.groupby("column", sort=False)["difference"].apply(lambda d: d.abs().max())
    assert list(gaps) == sorted(gaps, reverse=True)


def test_who_is_in_a_cohort_says_so_in_words_when_there_is_no_metadata(studies_folder):
    app = open_app(study=two_camps_study(studies_folder / "camps"), page="cohorts")
    said = " ".join(texts(e.markdown) for e in app.expander if e.label == "Who is in it")
    assert "no information about respondents beyond their answers" in said
    assert not any(len(e.dataframe) for e in app.expander if e.label == "Who is in it")


def test_the_codebook_table_round_trips_and_edits_reach_the_data():
    book = read_codebook(GSS / "codebook.json")
    data = read_opinions(GSS)
    rows = codebook_rows(data, book)
    assert set(rows["role"]) == {"id", "question", "metadata", "ignore"}
    again = read_opinions(GSS / "gss_spending.csv", codebook=codebook_dict(rows, book))
    assert np.array_equal(again.answers, data.answers) and again.questions == data.questions
    rows.loc[rows["column"] == "natfare", "text"] = "Welfare?"
    rows.loc[rows["column"] == "natspac", "role"] = "ignore"
    edited = read_opinions(GSS / "gss_spending.csv", codebook=codebook_dict(rows, book))
    assert edited.n_questions == data.n_questions - 1 and "natspac" not in edited.question_ids
    assert edited.questions[edited.question_index("natfare")].text == "Welfare?"


def test_a_codebook_the_data_contradicts_is_an_error_with_the_column():
    book = read_codebook(GSS / "codebook.json")
    rows = codebook_rows(read_opinions(GSS), book)
    rows.loc[rows["column"] == "natfare", "codes"] = "7|8|9"
    app = open_app(page="data", codebook_json=json.dumps(codebook_dict(rows, book)),
                   codebook_for=str(GSS))
    assert "natfare" in texts(app.error)


# ------------------------------------------------------------------ the map
def test_map_page_colours_by_metadata_and_by_answers():
    app = open_app(page="map")
    assert app.title[0].value == "Latent map"
    for colour in ("partyid", "answer: natfare"):
        app.selectbox(key="map_colour").select(colour).run()
        assert not app.exception


def map_traces(app) -> list[tuple[str, str]]:
    spec = json.loads(app.get("plotly_chart")[0].proto.spec)
    return [(t["name"], t["marker"]["color"]) for t in spec["data"]
            if t.get("name") not in (CURSOR, "cohort personas", "found respondent")]


def test_map_colours_ordered_answers_and_metadata_along_a_scale_in_its_order(study):
    from persona_engine.palettes import cohort_scale

    app = open_app(page="map")
    assert map_traces(app) == list(cohort_scale(study.n_cohorts).colours.items())
    app.selectbox(key="map_colour").select("polviews").run()
    traces = map_traces(app)
    assert [name for name, _ in traces] == [
        "Extremely liberal", "Liberal", "Slightly liberal", "Moderate", "Slightly conservative",
        "Conservative", "Extremely conservative", "unknown"]
    assert len({colour for _, colour in traces[:7]}) == 7 and all(c.startswith("rgb(") for _, c in traces[:7])
    app.selectbox(key="map_colour").select("answer: natfare").run()
    assert [name for name, _ in map_traces(app)][:3] == ["too much", "about right", "too little"]


def test_the_selection_handler_turns_events_into_respondents_and_cursor_points():
    assert map_selection(None) == map_selection({}) == map_selection(
        {"points": [], "box": [], "lasso": []})
    lasso = {"points": [{"x": 1.0, "y": 2.0, "customdata": ["17"]}, {"x": 1.5, "y": 2.5, "customdata": [CURSOR]},
                        {"x": 1.1, "y": 2.1, "customdata": ["23"]}, {"x": 1.1, "y": 2.1, "customdata": ["17"]}],
             "box": [], "lasso": [{"x": [0, 2, 2], "y": [0, 0, 3]}]}
    event = map_selection(lasso)
    assert event.respondent_ids == ("17", "23") and event.point is None
    grid_click = map_selection({"points": [{"x": 3.25, "y": -1.5, "customdata": [CURSOR]}], "box": [], "lasso": []})
    assert grid_click.respondent_ids == () and grid_click.point == (3.25, -1.5)
    respondent_click = map_selection({"points": [{"x": 0.5, "y": 0.25, "customdata": ["8"]}]})
    assert respondent_click.respondent_ids == ("8",) and respondent_click.point == (0.5, 0.25)


def test_the_cursor_grid_covers_the_map(study):
    coords = study.latent_map.coords_
    grid = cursor_grid(coords, n=10)
    assert grid.shape == (100, 2)
    assert np.all(grid.min(axis=0) < coords.min(axis=0)) and np.all(grid.max(axis=0) > coords.max(axis=0))


def test_a_selection_is_profiled_against_everyone(study):
    members = study.data.respondent_ids[study.labels == 1]
    profile = selection_profile(study.data, members)
    assert len(profile) > 0 and (profile["share_in"] > profile["share_out"]).all()
    assert selection_labels(study.data, members).sum() == len(members)
    assert selection_profile(study.data, []).empty
    with pytest.raises(Exception, match="no respondent"):
        selection_labels(study.data, ["not-an-id"])
    differences = cohort_differences(study.data, study.labels, 0, 1)
    assert differences["distance"].is_monotonic_decreasing and differences["distance"].between(0, 1).all()


def test_finding_a_respondent_and_the_latent_cursor_hand_personas_to_chat(study, tiny_model):
    app = open_app(page="map", llm_model=tiny_model)
    rid = str(study.data.respondent_ids[5])
    app.text_input(key=f"find_respondent@{study_id(STUDY)}").input(rid).run()
    assert f"Respondent {rid}" in texts(app.markdown)
    app.number_input(key="cursor_x").set_value(5.0).run()
    app.number_input(key="cursor_y").set_value(5.0).run()
    predicted = app.dataframe[-1].value
    assert len(predicted) == study.data.n_questions
    [button for button in app.button if button.label == "Chat with this point"][0].click().run()
    assert not app.exception, app.exception
    assert app.title[0].value == "Chat"
    assert kept(app, "chat_persona") == {"kind": "map_point", "point": [5.0, 5.0]}
    assert persona_from_spec(study, kept(app, "chat_persona")).source == "map_point"


# ------------------------------------------------------------------ chat and steering
def test_chat_streams_a_reply_beside_the_respondents_real_answers(study, tiny_model):
    rid = str(study.data.respondent_ids[3])
    app = open_app(page="chat", llm_model=tiny_model, chat_persona={"kind": "respondent", "id": rid})
    assert "simulation" in texts(app.info)
    assert "unsteered" in texts(app.warning)  # the sample's soft prompt is for SmolLM2, not the tiny model
    real = app.dataframe[0].value
    assert dict(zip(real["question"], real["answer"])) == study.data.answer_labels(3)
    app.chat_input[0].set_value("What should we spend more on?").run()
    assert not app.exception, app.exception
    roles = [m.name for m in app.chat_message]
    assert roles == ["user", "assistant"]
    transcript = [b for b in app.get("download_button") if "JSON" in b.label]
    assert transcript


def test_side_by_side_sends_one_message_to_every_persona_and_the_unsteered_model(tiny_model):
    app = open_app(page="chat", llm_model=tiny_model)
    app.radio(key="chat_mode").set_value("Side by side").run()
    app.multiselect(key="side_by_side_personas").set_value(["cohort 0", "cohort 1", "cohort 2"]).run()
    app.chat_input[0].set_value("Hello").run()
    assert not app.exception, app.exception
    assert [m.name for m in app.chat_message] == ["user", "assistant"] * 4
    assert set(kept(app, "side_by_side")) >= {"cohort 0", "cohort 1", "cohort 2", "unsteered model"}


def test_side_by_side_writes_every_reply_in_one_batch(tiny_model, monkeypatch):
    from persona_engine.steer import conversation

    batches, alone = [], []
    real_batch = conversation.chat_batch
    monkeypatch.setattr(conversation, "chat_batch",
                        lambda llm, requests, **options: batches.append(list(requests))
                        or real_batch(llm, requests, **options))
    monkeypatch.setattr(conversation, "chat", lambda *args, **kwargs: alone.append(args) or iter(()))
    monkeypatch.setattr("persona_engine.steer.grounding.chat_batch", conversation.chat_batch)
    monkeypatch.setattr("persona_engine.steer.grounding.chat", conversation.chat)
    # The tiny random model samples; a fixed seed keeps its unsteered reply from ending at once on some runs.
    monkeypatch.setattr("torch.seed", lambda: 0)
    app = open_app(page="chat", llm_model=tiny_model)
    app.radio(key="chat_mode").set_value("Side by side").run()
    app.multiselect(key="side_by_side_personas").set_value(["cohort 0", "cohort 1", "cohort 2"]).run()
    app.chat_input[0].set_value("What do you think about government spending on welfare?").run()
    assert not app.exception, app.exception
    assert len(batches) == 1 and not alone  # one generation for the four columns, none one after another
    assert [r.messages[-1]["content"] for r in batches[0]] == ["What do you think about government spending "
                                                               "on welfare?"] * 4
    state = kept(app, "side_by_side")
    replies = [state[name][-1] for name in ("cohort 0", "cohort 1", "cohort 2", "unsteered model")]
    assert all(r["role"] == "assistant" and r["content"] and not r["pending"] for r in replies)
    openings = [r.opening for r in batches[0]]
    assert all(openings[:3]) and openings[3] is None  # the personas open with their stance; unsteered does not
    assert [r["content"].startswith(o) for r, o in zip(replies[:3], openings[:3])] == [True] * 3
    app.chat_input[0].set_value("Why?").run()  # the second turn: each column's own history
    assert len(batches) == 2 and [len(r.messages) for r in batches[1]] == [3] * 4


def test_a_reply_shows_what_grounded_it(study, tiny_model):
    app = open_app(page="chat", llm_model=tiny_model, chat_persona={"kind": "cohort", "cohort": 0})
    app.chat_input[0].set_value("What do you think about government spending on welfare?").run()
    assert not app.exception, app.exception
    message = kept(app, "conversation")["messages"][-1]
    assert message["grounding"]["question_id"] == "natfare"
    assert message["content"].startswith("I think we are spending")
    assert message["stance"] == message["grounding"]["stance"]  # the reply says what the persona answers
    assert "Grounded in **natfare**" in texts(app.caption)
    assert "agrees with the persona's answers" in texts(app.caption)
    # No soft prompt for the tiny model: the stance is the filter's, and the page says so.
    assert message["grounding"]["source"] == "collaborative filter"
    assert "The persona's answers (the collaborative filter's)" in texts(app.markdown)
    app.chat_input[0].set_value("Tell me a joke.").run()
    assert "Not grounded" in texts(app.caption)
    markdown = [b for b in app.get("download_button") if "Markdown" in b.label]
    assert markdown


def test_a_reply_cut_short_by_a_rerun_is_kept_and_marked_stopped(tiny_model):
    half = {"role": "assistant", "content": "I think we are spend", "pending": True,
            "grounding": {"grounded": False, "matches": []}}
    conversation = {"persona": {"kind": "cohort", "cohort": 1},
                    "messages": [{"role": "user", "content": "Hello"}, half]}
    app = open_app(page="chat", llm_model=tiny_model, chat_persona={"kind": "cohort", "cohort": 1},
                   **{PER_STUDY: {study_id(STUDY): {"conversation": conversation}}})
    last = kept(app, "conversation")["messages"][-1]
    assert last["stopped"] and not last["pending"] and last["content"] == "I think we are spend"
    assert "Stopped." in texts(app.caption)
    app.chat_input[0].set_value("Go on").run()  # the conversation carries on from what was said
    assert [m["role"] for m in kept(app, "conversation")["messages"]] == ["user", "assistant"] * 2


def test_a_map_selection_is_a_persona_to_chat_with(study, tiny_model):
    ids = [str(r) for r in study.data.respondent_ids[:40]]
    spec = {"kind": "selection", "ids": ids, "name": "selection of 40"}
    app = open_app(page="chat", llm_model=tiny_model, chat_persona=spec)
    assert "mean vector of the 40 respondents" in texts(app.caption)
    app.chat_input[0].set_value("Should we spend more on parks?").run()
    assert not app.exception, app.exception
    assert kept(app, "conversation")["persona"] == spec
    assert kept(app, "conversation")["messages"][-1]["grounding"]["question_id"] == "natpark"


def test_side_by_side_shows_each_personas_stance(study, tiny_model):
    app = open_app(page="chat", llm_model=tiny_model)
    app.radio(key="chat_mode").set_value("Side by side").run()
    app.multiselect(key="side_by_side_personas").set_value(["cohort 0", "cohort 1"]).run()
    app.chat_input[0].set_value("What do you think about government spending on welfare?").run()
    assert not app.exception, app.exception
    state = kept(app, "side_by_side")
    stances = [state[name][-1]["stance"] for name in ("cohort 0", "cohort 1")]
    expected = [state[name][-1]["grounding"]["stance"] for name in ("cohort 0", "cohort 1")]
    assert stances == expected and stances[0] != stances[1]
    captions = texts(app.caption)
    assert all(f"-badge[stance: {stance}]" in captions for stance in stances)  # a chip per persona


def test_yourself_persona_lands_on_the_map(tiny_model):
    app = open_app(page="chat", llm_model=tiny_model, chat_persona={"kind": "answers", "answers": {}})
    assert "Answer at least one question" in texts(app.info)
    first = app.multiselect(key="you_questions").value[0]
    app.selectbox(key=f"you_{first}").select_index(1).run()
    assert not app.exception, app.exception
    assert "Where you land on the map" in texts(app.markdown)
    from persona_engine.palettes import cohort_scale

    spec = next(json.loads(c.proto.spec) for c in app.get("plotly_chart") if '"you"' in c.proto.spec)
    cohorts = {t["name"]: t["marker"]["color"] for t in spec["data"] if t["name"] != "you"}
    assert cohorts == cohort_scale(len(cohorts)).colours          # the Map page's palette
    assert spec["layout"].get("showlegend", True) and spec["layout"]["legend"]["title"]["text"] == "cohort"


def two_camps_study(folder: Path) -> Path:
    """A study of two camps that answer every question oppositely: the tiny model learns it in a few steps."""
    import pandas as pd

    from persona_engine.opinion_data import OpinionData, Question, Source
    from persona_engine.study import fit_study

    ids = np.array([f"r{i}" for i in range(60)], dtype=object)
    questions = tuple(Question(f"q{i}", text, ("yes", "no", "maybe")) for i, text in
                      enumerate(["Tea?", "Raise taxes?", "More parks?", "Less war?", "Trains?", "Cats?"]))
    answers = np.where(np.arange(60)[:, None] % 2 == 0, 0, 2).repeat(len(questions), axis=1).astype(np.int16)
    data = OpinionData(ids, questions, answers, pd.DataFrame(index=ids), source=Source("two camps", "synthetic"))
    return fit_study(data, random_state=0).save(folder)


def wait_for(condition, seconds: float = 60) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline and not condition():
        time.sleep(0.25)
    assert condition()


def buttons(app) -> dict:
    return {b.label: b for b in app.button}


def test_training_on_the_steer_page_installs_a_model_that_chat_then_uses(tiny_model, studies_folder):
    folder = two_camps_study(studies_folder / "camps")
    app = open_app(study=folder, page="steer", llm_model=tiny_model)
    assert "Steering model: not trained yet" in texts(app.sidebar.caption)
    app.number_input[2].set_value(30)  # steps: enough for the camps, which beat each question's majority
    app.button(key="FormSubmitter:train-Train").click().run()
    wait_for(lambda: (folder / "steering" / "config.json").is_file())
    from app_pages.state import training_jobs

    wait_for(lambda: not training_jobs()[str(folder)].running)
    app.run()
    assert not app.exception, app.exception
    assert "has a soft-prompting model" in texts(app.success) and "majority answer" in texts(app.success)
    assert "Steering model: trained" in texts(app.sidebar.caption)
    assert len(app.dataframe[0].value) == 1 and app.dataframe[0].value["outcome"][0] == "installed"
    app.switch_page("app_pages/chat.py").run()
    assert not app.exception and "unsteered" not in texts(app.warning)


def test_a_run_cancelled_on_the_steer_page_waits_for_keep_or_discard(tiny_model, tmp_path):
    from app_pages.state import training_jobs
    from persona_engine.steer.steering_folder import steering_status

    copy = tmp_path / "gss"
    shutil.copytree(STUDY, copy)
    shutil.rmtree(copy / "steering")
    app = open_app(study=copy, page="steer", llm_model=tiny_model)
    app.button(key="FormSubmitter:train-Train").click().run()  # 1250 steps: far from done when cancelled
    job = training_jobs()[str(copy)]
    first = app.get("progress")[0].proto.text  # "Preparing…" before the first step, never "Step 0 of ?"
    assert "?" not in first and ("Preparing" in first or "of 1250" in first)
    wait_for(lambda: job.step >= 1)
    app.run()
    assert " of 1250" in app.get("progress")[0].proto.text
    cancel = [b for b in app.button if b.label.startswith("Cancel")]
    cancel[0].click().run()
    assert job.cancel.is_set()
    wait_for(lambda: not job.running)
    assert job.result.stopped == "cancelled" and job.result.steps < 1250
    app.run()
    assert not app.exception, app.exception
    candidate = steering_status(Study.load(copy)).candidate
    assert candidate is not None and not candidate.beats_majority  # a random tiny model on GSS
    assert not (copy / "steering").exists()  # never installed
    assert "not installed: it was cancelled after" in texts(app.warning)
    shown = buttons(app)
    assert shown["Keep this model"].disabled and not shown["Discard"].disabled
    assert {m.label for m in app.metric} >= {"Validation accuracy", "Each question's majority", "Chance"}
    sidebar = texts(app.sidebar.caption)
    assert "Steering model: trained" not in sidebar and "awaits Keep or Discard" in sidebar
    shown["Discard"].click().run()
    assert not app.exception and not (copy / "steering.candidate").exists()
    assert "Keep this model" not in buttons(app) and "Discarded the candidate" in texts(app.info)


def test_keeping_a_candidate_that_beats_the_majority_and_restoring_the_previous(tiny_model, tmp_path):
    copy = tmp_path / "gss"
    shutil.copytree(STUDY, copy)
    shutil.copytree(copy / "steering", copy / "steering.candidate")  # the sample's model: 0.88 against 0.56
    weights = (copy / "steering" / "model.safetensors").read_bytes()
    app = open_app(study=copy, page="steer", llm_model=tiny_model)
    assert "Restore the previous model" not in buttons(app)
    keep = buttons(app)["Keep this model"]
    assert not keep.disabled
    keep.click().run()
    assert not app.exception, app.exception
    assert "Installed the candidate" in texts(app.info) and not (copy / "steering.candidate").exists()
    assert (copy / "steering.previous" / "model.safetensors").read_bytes() == weights
    assert "Steering model: trained" in texts(app.sidebar.caption)
    buttons(app)["Restore the previous model"].click().run()
    assert not app.exception and "Restored the previous model" in texts(app.info)
    assert (copy / "steering" / "model.safetensors").read_bytes() == weights


def test_the_steer_page_flags_a_model_no_better_than_chance_and_chat_refuses_it(tiny_model, tmp_path):
    from app_pages.state import get_steering
    from persona_engine.llm import load_llm

    copy = tmp_path / "gss"
    shutil.copytree(STUDY, copy)
    record = json.loads((copy / "steering" / "training.json").read_text())
    record["runs"][-1]["result"].update(val_accuracy=0.112, val_majority_accuracy=0.56, val_chance_accuracy=0.2)
    (copy / "steering" / "training.json").write_text(json.dumps(record))  # the poisoned study of the issue
    app = open_app(study=copy, page="steer", llm_model=tiny_model)
    assert "no better than chance" in texts(app.error) and "0.112" in texts(app.error)
    assert "Steering model: no better than chance" in texts(app.sidebar.caption)
    llm = load_llm(tiny_model)
    spm, why = get_steering(Study.load(copy), llm)
    assert spm is None and "no better than chance" in why
    # Allowed, it is loaded: here refused for another reason, being trained for SmolLM2, not the tiny model.
    _, why = get_steering(Study.load(copy), llm, allow_below_chance=True)
    assert "no better than chance" not in why and "trained for the language model" in why


def test_the_steer_page_shows_the_studys_evaluation_report(tmp_path):
    import pandas as pd

    from persona_engine.evaluation import EvaluationResult, write_report

    copy = tmp_path / "gss"
    shutil.copytree(STUDY, copy)
    accuracy = pd.DataFrame([
        {"method": "question only", "family": "LLM, text prompt", "calibrated": False, "accuracy": 0.14,
         "low": 0.12, "high": 0.16, "respondents": 150, "answers": 500},
        {"method": "SPM (individual)", "family": "LLM, soft prompt", "calibrated": False, "accuracy": 0.58,
         "low": 0.56, "high": 0.60, "respondents": 1500, "answers": 5000},
        {"method": "question majority", "family": "no LLM", "calibrated": False, "accuracy": 0.57,
         "low": 0.55, "high": 0.59, "respondents": 1500, "answers": 5000},
        {"method": "collaborative filter", "family": "no LLM", "calibrated": False, "accuracy": 0.61,
         "low": 0.59, "high": 0.63, "respondents": 1500, "answers": 5000}])
    empty = pd.DataFrame(columns=["method", "cohort", "question", "n", "alignment"])
    result = EvaluationResult(accuracy, empty, {"confidence": 0.95}, {"date": "2026-11-25"}, fold_in=pd.DataFrame())
    write_report(result, copy / "evaluation", html=False)
    app = open_app(study=copy, page="steer")
    shown = texts(app.markdown)
    assert "**Not met**" in shown and "question majority" in shown  # 0.58 does not clear 0.59
    assert "3.0 points below the collaborative filter" in shown
    assert app.dataframe[-1].value["method"].tolist() == accuracy["method"].tolist()


def test_a_new_question_is_put_to_every_cohort_with_the_real_model_and_labelled_an_estimate(study):
    from persona_engine.llm import DEFAULT_MODEL

    app = open_app(page="chat", llm_model=DEFAULT_MODEL)
    app.radio(key="chat_mode").set_value("New question").run()
    assert not app.exception, app.exception
    assert not app.chat_input  # this mode asks through its form, not the chat box
    app.text_input(key="new_question_text").set_value("Should the government spend more on high-speed rail?")
    app.text_input(key="new_question_options").set_value("too little | about right | too much")
    app.button[0].click().run()  # the form's submit button
    assert not app.exception, app.exception
    estimates = next(frame.value for frame in app.dataframe if "persona" in frame.value.columns)
    assert list(estimates["persona"]) == [f"cohort {c}" for c in range(study.n_cohorts)] + ["unsteered model"]
    options = ["too little", "about right", "too much"]
    np.testing.assert_allclose(estimates[options].sum(axis=1), 1, atol=1e-3)
    assert estimates["too much"].iloc[:-1].std() > 0.01  # the cohorts are steered apart
    assert "model estimate" in texts(app.caption).lower() and "not a survey result" in texts(app.caption)
    similar = next(frame.value for frame in app.dataframe if "similarity" in frame.value.columns)
    assert similar["question_id"].iloc[0] == "natmass"
    # the sample study ships its questions-never-asked evaluation (0.507 [0.496, 0.517]; question only 0.250)
    assert "answer 51% of the time (50% to 52%); the unsteered model, calibrated, 25%" in texts(app.caption)


def test_a_new_question_with_one_option_is_a_message(tiny_model):
    app = open_app(page="chat", llm_model=tiny_model)
    app.radio(key="chat_mode").set_value("New question").run()
    app.text_input(key="new_question_text").set_value("Is this a question?")
    app.text_input(key="new_question_options").set_value("yes")
    app.button[0].click().run()
    assert not app.exception, app.exception
    assert "two or more different options" in texts(app.error)
