"""Map page: respondents on the latent map; select groups, find a respondent, steer anywhere.

Clicking the map (on a respondent or between them, on the invisible cursor
grid) moves the latent cursor; box and lasso select respondents.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from app_pages.state import current_study, hand_to_chat, study_key, study_stamp
from app_pages.widgets import CURSOR, cursor_grid, map_selection, predicted_table, share_bars
from persona_engine.opinion_data import MISSING
from persona_engine.palettes import (SEQUENTIAL, answer_scale, cohort_scale, metadata_orders, metadata_scale,
                                     metadata_texts)
from persona_engine.personas import (map_point_persona, map_point_spec, predicted_answers, respondent_spec,
                                     selection_spec)
from persona_engine.cohorts.distinctive import distinctive_answers
from persona_engine.cohorts.statistics import weighting_note
from persona_engine.cohorts.selections import selection_profile

HOVER_LIMIT = 20_000  # above this many respondents the hover shows only id and cohort


@st.cache_data(show_spinner="Preparing the map…", max_entries=4)
def map_table(path: str, stamp: float, weighted: bool, _study) -> tuple[pd.DataFrame, list[str]]:
    """Respondents with their map position, cohort as text, and the answers shown on hover
    (those of the cohorts' most distinctive answers, weighted or not)."""
    frame = _study.respondents()
    frame["cohort"] = frame["cohort"].astype(str)
    key_questions = []
    if _study.data.n_respondents <= HOVER_LIMIT and _study.n_cohorts > 1:
        distinct = distinctive_answers(_study.data, _study.labels, top=2, weighted=weighted)
        key_questions = list(dict.fromkeys(distinct["question_id"]))[:4]
    for qid in key_questions:
        frame[qid] = answer_labels(_study.data, qid)
    return frame, key_questions


def answer_labels(data, question_id: str) -> np.ndarray:
    j = data.question_index(question_id)
    labels = np.array(list(data.questions[j].options) + ["no answer"], dtype=object)
    column = data.answers[:, j].astype(np.int64)
    return labels[np.where(column == MISSING, len(labels) - 1, column)]


def colour_scale(study, frame: pd.DataFrame, colour: str) -> tuple[pd.DataFrame, dict]:
    """The frame to draw and ``px.scatter``'s colour keywords: the study's one cohort palette,
    answers and ordered metadata along a sequential scale in scale order, numbers continuous."""
    if colour.startswith("answer: "):
        question = study.data.questions[study.data.question_index(colour.removeprefix("answer: "))]
        frame, scale = frame.assign(**{colour: answer_labels(study.data, question.id)}), answer_scale(question)
    elif colour == "cohort":
        scale = cohort_scale(study.n_cohorts)
    else:
        scale = metadata_scale(frame[colour], metadata_orders(study.manifest, study.path).get(colour))
        if scale is None:
            return frame, {"color_continuous_scale": SEQUENTIAL}
        frame = frame.assign(**{colour: metadata_texts(frame[colour])})
    return frame, {"category_orders": {colour: scale.order}, "color_discrete_map": scale.colours}


def map_figure(study, frame, colour: str, hover: list[str], cursor, found) -> go.Figure:
    coords = study.latent_map.coords_
    grid = cursor_grid(coords)
    figure = go.Figure(go.Scattergl(
        x=grid[:, 0], y=grid[:, 1], mode="markers", name=CURSOR, showlegend=False,
        customdata=np.full((len(grid), 1), CURSOR), marker=dict(size=10, color="rgba(0,0,0,0)"),
        hovertemplate="map point (%{x:.2f}, %{y:.2f})<br>click to make it a persona<extra></extra>"))
    frame, colouring = colour_scale(study, frame, colour)
    points = px.scatter(frame, x="map_x", y="map_y", color=colour, custom_data=["respondent_id"],
                        hover_name="respondent_id", hover_data={"map_x": False, "map_y": False,
                                                                "cohort": True, **{q: True for q in hover}},
                        render_mode="webgl", opacity=0.75, **colouring)
    figure.add_traces(points.data)
    figure.update_layout(points.layout)
    centres = study.centroid_coords()
    figure.add_scatter(x=centres[:, 0], y=centres[:, 1], mode="markers+text", name="cohort personas",
                       text=[f"cohort {c}" for c in range(study.n_cohorts)], textposition="top center",
                       marker=dict(symbol="x", size=13, color="black"), hoverinfo="skip")
    figure.add_scatter(x=[cursor[0]], y=[cursor[1]], mode="markers", name="latent cursor",
                       marker=dict(symbol="star", size=24, color="gold", line=dict(width=1.5, color="black")),
                       hoverinfo="skip")
    if found is not None:
        figure.add_scatter(x=[found[0]], y=[found[1]], mode="markers", name="found respondent",
                           marker=dict(symbol="circle-open", size=22, color="black", line=dict(width=3)),
                           hoverinfo="skip")
    figure.update_layout(height=620, xaxis_title=None, yaxis_title=None,
                         margin=dict(l=0, r=0, t=40, b=0), legend=dict(itemsizing="constant"))
    return figure


study = current_study()
st.title("Latent map")
weighted = study.data.weights is not None and st.toggle(
    "Weighted by the survey's weights", value=True, key="map_weighted",
    help="On: a selection's share of everyone and its answer shares estimate the population the survey's "
         "weights stand for. Off: every respondent counts once.")
note = weighting_note(study.data, weighted)
said = f", {note}" if study.data.weights is not None else ""  # a study without weights needs no word on them
frame, hover = map_table(str(study.path), study_stamp(study), weighted, study)

# The chart's last selection event arrives before the widgets are drawn: move the cursor first.
# Its key is the study's, so a selection on one study never shows on another.
chart = study_key("map")
event = map_selection((st.session_state.get(chart) or {}).get("selection"))
if event.point is not None and event.point != st.session_state.get("cursor_clicked"):
    st.session_state["cursor_clicked"] = event.point
    st.session_state["cursor_x"], st.session_state["cursor_y"] = (round(v, 2) for v in event.point)
if "cursor_x" not in st.session_state:
    largest = int(np.bincount(study.labels).argmax())
    st.session_state["cursor_x"], st.session_state["cursor_y"] = (
        round(float(v), 2) for v in study.centroid_coords()[largest])

colours = ["cohort"] + list(study.data.metadata.columns) + [f"answer: {q}" for q in study.data.question_ids]
left, right = st.columns([2, 1])
colour = left.selectbox("Colour by", colours, key="map_colour",
                        help="A cohort, any metadata column, or the answer to any question")
wanted = right.text_input("Find a respondent (id)", key=study_key("find_respondent")).strip()
found_row = None
if wanted:
    matches = np.flatnonzero(study.data.respondent_ids == wanted)
    if len(matches):
        found_row = int(matches[0])
    else:
        right.warning(f"No respondent '{wanted}' in this study.")
found = None if found_row is None else study.latent_map.coords_[found_row]

cursor = (float(st.session_state["cursor_x"]), float(st.session_state["cursor_y"]))
st.plotly_chart(map_figure(study, frame, colour, hover, cursor, found), key=chart, on_select="rerun",
                selection_mode=("points", "box", "lasso"),
                config={"scrollZoom": True, "displaylogo": False})
st.caption("Click anywhere to move the latent cursor (★). To select respondents, pick the box or lasso "
           "tool (top right of the map) and drag; double-click clears the selection.")

if found_row is not None:
    with st.container(border=True):
        st.markdown(f"**Respondent {wanted}** · cohort {int(study.labels[found_row])}")
        answers = study.data.answer_labels(found_row)
        st.dataframe(pd.DataFrame({"question": list(answers), "answer": list(answers.values())}),
                     hide_index=True, height=220)
        if st.button(f"Chat with respondent {wanted}"):
            hand_to_chat(respondent_spec(wanted))

if len(event.respondent_ids) > 1:
    with st.container(border=True):
        ids = list(event.respondent_ids)
        chosen = np.isin(study.data.respondent_ids, ids)
        weight = study.data.weights if weighted else np.ones(study.data.n_respondents)
        st.markdown(f"**Selection: {len(ids):,} respondents** "
                    f"({weight[chosen].sum() / weight.sum():.0%} of everyone{said})")
        cohorts = pd.Series(study.labels[chosen]).value_counts()
        st.caption("Cohorts in it (respondents): " + ", ".join(f"cohort {c}: {n}" for c, n in cohorts.items()))
        # selection_profile weighs answers whenever the data has weights: off, it gets the data without them
        profile = selection_profile(study.data if weighted else replace(study.data, weights=None), ids)
        if len(profile):
            st.plotly_chart(share_bars(profile, "selection"), key="selection_profile")
            st.caption(f"The selection's most distinctive answers against everyone{said}.")
        if st.button(f"Chat with this selection ({len(ids):,})", key="chat_with_selection",
                     help="A persona at the selected respondents' mean vector"):
            hand_to_chat(selection_spec(ids))

st.subheader("Latent cursor")
st.caption("Any spot of the map is a persona: the map's inverse turns it into a latent vector.")
left, right = st.columns([1, 2])
with left:
    x = st.number_input("x", key="cursor_x", step=0.25, format="%.2f")
    y = st.number_input("y", key="cursor_y", step=0.25, format="%.2f")
    persona = map_point_persona(study, (x, y))
    distance = persona.details["distance_to_data"]
    if distance > 2:
        st.warning(f"This point is {distance:.1f} kernel widths from the nearest respondents: "
                   "the persona there is an extrapolation.")
    else:
        st.caption(f"Among respondents ({distance:.1f} kernel widths from the nearest).")
    if st.button("Chat with this point", type="primary"):
        hand_to_chat(map_point_spec((x, y)))
with right:
    st.markdown(f"What the collaborative filter expects **{persona.name}** to answer:")
    st.dataframe(predicted_table(predicted_answers(study, persona)), hide_index=True, height=280,
                 column_config={"probability": st.column_config.ProgressColumn(min_value=0, max_value=1,
                                                                               format="%.2f")})
