"""Chat page: talk to the model steered toward a persona, or to several side by side.

A persona is a respondent, a cohort, a point of the map, or yourself (a few
answers placed by fold-in). Replies stream from ``persona_engine.steer.chat``.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

from pages.state import current_study, get_llm, get_steering, guarded
from pages.widgets import NOTE, persona_from_spec, predicted_table
from persona_engine.personas import predicted_answers
from persona_engine.profiles import distinctive_answers, short_question_texts
from persona_engine.steer import chat

KINDS = {"respondent": "A respondent", "cohort": "A cohort", "map_point": "A map point", "answers": "Yourself"}
UNSTEERED = "unsteered model"


def choose_persona(study) -> dict:
    """The persona spec picked on this page (starting from the one handed over by another page)."""
    handed = st.session_state.get("chat_persona") or {"kind": "cohort", "cohort": 0}
    kinds = list(KINDS)
    kind = st.radio("Talk to", kinds, format_func=KINDS.get, horizontal=True,
                    index=kinds.index(handed["kind"]), key=f"kind_{json.dumps(handed)}")
    if kind == "respondent":
        default = handed.get("id", str(study.data.respondent_ids[0]))
        rid = st.text_input("Respondent id", default, key=f"respondent_{default}").strip()
        return {"kind": "respondent", "id": rid}
    if kind == "cohort":
        labels = short_labels(study)
        cohort = st.selectbox("Cohort", range(study.n_cohorts), index=int(handed.get("cohort", 0)),
                              format_func=lambda c: f"cohort {c}: {labels[c]}")
        return {"kind": "cohort", "cohort": int(cohort)}
    if kind == "map_point":
        x0, y0 = handed.get("point", study.centroid_coords()[0])
        left, right = st.columns(2)
        x = left.number_input("x", value=round(float(x0), 2), step=0.25, format="%.2f", key=f"chat_x_{x0}")
        y = right.number_input("y", value=round(float(y0), 2), step=0.25, format="%.2f", key=f"chat_y_{y0}")
        return {"kind": "map_point", "point": [float(x), float(y)]}
    return yourself(study)


@st.cache_data(max_entries=4)
def _labels(path: str, _study) -> list[str]:
    table = distinctive_answers(_study.data, _study.labels, top=1)
    return [", ".join(f"{a} on {q}" for q, a in zip(rows["question"], rows["answer"]))
            for _, rows in table.groupby("cohort")]


def short_labels(study) -> list[str]:
    labels = _labels(str(study.path), study)
    return labels + [""] * (study.n_cohorts - len(labels))


def yourself(study) -> dict:
    """A few of the study's questions; your answers place you on the map by fold-in."""
    distinct = distinctive_answers(study.data, study.labels, top=3)["question_id"]
    ids = list(dict.fromkeys(distinct))[:5] or study.data.question_ids[:5]
    short = dict(zip(study.data.question_ids, short_question_texts(study.data.questions, 10)))
    picked = st.multiselect("Questions to answer", study.data.question_ids, default=ids,
                            format_func=lambda q: f"{q}: {short[q]}", key="you_questions")
    answers = {}
    columns = st.columns(2)
    for i, qid in enumerate(picked):
        question = study.data.questions[study.data.question_index(qid)]
        choice = columns[i % 2].selectbox(question.text, ["(skip)", *question.options], key=f"you_{qid}")
        if choice != "(skip)":
            answers[qid] = choice
    if not answers:
        st.info("Answer at least one question to meet your twin.")
        st.stop()
    return {"kind": "answers", "answers": answers, "name": "you"}


def grounding(study, spec: dict, persona) -> None:
    """What the persona really answered (a respondent) or is expected to answer, beside the chat."""
    if spec["kind"] == "respondent":
        answers = study.data.answer_labels(study.data.respondent_index(spec["id"]))
        st.markdown("**Their real answers**")
        st.dataframe(pd.DataFrame({"question": list(answers), "answer": list(answers.values())}),
                     hide_index=True, height=300)
        return
    if spec["kind"] == "cohort":
        members = study.data.answers[study.labels == spec["cohort"]]
        rows = []
        for j, question in enumerate(study.data.questions):
            counts = np.bincount(members[:, j][members[:, j] >= 0], minlength=question.n_options)
            best = int(counts.argmax())
            rows.append((question.id, question.options[best], round(counts[best] / max(counts.sum(), 1), 2)))
        st.markdown(f"**Cohort {spec['cohort']}'s most common answers**")
        st.dataframe(pd.DataFrame(rows, columns=["question", "answer", "share"]), hide_index=True, height=300)
        return
    if spec["kind"] == "answers":
        where = study.latent_map.transform(persona.vector[None])[0]
        frame = pd.DataFrame(study.latent_map.coords_, columns=["x", "y"]).assign(
            cohort=study.labels.astype(str))
        figure = px.scatter(frame, x="x", y="y", color="cohort", opacity=0.3, render_mode="webgl", height=260)
        figure.add_scatter(x=[where[0]], y=[where[1]], mode="markers+text", text=["you"], name="you",
                           marker=dict(symbol="star", size=18, color="black"))
        figure.update_layout(margin=dict(l=0, r=0, t=0, b=0), showlegend=False, xaxis_title=None,
                             yaxis_title=None)
        st.markdown("**Where you land on the map**")
        st.plotly_chart(figure, key="you_on_map")
    st.markdown("**Predicted answers**")
    st.dataframe(predicted_table(predicted_answers(study, persona)), hide_index=True, height=300)


def reply(llm, spm, messages, persona, settings) -> str:
    steered = spm is not None and persona is not None
    stream = chat(llm, messages, spm if steered else None, persona.vector if steered else None,
                  strength=settings["strength"], max_new_tokens=settings["max_new_tokens"])
    return st.write_stream(stream)


def transcript(conversations: dict, settings: dict) -> tuple[str, str]:
    """Markdown and JSON of ``{name: messages}``, with the settings and the note."""
    lines = [f"# Persona Engine chat ({settings['study']})", "", f"> {NOTE}", "",
             f"Model: {settings['model']} · strength {settings['strength']:g}", ""]
    for name, messages in conversations.items():
        lines += [f"## {name}", ""] + [f"**{'You' if m['role'] == 'user' else name}:** {m['content']}\n"
                                       for m in messages]
    payload = {"note": NOTE, **settings, "conversations": conversations}
    return "\n".join(lines), json.dumps(payload, indent=2, ensure_ascii=False)


with guarded():  # errors become messages, never tracebacks
    study = current_study()
    st.title("Chat")
    st.info(NOTE, icon=":material/info:")
    llm = get_llm()
    spm, why_not = get_steering(study, llm)
    if spm is None:
        st.warning(f"{why_not} Replies come from the unsteered model.")
        st.page_link("pages/steer.py", label="Train a soft-prompting model on the Steer page", icon=":material/tune:")

    mode = st.radio("Mode", ["One persona", "Side by side"], horizontal=True, key="chat_mode")
    left, right = st.columns(2)
    settings = {"study": study.data.source.name, "model": llm.name,
                "strength": left.slider("Steering strength", 0.0, 3.0, 1.0, 0.25, disabled=spm is None,
                                        help="0: unsteered, 1: as trained, above 1: exaggerated"),
                "max_new_tokens": right.slider("Longest reply (tokens)", 20, 400, 150, 10)}
    prompt = st.chat_input("Ask something…")

    if mode == "One persona":
        spec = choose_persona(study)
        persona = persona_from_spec(study, spec)
        st.session_state["last_persona"] = spec
        conversation = st.session_state.get("conversation")
        if conversation is None or conversation["persona"] != spec:
            conversation = st.session_state["conversation"] = {"persona": spec, "messages": []}
        talk, side = st.columns([2, 1])
        with side:
            grounding(study, spec, persona)
        with talk:
            st.markdown(f"**{persona.name}**" + ("" if spm else " (unsteered model)"))
            for message in conversation["messages"]:
                st.chat_message(message["role"]).write(message["content"])
            if prompt:
                conversation["messages"].append({"role": "user", "content": prompt})
                st.chat_message("user").write(prompt)
                with st.chat_message("assistant"):
                    text = reply(llm, spm, conversation["messages"], persona, settings)
                conversation["messages"].append({"role": "assistant", "content": text})
        conversations = {persona.name: conversation["messages"]}
    else:
        candidates = [{"kind": "cohort", "cohort": c} for c in range(study.n_cohorts)]
        for earlier in (st.session_state.get("last_persona"), st.session_state.get("chat_persona")):
            usable = earlier is not None and (earlier["kind"] != "answers" or earlier.get("answers"))
            if usable and earlier not in candidates:
                candidates.insert(0, earlier)  # met in one-persona mode, or handed over by the map
        names = {persona_from_spec(study, s).name: s for s in candidates}
        picked = st.multiselect("Personas (2 to 4; the unsteered model answers too)", list(names),
                                default=list(names)[:2], max_selections=4, key="side_by_side_personas")
        if len(picked) < 2:
            st.info("Pick at least two personas.")
            st.stop()
        state = st.session_state.setdefault("side_by_side", {})
        columns = st.columns(len(picked) + 1)
        for column, name in zip(columns, picked + [UNSTEERED]):
            messages = state.setdefault(name, [])
            persona = None if name == UNSTEERED else persona_from_spec(study, names[name])
            with column:
                st.markdown(f"**{name}**")
                for message in messages:
                    st.chat_message(message["role"]).write(message["content"])
                if prompt:
                    messages.append({"role": "user", "content": prompt})
                    st.chat_message("user").write(prompt)
                    with st.chat_message("assistant"):
                        text = reply(llm, spm, messages, persona, settings)
                    messages.append({"role": "assistant", "content": text})
        conversations = {name: state.get(name, []) for name in picked + [UNSTEERED]}

    if any(conversations.values()):
        markdown, payload = transcript(conversations, settings)
        left, middle, right = st.columns(3)
        left.download_button("Transcript (Markdown)", markdown, "transcript.md", mime="text/markdown")
        middle.download_button("Transcript (JSON)", payload, "transcript.json", mime="application/json")
        if right.button("Start over"):
            st.session_state.pop("conversation", None)
            st.session_state.pop("side_by_side", None)
            st.rerun()
