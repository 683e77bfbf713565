"""Data page: bring in survey answers, check them, edit the codebook, then fit cohorts."""

from __future__ import annotations

import json

import pandas as pd
import plotly.express as px
import streamlit as st

from app_pages.state import DEFAULT_STUDY, SAMPLE_DATA, current_study, open_study
from app_pages.widgets import codebook_dict, codebook_rows
from persona_engine.errors import DataError
from persona_engine.ingest import codebook_text, infer_codebook, read_codebook, read_opinions
from persona_engine.ingest.codebook import CSV_ROLES
from persona_engine.opinion_data import MISSING

UPLOAD_TYPES = ["csv", "tsv", "xlsx", "parquet", "zip", "json", "sav", "zsav", "por", "dta", "sas7bdat",
                "sas7bcat", "xpt"]
CARRIES_CODEBOOK = ("spss", "stata", "sas", "qualtrics")
"""Formats whose files carry their own codebook (value labels, Qualtrics' header rows)."""
EDITABLE = ("wide", "long", *CARRIES_CODEBOOK)

SAMPLES = {
    "GSS 2018 spending: the prebuilt study (fitted, with a steering model)": DEFAULT_STUDY,
    "GSS 2018 spending: table + codebook": SAMPLE_DATA / "gss_spending",
    "Polis: Can there be consensus on Brexit?": SAMPLE_DATA / "polis" / "brexit-consensus",
    "Polis: $15 per hour in Seattle": SAMPLE_DATA / "polis" / "15-per-hour-seattle",
    "Polis: universal basic income (scoop-hivemind)": SAMPLE_DATA / "polis" / "scoop-hivemind.ubi",
    "Synthetic: 600 respondents, 4 planted cohorts (wide table)": SAMPLE_DATA / "synthetic" / "wide",
    "Synthetic: planted cohorts as a Polis export": SAMPLE_DATA / "synthetic" / "polis",
}


@st.cache_data(show_spinner="Reading the answers…", max_entries=16)
def read_sample(path: str, codebook_json: str | None):
    return read_opinions(path, codebook=None if codebook_json is None else json.loads(codebook_json))


@st.cache_data(show_spinner="Reading the upload…", max_entries=8)
def read_upload(files: tuple[tuple[str, bytes], ...], codebook_json: str | None):
    return read_opinions(_uploads(files),
                         codebook=None if codebook_json is None else json.loads(codebook_json))


def _uploads(files: tuple[tuple[str, bytes], ...]):
    import io

    uploads = []
    for name, content in files:
        handle = io.BytesIO(content)
        handle.name = name
        uploads.append(handle)
    return uploads if len(uploads) > 1 else uploads[0]


@st.cache_data(show_spinner=False, max_entries=16)
def inferred_codebook(source, codebook_json: str | None) -> str:
    """The codebook a reading used, as JSON text; ``source`` is a sample's path or the uploaded files."""
    readable = source if isinstance(source, str) else _uploads(source)
    return codebook_text(infer_codebook(readable, codebook=None if codebook_json is None
                                        else json.loads(codebook_json)))


def read_or_explain(reader, source, codebook_json):
    """The answers, or the reader's message (file, row, column) and a way back, then stop."""
    try:
        return reader(source, codebook_json)
    except DataError as error:
        st.error(f"These answers cannot be read: {error}")
        if codebook_json is not None and st.button("Back to the file's codebook"):
            st.session_state.pop("codebook_json", None)
            st.rerun()
        st.stop()


st.title("Data")
study = current_study(stop_on_error=False)
if study is not None:
    st.caption(f"Open study: **{study.data.source.name}** ({study.data.n_respondents:,} respondents, "
               f"{study.data.n_questions} questions, {study.n_cohorts} cohorts). Bring in other answers "
               "below to fit a new study.")

source = st.radio("Answers from", ["A sample", "My file"], horizontal=True, key="data_source")
codebook_json = st.session_state.get("codebook_json")
data = book = None
if source == "A sample":
    label = st.selectbox("Sample", list(SAMPLES), index=1, key="data_sample")
    path = SAMPLES[label]
    if path == DEFAULT_STUDY:
        st.write("The prebuilt study is fitted already: open it and explore its cohorts and map.")
        if st.button("Open the prebuilt study", type="primary"):
            open_study(DEFAULT_STUDY)
            st.switch_page("app_pages/cohorts.py")
        st.stop()
    if st.session_state.get("codebook_for") != str(path):
        codebook_json = None
    data = read_or_explain(read_sample, str(path), codebook_json)
    for name in ("codebook.json", "codebook.csv"):
        if codebook_json is None and (path / name).is_file():
            book = read_codebook(path / name)
    key = str(path)
else:
    uploads = st.file_uploader(
        "Survey answers: CSV, TSV, XLSX or Parquet (one table, plus codebook.json / codebook.csv if you "
        "have one), a Qualtrics export (CSV or XLSX), an SPSS (.sav, .zsav, .por), Stata (.dta) or SAS "
        "(.sas7bdat + .sas7bcat, .xpt) file, a Polis export (participants-votes.csv + comments.csv, or the "
        "zip), or a Pew wave zip",
        type=UPLOAD_TYPES, accept_multiple_files=True)
    if not uploads:
        st.info("Upload a file to begin, or pick a sample above.")
        st.stop()
    files = tuple((u.name, u.getvalue()) for u in uploads)
    key = "|".join(name for name, _ in files)
    if st.session_state.get("codebook_for") != key:
        codebook_json = None
    data = read_or_explain(read_upload, files, codebook_json)
    named = [(n, c) for n, c in files if n.lower() in ("codebook.json", "codebook.csv")]
    if named and codebook_json is None:
        book = read_codebook(named[0][1], name=named[0][0])
inferred = None
if data.source.format in EDITABLE:
    inferred = inferred_codebook(str(path) if source == "A sample" else files, codebook_json)
if data.source.format in CARRIES_CODEBOOK:
    book = read_codebook(json.loads(inferred))  # the file's own codebook, with any edits laid over it
elif codebook_json is not None:
    book = read_codebook(json.loads(codebook_json))

observed = data.observed
left, middle, right, far = st.columns(4)
left.metric("Format", data.source.format)
middle.metric("Respondents", f"{data.n_respondents:,}")
right.metric("Questions", data.n_questions)
far.metric("Answered", f"{data.fill:.0%}")
st.caption(f"**{data.source.name}** · read from {', '.join(map(str, data.source.files))}")

st.subheader("Preview")
head = min(data.n_respondents, 50)
preview = pd.DataFrame({q.id: [q.options[a] if a != MISSING else None for a in data.answers[:head, j]]
                        for j, q in enumerate(data.questions)}, index=data.respondent_ids[:head])
st.dataframe(pd.concat([preview, data.metadata.iloc[:head]], axis=1), height=260,
             placeholder="")  # a missing answer is a blank cell, not "None"

if data.source.format in EDITABLE:
    st.download_button("Download the inferred codebook", inferred, "codebook.json", mime="application/json",
                       help="The codebook this reading used: each question's wording, options in order, codes "
                            "and missing codes, and the other columns' roles. Edit it and upload it with the "
                            "data, or pass it with --codebook.")
    with st.expander("Codebook: question wording, option order, metadata columns", expanded=False):
        st.caption("Options are listed in scale order, separated by `|`; codes say how each option is "
                   "written in the file (leave blank when the file writes the options themselves).")
        edited = st.data_editor(
            codebook_rows(data, book), key=f"codebook_editor_{key}", num_rows="dynamic", hide_index=True,
            column_config={"role": st.column_config.SelectboxColumn(options=list(CSV_ROLES), required=True),
                           "ordinal": st.column_config.CheckboxColumn()})
        apply, reset = st.columns(2)
        if apply.button("Apply the codebook"):
            st.session_state["codebook_json"] = json.dumps(codebook_dict(edited, book))
            st.session_state["codebook_for"] = key
            st.rerun()
        if reset.button("Back to the file's codebook", disabled=codebook_json is None):
            st.session_state.pop("codebook_json", None)
            st.rerun()
        if codebook_json is not None:
            st.download_button("Download this codebook (JSON)", codebook_json, "codebook.json",
                               mime="application/json")

st.subheader("Missing answers")
left, right = st.columns(2)
answered = pd.DataFrame({"question": data.question_ids, "answered": observed.mean(axis=0)})
figure = px.bar(answered, x="answered", y="question", orientation="h", height=max(260, 60 + 18 * data.n_questions),
                title="Share of respondents who answered each question")
figure.update_layout(xaxis_tickformat=".0%", margin=dict(l=0, r=0, t=40, b=0), yaxis_title=None)
# Plotly thins out crowded category labels; every question needs its name (ids like "12" are not numbers).
figure.update_yaxes(type="category", tickmode="linear", tick0=0, dtick=1)
left.plotly_chart(figure)
figure = px.histogram(x=observed.sum(axis=1), nbins=min(50, data.n_questions + 1),
                      title="Answers per respondent", labels={"x": "questions answered"})
figure.update_layout(margin=dict(l=0, r=0, t=40, b=0), yaxis_title="respondents")
right.plotly_chart(figure)

if st.button("Find cohorts in these answers →", type="primary"):
    st.session_state["pending_data"] = data
    st.switch_page("app_pages/cohorts.py")
