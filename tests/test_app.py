"""The app's pages run on the bundled sample study without errors (Streamlit AppTest)."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
STUDY = ROOT / "sample_data" / "studies" / "gss_spending"


def open_app(study=STUDY) -> AppTest:
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    app.session_state["study_path"] = str(study)
    return app.run()


def test_study_page_shows_the_sample_study_and_its_cohorts():
    app = open_app()
    assert not app.exception
    assert app.title[0].value == "GSS 2018: national spending priorities"
    assert [m.value for m in app.metric][:2] == ["2,348", "18"]
    overview = app.dataframe[0].value
    assert overview["size"].sum() == 2348 and overview["label"].str.len().min() > 0


def test_map_page_draws_every_respondent_and_can_colour_by_metadata():
    app = open_app()
    app.switch_page("pages/map.py").run()
    assert not app.exception
    assert app.title[0].value == "Latent map"
    app.selectbox[0].select("partyid").run()
    assert not app.exception


def test_a_broken_study_path_gives_a_message_not_a_traceback(tmp_path):
    app = open_app(study=tmp_path)
    assert not app.exception
    assert "not a Persona Engine study" in app.error[0].value
