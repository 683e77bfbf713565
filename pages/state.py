"""UI state shared by the pages: which study is open, loaded once per process."""

from pathlib import Path

import streamlit as st

from persona_engine.errors import DataError
from persona_engine.study import Study

DEFAULT_STUDY = Path(__file__).resolve().parent.parent / "sample_data" / "studies" / "gss_spending"


@st.cache_resource(show_spinner="Opening the study…")
def load_study(path: str) -> Study:
    return Study.load(path)


def current_study(stop_on_error: bool = True) -> Study | None:
    """The open study, or an actionable message (never a traceback) if it cannot be read."""
    path = st.session_state.get("study_path", str(DEFAULT_STUDY))
    try:
        return load_study(path)
    except DataError as error:
        if stop_on_error:
            st.error(f"Cannot open the study: {error}")
            st.stop()
        return None
