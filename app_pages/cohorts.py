"""Cohorts page: fit a study, choose k, read a card per cohort, compare two, export."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from app_pages.state import current_study, is_bundled, new_study_path, open_study, study_stamp
from app_pages.widgets import STAGES, fit_time, share_bars
from persona_engine.exports import cohort_workbook, respondents_csv
from persona_engine.palettes import cohort_colour, metadata_orders
from persona_engine.cohorts.distinctive import consensus_questions, distinctive_answers
from persona_engine.cohorts.naming import cohort_summaries
from persona_engine.cohorts.profiles import (answer_distribution, cohort_composition, cohort_overview,
                                             metadata_composition, separation_caution)
from persona_engine.cohorts.statistics import weighting_note
from persona_engine.cohorts.selections import cohort_differences
from persona_engine.study import fit_study
from persona_engine.wording import question_topics, shorten

GAP = 0.05  # 'Who is in it' lists the groups whose share in a cohort differs from everyone's by more than this


def fit_and_save(data, target, **options):
    """Fit a study with a progress bar, save it at ``target`` and open it."""
    bar = st.progress(0.0, text="Starting…")
    started = time.perf_counter()

    def progress(stage: str, step: int, total: int, info) -> None:
        start, end, text = STAGES.get(stage, (0.0, 1.0, stage))
        done = min(1.0, start + (end - start) * step / max(total, 1))
        bar.progress(done, text=f"{text} · {fit_time(time.perf_counter() - started, done)}")

    study = fit_study(data, progress=progress, **options)
    bar.progress(1.0, text=f"Saving to {target}")
    target.parent.mkdir(parents=True, exist_ok=True)
    study.save(target)
    open_study(target)
    st.session_state.pop("pending_data", None)
    st.rerun()


@st.cache_data(show_spinner="Describing the cohorts…", max_entries=8)
def profile_tables(path: str, stamp: float, weighted: bool, _study) -> dict:
    data, labels, w = _study.data, _study.labels, {"weighted": weighted}
    consensus = consensus_questions(data, labels, **w).head(3)
    distribution = answer_distribution(data, labels, **w).set_index(["cohort", "question_id", "answer"])["share"]
    return {"overview": cohort_overview(data, labels, **w),
            "distinctive": distinctive_answers(data, labels, top=4, **w),
            "summaries": cohort_summaries(data, labels, **w), "consensus": consensus, "distribution": distribution,
            "metadata": metadata_composition(data, labels, **w),
            "orders": metadata_orders(_study.manifest, _study.path), "note": weighting_note(data, weighted),
            # a study without weights needs no word on them
            "said": f" ({weighting_note(data, weighted)})" if data.weights is not None else "",
            "topics": {q: t.text for q, t in zip(data.question_ids, question_topics(data.questions))}}


@st.cache_data(show_spinner=False, max_entries=8)
def downloads(path: str, stamp: float, weighted: bool, _study) -> tuple[str, bytes]:
    """The export's files, written once per study version: respondents as CSV, the cohorts workbook as XLSX."""
    return respondents_csv(_study), cohort_workbook(_study, weighted=weighted)


def cohort_card(cohort: int, tables: dict, study) -> None:
    row = tables["overview"].set_index("cohort").loc[cohort]
    stability = study.stability.set_index("cohort")["jaccard"].get(cohort)
    with st.container(border=True):
        st.markdown(f"#### Cohort {cohort} · {row['label']}", help=row["full_label"])
        st.write(tables["summaries"][cohort])
        a, b, c = st.columns(3)
        a.metric("Respondents", f"{int(row['size']):,}")
        b.metric("Share", f"{row['share']:.0%}")
        c.metric("Stability", "–" if stability is None else f"{stability:.2f}",
                 help="Jaccard similarity over bootstrap refits: above 0.75 stable, below 0.5 it dissolves")
        distinct = tables["distinctive"][tables["distinctive"]["cohort"] == cohort]
        consensus = tables["consensus"]
        rows = pd.DataFrame({
            "question_id": [*distinct["question_id"], *consensus["question_id"]],
            "answer": [*distinct["answer"], *consensus["answer"]],
            "share_in": [*distinct["share_in"], *(_share(tables, cohort, q, a)
                                                  for q, a in zip(consensus["question_id"], consensus["answer"]))],
            "share_all": [*(_share(tables, None, q, a) for q, a in zip(distinct["question_id"], distinct["answer"])),
                          *consensus["overall_share"]],
            "shared": [False] * len(distinct) + [True] * len(consensus)})
        rows["full_question"] = rows["question_id"].map(tables["topics"])
        rows["question"] = [("all cohorts: " if shared else "") + shorten(text, 40)
                            for text, shared in zip(rows["full_question"], rows["shared"])]
        st.plotly_chart(share_bars(rows, f"cohort {cohort}", colour=cohort_colour(cohort)), key=f"card_{cohort}")
        if study.data.weights is not None:
            st.caption(f"Shares {tables['note']}.")
        with st.expander("Who is in it"):
            who_is_in_it(cohort, tables, study)


def who_is_in_it(cohort: int, tables: dict, study) -> None:
    if study.data.metadata.columns.empty:
        st.write("This study has no information about respondents beyond their answers (no party, age or "
                 "other metadata), so the cohort can only be described by what its members answered.")
        return
    shares, averages = cohort_composition(tables["metadata"], cohort, min_gap=GAP, orders=tables["orders"])
    if shares.empty:
        st.write(f"No group of respondents is over- or under-represented in this cohort by more than "
                 f"{GAP * 100:.0f} percentage points.")
    else:
        st.caption(f"Groups whose share in the cohort differs from everyone by more than {GAP * 100:.0f} percentage "
                   f"points, the most over-represented first{tables['said']}.")
        st.dataframe(shares, hide_index=True, column_config={
            "cohort_percent": st.column_config.NumberColumn("in the cohort", format="%.0f%%"),
            "everyone_percent": st.column_config.NumberColumn("among everyone", format="%.0f%%"),
            "difference": st.column_config.NumberColumn("difference", format="%+.0f pts")})
    if len(averages):
        if tables["said"]:
            st.caption(f"Averages {tables['note']}.")
        st.dataframe(averages, hide_index=True, column_config={
            "cohort": st.column_config.NumberColumn("in the cohort", format="%.1f"),
            "everyone": st.column_config.NumberColumn("among everyone", format="%.1f")})


def _share(tables, cohort, question_id, answer) -> float:
    """A (possibly "a or b") answer's share in a cohort, or among everyone when cohort is None."""
    shares = tables["distribution"]
    if cohort is None:
        overall = tables["overview"].set_index("cohort")["share"]
        return float(sum(overall[c] * _share(tables, c, question_id, answer) for c in overall.index))
    return float(sum(shares.get((cohort, question_id, part), 0.0) for part in answer.split(" or ")))


def selection_figure(selection: pd.DataFrame) -> go.Figure:
    panels = [("silhouette", "Silhouette (higher is better)"), ("bic", "BIC (lower is better)"),
              ("inertia", "Inertia (look for the elbow)"), ("stability", "Stability (ARI, higher is better)")]
    figure = make_subplots(rows=1, cols=4, subplot_titles=[title for _, title in panels])
    chosen = selection[selection["chosen"]]
    for i, (column, _) in enumerate(panels, start=1):
        figure.add_scatter(x=selection["k"], y=selection[column], mode="lines+markers", row=1, col=i,
                           showlegend=False, marker_color="#4C78A8")
        figure.add_scatter(x=chosen["k"], y=chosen[column], mode="markers", row=1, col=i, showlegend=False,
                           name="chosen k", marker=dict(color="#E45756", size=12, symbol="star"))
    figure.update_layout(height=260, margin=dict(l=0, r=0, t=40, b=0))
    figure.update_xaxes(title_text="k", dtick=1)
    return figure


st.title("Cohorts")
pending = st.session_state.get("pending_data")
if pending is not None:
    with st.container(border=True):
        st.subheader(f"Fit a new study on “{pending.source.name}”")
        with st.form("fit"):
            name = st.text_input("Study name", pending.source.name)
            a, b, c, d = st.columns(4)
            k = a.selectbox("Cohorts (k)", ["auto"] + list(range(2, 11)), key="fit_k")
            method = b.selectbox("Method", ["kmeans", "gmm"])
            dim = c.number_input("Embedding size", 2, 64, 16)
            seed = d.number_input("Random seed", 0, 10_000, 0)
            submitted = st.form_submit_button("Fit and save", type="primary")
        if submitted:
            fit_and_save(pending, new_study_path(name), n_cohorts=k, cohort_method=method, dim=int(dim),
                         random_state=int(seed))
        if st.button("Discard these answers"):
            st.session_state.pop("pending_data")
            st.rerun()
    open_name = st.session_state.get("study_path", "")
    st.caption(f"The open study ({Path(open_name).name or 'the sample'}) is shown here again once these "
               "answers are fitted or discarded.")
    st.stop()  # the old study's results never sit under the new data's form

study = current_study()
st.caption(f"**{study.data.source.name}** · {study.data.n_respondents:,} respondents · "
           f"{study.data.n_questions} questions · saved in `{study.path}`")
weighted = study.data.weights is not None and st.toggle(
    "Weighted by the survey's weights", value=True, key="cohorts_weighted",
    help="On: shares, majorities, tests and who is in each cohort estimate the population the survey's "
         "weights stand for. Off: every respondent counts once.")
tables = profile_tables(str(study.path), study_stamp(study), weighted, study)

st.subheader("How many cohorts?")
selection = study.cohorts.k_choice_
if len(selection) > 1:
    st.plotly_chart(selection_figure(selection), key="selection")
    st.caption("★ the k chosen automatically: the lowest BIC among the stable choices.")
    fitted = study.manifest.get("fitted", {})
    if fitted.get("cohort_space"):
        scores = fitted.get("cohort_space_scores") or {}
        evidence = ", ".join(f"{space} {score:.3f}" for space, score in scores.items())
        st.caption(f"Cohorts found among the **{fitted['cohort_space']}**"
                   + (f" (held-out cohort-majority accuracy on inner splits: {evidence})." if evidence else "."))
    left, right = st.columns([1, 3])
    k = left.selectbox("Refit with k =", list(selection["k"]),
                       index=int(selection["chosen"].to_numpy().argmax()))
    where = "a copy in your studies folder" if is_bundled(study.path) else "this study (its folder is replaced)"
    right.write("")
    if right.button(f"Refit with {k} cohorts", help=f"Fits again with the same seed and saves {where}"):
        # The saved parameters are fit_study's keywords: one source of the defaults, only k changes.
        parameters = {**study.manifest["parameters"], "n_cohorts": int(k)}
        target = new_study_path(f"{study.data.source.name} k{k}") if is_bundled(study.path) else study.path
        fit_and_save(study.data, target, **parameters)
else:
    st.caption(f"k was fixed at {study.n_cohorts} when the study was fitted.")

st.subheader("The cohorts")
chosen = selection[selection["chosen"]] if "silhouette" in selection else selection.iloc[:0]
caution = separation_caution(float(chosen["silhouette"].iloc[0])) if len(chosen) else None
if caution:
    st.warning(caution, icon="⚠️")
if tables["said"]:
    st.caption(f"Cohort shares, answers and summaries {tables['note']}.")
columns = st.columns(2)
for cohort in range(study.n_cohorts):
    with columns[cohort % 2]:
        cohort_card(cohort, tables, study)

st.subheader("Two cohorts side by side")
if study.n_cohorts >= 2:
    left, right = st.columns(2)
    a = left.selectbox("Cohort", range(study.n_cohorts), index=0, key="compare_a")
    b = right.selectbox("against cohort", range(study.n_cohorts), index=1, key="compare_b")
    # cohort_differences weighs answers whenever the data has weights: off, it gets the data without them
    data = study.data if weighted else replace(study.data, weights=None)
    differences = cohort_differences(data, study.labels, a, b)
    said = f" ({tables['note']})" if study.data.weights is not None else ""
    st.caption("The questions on which they differ most (total variation distance), with the answer "
               f"whose share differs most{said}.")
    st.plotly_chart(share_bars(differences, f"cohort {a}", "share_a", "share_b", other=f"cohort {b}",
                               colour=cohort_colour(a), other_colour=cohort_colour(b)), key="compare")

st.subheader("Export")
csv, xlsx = downloads(str(study.path), study_stamp(study), weighted, study)
left, right = st.columns(2)
left.download_button("Respondents with their cohort (CSV)", csv, "respondents.csv", mime="text/csv")
right.download_button("Cohorts, answers and respondents (XLSX)", xlsx, "cohorts.xlsx",
                      mime="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
