"""Home page: what the app does, the open study, the first steps, the study's headline figures.

The figures are the study's own (its manifest, its cohorts' selection table,
its soft prompt's training record and, if it has one, its evaluation report);
each says how it was computed in its help. The language model starts loading
when the app does (``app_pages.state.start_loading_llm``); this page shows how far
it has got.
"""

from __future__ import annotations

import math
from pathlib import Path

import streamlit as st

from app_pages.state import ROOT, current_study, get_steering_status, is_bundled, llm_model, llm_status
from persona_engine.evaluation import report
from persona_engine.cohorts.profiles import WEAK_SILHOUETTE, separation_caution
from persona_engine.wording import short_question_texts

ABOUT = (
    "Persona Engine finds the latent opinion cohorts in survey data: it embeds every respondent by "
    "collaborative filtering of their answers, clusters the embeddings into cohorts and draws them on a "
    "map. You can then talk to a small language model steered toward any respondent, any cohort or any "
    "point between them, after Li et al., *On the steerability of large language models toward "
    "data-driven personas* (NAACL 2024)."
)
DISCLAIMER = (
    "Steered replies are a small language model's simulation of a persona, not what real people said. "
    "Do not use them to make decisions about real people."
)
SIDE_BY_SIDE = "Side by side"  # the Chat page's mode (its chat_mode radio) that the third first step opens


def describe(study) -> tuple[str, str]:
    """Two lines on the study: what it asks of whom, and where it comes from."""
    data = study.data
    topics = short_question_texts(data.questions, max_words=5)[:3]
    more = f" and {data.n_questions - len(topics)} more" if data.n_questions > len(topics) else ""
    first = (f"**{data.source.name}**: {data.n_respondents:,} respondents × {data.n_questions} questions "
             f"({data.source.format} format), on {', '.join(topics)}{more}.")
    files = [Path(name) for name in data.source.files]
    folders = sorted({str(f.parent) for f in files})
    where = (f"Read from {', '.join(f'`{f.name}`' for f in files)} in {', '.join(f'`{d}/`' for d in folders)}"
             if files else "Read from an unrecorded source")
    created = str(study.manifest.get("created", ""))[:10]
    saved = Path(study.path).resolve()
    saved = saved.relative_to(ROOT) if saved.is_relative_to(ROOT) else saved
    second = (f"{where}; fitted {created or 'on an unrecorded date'}, saved in `{saved}`"
              + (" (a bundled sample: refitting or training works on a copy)." if is_bundled(study.path) else "."))
    return first, second


def first_steps() -> None:
    explore, browse, talk = st.columns(3)
    if explore.button("Explore the cohorts", icon=":material/groups:", type="primary", width="stretch"):
        st.switch_page("app_pages/cohorts.py")
    if browse.button("Open the map", icon=":material/scatter_plot:", width="stretch"):
        st.switch_page("app_pages/map.py")
    if talk.button("Talk to cohorts side by side", icon=":material/forum:", width="stretch"):
        st.session_state["chat_mode"] = SIDE_BY_SIDE
        st.switch_page("app_pages/chat.py")


@st.cache_data(show_spinner=False, max_entries=8)
def evaluation_figures(folder: str, stamp: float) -> dict | None:
    """The evaluation report's held-out accuracies ``{method: row}`` and facts, or None without a report."""
    if not (Path(folder) / report.MARKER).is_file():
        return None
    result = report.read_report(folder)
    table = result.accuracy.set_index("method")
    rows = {m: table.loc[m].to_dict() for m in (report.INDIVIDUAL, report.CF, report.MAJORITY) if m in table.index}
    return {"rows": rows, "facts": result.facts, "settings": result.settings, "verdict": report.verdict(result)}


def study_figures(study) -> None:
    data, fitted, parameters = study.data, study.manifest.get("fitted", {}), study.manifest.get("parameters", {})
    selection = study.cohorts.k_choice_
    chosen = selection[selection["chosen"]] if "silhouette" in selection else selection.iloc[:0]
    silhouette = float(chosen["silhouette"].iloc[0]) if len(chosen) else math.nan
    how_k = ("chosen automatically: the lowest BIC among the k whose cohorts stay stable under bootstrap "
             f"refits (Hennig's clusterboot), of k = {selection['k'].min()} to {selection['k'].max()}"
             if parameters.get("n_cohorts", "auto") == "auto"
             else f"fixed at {parameters.get('n_cohorts')} when the study was fitted")
    columns = st.columns(4)
    columns[0].metric("Respondents", f"{data.n_respondents:,}", help=(
        f"People in the study's answers table; {data.observed.mean():.0%} of all respondent × question "
        "cells are answered (missing answers are never imputed, the collaborative filter skips them)."))
    columns[1].metric("Questions", data.n_questions, help=(
        "Questions with their options, as read from the source with its codebook (see the Data page)."))
    columns[2].metric("Cohorts", study.n_cohorts, help=(
        f"{parameters.get('cohort_method', 'kmeans')} on the respondents' "
        f"{fitted.get('cohort_space', 'embedding')} vectors (collaborative filtering, "
        f"{study.embeddings.shape[1]} dimensions); k {how_k}. See the Cohorts page."))
    columns[3].metric("Silhouette", "–" if math.isnan(silhouette) else f"{silhouette:.2f}", help=(
        "Mean silhouette of the respondents for the chosen k, in the space the cohorts were found in "
        f"(scikit-learn): from -1 to 1; from {WEAK_SILHOUETTE} up the cohorts are substantially separated, "
        "near 0 they blur into each other. "
        + (separation_caution(silhouette) or "")))
    accuracy_figures(study)


def accuracy_figures(study) -> None:
    """Held-out accuracy of the soft prompt against the filter and the majority, else its validation score."""
    folder = Path(study.path) / "evaluation"
    stamp = (folder / report.MARKER).stat().st_mtime_ns if (folder / report.MARKER).is_file() else 0
    evaluation = evaluation_figures(str(folder), stamp)
    if evaluation is not None and report.INDIVIDUAL in evaluation["rows"]:
        facts, settings = evaluation["facts"], evaluation["settings"]
        method = (f"`persona-engine evaluate-steering` on {str(facts.get('date', '?'))[:10]}: "
                  f"{facts.get('held_out_answers', '?')} answers of {facts.get('scored_respondents', '?')} "
                  f"respondents, held out of everything learned ({settings.get('question_fraction', 0.2):.0%} "
                  "of each respondent's answers), each predicted as its most likely option, with a "
                  f"{settings.get('confidence', 0.95):.0%} bootstrap interval. ")
        labels = {report.INDIVIDUAL: ("Soft prompt, held-out accuracy", "The language model steered by the "
                                      "study's soft prompt toward each respondent's vector."),
                  report.CF: ("Collaborative filter", "The filter's own most likely answer, from the same vectors."),
                  report.MAJORITY: ("Each question's majority", "Always the answer most training "
                                    "respondents gave: the baseline to beat.")}
        columns = st.columns(4)
        for column, (name, row) in zip(columns, evaluation["rows"].items()):
            label, what = labels[name]
            column.metric(label, f"{row['accuracy']:.3f}", help=(
                f"{what} {method}Interval: [{row['low']:.3f}, {row['high']:.3f}]."))
        with columns[-1].popover("How it was measured", icon=":material/help:"):
            st.markdown(method)
            for line in evaluation["verdict"]:
                st.markdown(f"- {line}")
            st.caption("The full report is on the Steer page.")
        return
    status = get_steering_status(study)
    if status is None or status.active is None or not status.active.validated:
        st.caption("No soft-prompting model with a validation score yet: train one on the Steer page.")
        return
    score = status.active
    left, right, _, _ = st.columns(4)
    how = (f"Of {score.n_val} validation answers (held back from training for early stopping; the study has "
           "no evaluation report: run `persona-engine evaluate-steering` for held-out accuracy against the "
           "collaborative filter).")
    left.metric("Soft prompt, validation accuracy", f"{score.accuracy:.3f}", help=f"Letter accuracy. {how}")
    right.metric("Each question's majority", f"{score.majority:.3f}",
                 help=f"Always the answer most training respondents gave. {how} Chance: {score.chance:.3f}.")


def model_status() -> None:
    """The language model's load, polled every second until it ends."""
    status = llm_status()
    name = llm_model() or "SmolLM2-135M-Instruct"

    def draw() -> None:
        now = llm_status()
        if now == "loading":
            st.caption(f":material/hourglass_top: Loading the language model ({name}) in the background…")
        elif now == "ready":
            st.caption(f":material/check_circle: Language model {name}: ready")
        else:
            st.caption(f":material/error: Language model {name}: {now}")
        if now != status:
            st.rerun()  # the whole page, which stops polling once the load has ended

    st.fragment(draw, run_every=1.0 if status == "loading" else None)()


study = current_study()
st.title("Persona Engine")
st.markdown(ABOUT)
st.info(DISCLAIMER, icon=":material/info:")
model_status()

st.subheader("The open study")
for line in describe(study):
    st.markdown(line)

st.subheader("First steps")
first_steps()

st.subheader("Headline figures")
study_figures(study)
