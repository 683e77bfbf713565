"""Persona Engine's app: the shared frame and the navigation over pages/.

Run with ``make app`` (or ``streamlit run app.py -- --study STUDY --studies DIR``).
Pages are thin views over ``persona_engine``; this file decides which study
is open first and where studies are saved, and starts loading the language
model in the background so that Chat finds it warm. The app opens on the Home
page; every page draws the shared sidebar (``pages.state.guarded``): study
picker and the model status. Environment: ``PERSONA_ENGINE_STUDIES``
(the studies folder) and ``PERSONA_ENGINE_MODEL`` (a language model folder
or hub id instead of the default SmolLM2).

Streamlit (1.67) treats a ``pages/`` folder beside the entry point as an
old-style multipage app until some session has run this file's
``st.navigation``; a page opened by a deep link on a fresh server is sent
back through this file (see ``pages.state.guarded``).
"""

import argparse
import sys

import streamlit as st

from pages.state import DEFAULT_STUDY, FRAME, WANTED, start_loading_llm

st.set_page_config(page_title="Persona Engine", page_icon=":material/groups:", layout="wide")


def _command_line() -> argparse.Namespace:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--study", default=str(DEFAULT_STUDY))
    parser.add_argument("--studies", default=None)
    args, _ = parser.parse_known_args(sys.argv[1:])
    return args


if "study_path" not in st.session_state:
    arguments = _command_line()
    st.session_state["study_path"] = arguments.study
    if arguments.studies:
        st.session_state.setdefault("studies_folder", arguments.studies)
start_loading_llm()  # once per server and model: a background thread, so the first Chat need not wait

page = st.navigation(
    [
        st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
        st.Page("pages/data.py", title="Data", icon=":material/upload_file:"),
        st.Page("pages/cohorts.py", title="Cohorts", icon=":material/groups:"),
        st.Page("pages/map.py", title="Map", icon=":material/scatter_plot:"),
        st.Page("pages/steer.py", title="Steer", icon=":material/tune:"),
        st.Page("pages/chat.py", title="Chat", icon=":material/forum:"),
    ]
)
st.session_state[FRAME] = True
wanted = st.session_state.pop(WANTED, None)  # a deep link that came through Streamlit's pages/ mode
if wanted:
    st.switch_page(wanted)
page.run()
