"""Persona Engine's app: the navigation over app_pages/ and the frame every page shares.

Run with ``make app`` (or ``streamlit run app.py -- --study STUDY --studies DIR``).
Every run of every page goes through this file: it decides which study is
open first and where studies are saved, starts loading the language model
in the background so that Chat finds it warm, draws the sidebar (study
picker, the open study, the models' status) and runs the page chosen in the
navigation under one guard, so that an error is a message, never a
traceback. Pages are thin views over ``persona_engine``. The app opens on
the Home page. Environment: ``PERSONA_ENGINE_STUDIES`` (the studies folder)
and ``PERSONA_ENGINE_MODEL`` (a language model folder or hub id instead of
the default SmolLM2).

The pages are in ``app_pages/``, not ``pages/``: Streamlit runs a ``pages/``
folder beside the entry point as an old-style multipage app, without this
file, whenever a fresh server's first request is a deep link (``/map``),
and has no setting to turn that off.
"""

import argparse
import sys
from pathlib import Path

import streamlit as st

from app_pages.state import (DEFAULT_STUDY, MODEL_STATUS, current_study, get_steering_status, llm_model, llm_status,
                             log, open_study, saved_studies, start_loading_llm)
from persona_engine.errors import DataError
from persona_engine.steer.runs import steering_label

st.set_page_config(page_title="Persona Engine", page_icon=":material/groups:", layout="wide")

PAGES = [
    st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("app_pages/data.py", title="Data", icon=":material/upload_file:"),
    st.Page("app_pages/cohorts.py", title="Cohorts", icon=":material/groups:"),
    st.Page("app_pages/map.py", title="Map", icon=":material/scatter_plot:"),
    st.Page("app_pages/steer.py", title="Steer", icon=":material/tune:"),
    st.Page("app_pages/chat.py", title="Chat", icon=":material/forum:"),
]
PICKER = "study_picker"


def _command_line() -> argparse.Namespace:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--study", default=str(DEFAULT_STUDY))
    parser.add_argument("--studies", default=None)
    args, _ = parser.parse_known_args(sys.argv[1:])
    return args


def _picked(studies: dict[str, Path]) -> None:
    open_study(studies[st.session_state[PICKER]])


def _steering(study) -> str:
    if study.path is None:
        return "not trained yet"
    try:
        return steering_label(get_steering_status(study))
    except DataError as error:
        return f"unreadable ({error})"


def sidebar() -> None:
    """What every page shares: the study picker, the open study and the models' status."""
    with st.sidebar:
        studies = saved_studies()
        here = Path(st.session_state.get("study_path", str(DEFAULT_STUDY))).resolve()
        label = next((name for name, path in studies.items() if path.resolve() == here), None)
        if st.session_state.get(PICKER) != label:
            st.session_state[PICKER] = label  # opened elsewhere: a fit, the command line
        # A callback, not a rerun: a page that stops early (st.stop) keeps its widgets' old values,
        # and a rerun on a stale picker value would switch back and forth forever.
        st.selectbox("Study", list(studies), key=PICKER, on_change=_picked, args=(studies,))
        study = current_study(stop_on_error=False)
        if study is not None:
            st.caption(f"**{study.data.source.name}**  \n"
                       f"{study.data.n_respondents:,} respondents · {study.data.n_questions} questions · "
                       f"{study.n_cohorts} cohorts  \nSteering model: {_steering(study)}  \n"
                       f"Language model: {llm_model() or 'SmolLM2-135M-Instruct (default)'} "
                       f"({MODEL_STATUS.get(llm_status(), 'could not be loaded')})")


def run_guarded(page) -> None:
    """Draw the sidebar and run ``page``; errors become messages a social scientist can act on.

    A :class:`DataError` is shown as it is; anything else as its type and
    message, its traceback going to the server's log, not to the user.
    Streamlit's own st.stop, st.rerun and st.switch_page are BaseExceptions and pass.
    """
    try:
        sidebar()
        page.run()
    except DataError as error:
        st.error(str(error))
    except Exception as error:
        log.exception("page error")
        st.error(f"Something went wrong: {type(error).__name__}: {error}. "
                 "Try again, or reload the page; if it persists, report it with the server's log.")


if "study_path" not in st.session_state:
    arguments = _command_line()
    st.session_state["study_path"] = arguments.study
    if arguments.studies:
        st.session_state.setdefault("studies_folder", arguments.studies)
start_loading_llm()  # once per server and model: a background thread, so the first Chat need not wait
run_guarded(st.navigation(PAGES))
