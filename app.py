"""Persona Engine's app: the shared frame and the navigation over pages/.

Run with ``make app`` (or ``streamlit run app.py -- --study STUDY``).
Pages are thin views over ``persona_engine``; this file only decides which
study is open and draws what every page shares.
"""

import argparse
import sys

import streamlit as st

from pages.state import DEFAULT_STUDY, current_study

st.set_page_config(page_title="Persona Engine", page_icon=":material/groups:", layout="wide")


def _study_from_command_line() -> str:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--study", default=str(DEFAULT_STUDY))
    args, _ = parser.parse_known_args(sys.argv[1:])
    return args.study


st.session_state.setdefault("study_path", _study_from_command_line())

page = st.navigation(
    [
        st.Page("pages/study.py", title="Study", icon=":material/table_chart:", default=True),
        st.Page("pages/map.py", title="Map", icon=":material/scatter_plot:"),
    ]
)
with st.sidebar:
    study = current_study(stop_on_error=False)
    if study is not None:
        st.caption(f"Study: **{study.data.source.name}**  \n"
                   f"{study.data.n_respondents:,} respondents · {study.data.n_questions} questions · "
                   f"{study.n_cohorts} cohorts")
page.run()
