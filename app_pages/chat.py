"""Chat page: talk to the model steered toward a persona, or to several side by side.

A persona is a respondent, a cohort, a point of the map, a selection on the
map, or yourself (a few answers placed by fold-in). Replies are grounded in
the study (``persona_engine.steer.grounding``) and stream as they are
written; under each one, its provenance: the study questions it rests on,
the persona's answer distribution and whether the reply's stance agrees.
Personas are named by persona specs (``persona_engine.personas``), replies
kept and exported as in ``persona_engine.transcripts``; the "New question"
mode is drawn by ``app_pages/new_question.py``.
"""

from __future__ import annotations

import json
import threading

import pandas as pd
import streamlit as st

from app_pages.state import current_study, get_llm, get_matcher, get_steering, handed_persona, study_state
from app_pages.new_question import ask_new_question
from app_pages.widgets import cohorts_on_map, predicted_table
from persona_engine.personas import (answers_spec, cohort_spec, map_point_spec, persona_from_spec, predicted_answers,
                                     respondent_spec, side_by_side_specs)
from persona_engine.cohorts.distinctive import distinctive_answers
from persona_engine.cohorts.naming import cohort_names
from persona_engine.cohorts.profiles import majority_answers
from persona_engine.wording import short_question_texts
from persona_engine.steer.grounding import grounded_chat, grounded_chat_batch
from persona_engine.steer.voice import VOICE
from persona_engine.transcripts import NOTE, finish_reply, settle, transcript

KINDS = {"respondent": "A respondent", "cohort": "A cohort", "map_point": "A map point", "answers": "Yourself",
         "selection": "A map selection"}
UNSTEERED = "unsteered model"
STOP = "chat_stop"
STRONG = 1.5
"""Steering strengths above this come with a warning: at 2 the small default model's replies fall apart."""


def choose_persona(study) -> dict:
    """The persona spec picked on this page (starting from the one handed over by another page)."""
    handed = handed_persona() or cohort_spec(0)
    kinds = [k for k in KINDS if k != "selection" or handed["kind"] == "selection"]
    kind = st.radio("Talk to", kinds, format_func=KINDS.get, horizontal=True,
                    index=kinds.index(handed["kind"]), key=f"kind_{json.dumps(handed)}")
    if kind == "respondent":
        default = handed.get("id", str(study.data.respondent_ids[0]))
        rid = st.text_input("Respondent id", default, key=f"respondent_{default}").strip()
        return respondent_spec(rid)
    if kind == "cohort":
        labels = short_labels(study)
        cohort = st.selectbox("Cohort", range(study.n_cohorts), index=int(handed.get("cohort", 0)),
                              format_func=lambda c: f"cohort {c}: {labels[c]}")
        return cohort_spec(cohort)
    if kind == "selection":
        st.caption(f"The mean vector of the {len(handed['ids']):,} respondents selected on the map.")
        return handed
    if kind == "map_point":
        x0, y0 = handed.get("point", study.centroid_coords()[0])
        left, right = st.columns(2)
        x = left.number_input("x", value=round(float(x0), 2), step=0.25, format="%.2f", key=f"chat_x_{x0}")
        y = right.number_input("y", value=round(float(y0), 2), step=0.25, format="%.2f", key=f"chat_y_{y0}")
        return map_point_spec((x, y))
    return yourself(study)


@st.cache_data(max_entries=4)
def _labels(path: str, _study) -> list[str]:
    return list(cohort_names(_study.data, _study.labels)["name"])


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
    return answers_spec(answers)


def grounding(study, spec: dict, persona) -> None:
    """What the persona really answered (a respondent) or is expected to answer, beside the chat."""
    if spec["kind"] == "respondent":
        answers = study.data.answer_labels(study.data.respondent_index(spec["id"]))
        st.markdown("**Their real answers**")
        st.dataframe(pd.DataFrame({"question": list(answers), "answer": list(answers.values())}),
                     hide_index=True, height=300)
        return
    if spec["kind"] == "cohort":
        common = majority_answers(study.data, study.labels, weighted=False)
        common = common[common["cohort"] == spec["cohort"]]
        st.markdown(f"**Cohort {spec['cohort']}'s most common answers**")
        st.dataframe(pd.DataFrame({"question": common["question_id"], "answer": common["answer"],
                                   "share": common["share"].round(2)}), hide_index=True, height=300)
        return
    if spec["kind"] == "answers":
        where = study.latent_map.transform(persona.vector[None])[0]
        figure = cohorts_on_map(study.latent_map.coords_, study.labels, study.n_cohorts)
        figure.add_scatter(x=[where[0]], y=[where[1]], mode="markers+text", text=["you"], name="you",
                           marker=dict(symbol="star", size=18, color="black"))
        st.markdown("**Where you land on the map**")
        st.plotly_chart(figure, key="you_on_map")
    st.markdown("**Predicted answers**")
    st.dataframe(predicted_table(predicted_answers(study, persona)), hide_index=True, height=300)


def reply(study, llm, spm, messages: list, persona, settings) -> dict:
    """Stream the next reply to ``messages`` (a list in session state) and append it there.

    The reply is appended before it streams and filled as it does, so that a
    rerun or a closed tab (which interrupt the run, and with it the
    generation) leaves what was written, marked as stopped.
    """
    steered = spm is not None and persona is not None
    stop = threading.Event()
    st.session_state[STOP] = stop
    grounding, stream = grounded_chat(
        llm, [{"role": m["role"], "content": m["content"]} for m in messages if m["content"]],
        get_matcher(study), spm if steered else None, persona.vector if persona is not None else None,
        embedder=study.embedder if persona is not None else None, strength=settings["strength"],
        voice=settings.get("voice", VOICE),
        max_new_tokens=settings["max_new_tokens"], stop=stop)
    message = {"role": "assistant", "content": "", "grounding": grounding.to_dict(), "pending": True}
    messages.append(message)

    def pieces():
        try:
            for piece in stream:
                message["content"] += piece
                yield piece
        finally:
            stop.set()  # also when the run is interrupted: the generation thread ends
            stream.close()

    st.button("Stop", key=f"stop_{len(messages)}_{id(messages)}", icon=":material/stop_circle:",
              on_click=stop.set, help="Stop this reply here")
    st.write_stream(pieces())
    finish_reply(study, message)
    provenance(message)
    return message


def replies_side_by_side(study, llm, spm, histories: list, personas: list, columns, prompt: str,
                         settings) -> None:
    """Send ``prompt`` to every column's conversation and stream all the replies in one batch of generation.

    ``histories[i]`` is column ``i``'s message list (in session state),
    ``personas[i]`` its persona or None for the unsteered model. Each reply
    is appended before it streams, as in :func:`reply`.
    """
    stop = threading.Event()
    st.session_state[STOP] = stop
    places, messages = [], []
    for column, history in zip(columns, histories):
        history.append({"role": "user", "content": prompt})
        with column:
            st.chat_message("user").write(prompt)
            places.append(st.chat_message("assistant").empty())
    groundings, events = grounded_chat_batch(  # without a soft prompt the filter still grounds each persona
        llm, [[{"role": m["role"], "content": m["content"]} for m in h if m["content"]] for h in histories],
        get_matcher(study), spm, [None if p is None else p.vector for p in personas],
        embedder=study.embedder, strength=settings["strength"], voice=settings.get("voice", VOICE),
        max_new_tokens=settings["max_new_tokens"], stop=stop)
    for history, grounding in zip(histories, groundings):
        messages.append({"role": "assistant", "content": "", "grounding": grounding.to_dict(), "pending": True})
        history.append(messages[-1])
    try:
        for row, piece in events:
            messages[row]["content"] += piece
            places[row].markdown(messages[row]["content"] + " ▌")
    finally:
        stop.set()  # also when the run is interrupted: the generation thread ends
        events.close()
    for place, message in zip(places, messages):
        finish_reply(study, message)
        with place.container():
            st.write(message["content"])
            provenance(message)


def bars(options, distribution) -> str:
    """A distribution as a few lines of text bars (cheap enough to draw under every reply)."""
    return "  \n".join(f"`{'█' * round(10 * p)}{'░' * (10 - round(10 * p))}` {p:.0%} {label}"
                       for label, p in zip(options, distribution))


def stance_chip(message: dict) -> str:
    """The reply's stance as a coloured chip: green when it agrees with the persona's answers."""
    grounding = message.get("grounding") or {}
    if not grounding.get("grounded"):
        return ":gray-badge[ungrounded]"
    said, expected = message.get("stance"), grounding.get("stance")
    if said is None:
        return ":gray-badge[stance: none]"
    colour = "green" if expected is None or said == expected else "orange"
    return f":{colour}-badge[stance: {said}]"


def provenance(message: dict) -> None:
    """Under a reply: what grounded it, the persona's distribution, and whether the reply agrees."""
    grounding = message.get("grounding")
    if not grounding:
        return
    if message.get("stopped"):
        st.caption("Stopped.")
    closest = grounding["matches"][0] if grounding["matches"] else None
    if not grounding["grounded"]:
        where = f" (closest: {closest['question_id']}, similarity {closest['similarity']:.2f})" if closest else ""
        st.caption(f"{stance_chip(message)} Not grounded: nothing in the study is close to this message{where}. "
                   "The reply is the model's own.")
        return
    expected = grounding.get("stance")
    said = message.get("stance")
    verdict = ("" if expected is None else " · agrees with the persona's answers" if said == expected
               else " · **differs** from the persona's answers" if said else " · takes no clear stance")
    follow = " · follow-up" if grounding.get("follow_up") else ""
    st.caption(f"{stance_chip(message)} Grounded in **{grounding['question_id']}** "
               f"(similarity {closest['similarity']:.2f}){follow}{verdict}")
    with st.expander("Why this stance", expanded=False):
        st.caption(grounding["question"])
        if grounding.get("distribution") is not None:
            source = SOURCE_WORDS.get(grounding["source"], grounding["source"])
            st.markdown(f"The persona's answers ({source}):  \n"
                        + bars(grounding["options"], grounding["distribution"]))
        else:
            st.caption("No persona: the unsteered model answers for itself.")
        others = ", ".join(f"{m['question_id']} ({m['similarity']:.2f})" for m in grounding["matches"][1:])
        if others:
            st.caption(f"Also close: {others}")


SOURCE_WORDS = {"soft prompt": "the soft prompt's answer", "collaborative filter": "the collaborative filter's",
                "both": "the soft prompt's answer times the collaborative filter's"}


def show_message(message: dict) -> None:
    with st.chat_message(message["role"]):
        st.write(message["content"])
        if message["role"] == "assistant":
            provenance(message)


def chat_settings(study, llm, spm) -> dict:
    """The chat's settings (see :mod:`persona_engine.transcripts`), from the sliders above the chat."""
    left, middle, right = st.columns(3)
    settings = {"study": study.data.source.name, "model": llm.name,
                "strength": left.slider("Steering strength", 0.0, 3.0, 1.0, 0.25, disabled=spm is None,
                                        help="0: unsteered, 1: as trained, above 1: exaggerated"),
                "voice": middle.slider("Soft prompt in the reasons", 0.0, 1.5, VOICE, 0.25, disabled=spm is None,
                                       help="How strongly the soft prompt steers the words after a grounded "
                                            "reply's stance. 0: the base model gives the reasons for the "
                                            "persona's stance. The soft prompt is trained on answers only, so "
                                            "above 0 the reasons can fall apart."),
                "max_new_tokens": right.slider("Longest reply (tokens)", 20, 400, 150, 10)}
    if settings["strength"] > STRONG and spm is not None:
        st.warning(f"Strength {settings['strength']:g} exaggerates the persona beyond its training: above "
                   f"{STRONG:g} replies tend to fall apart into repetition.")
    return settings


def one_persona(study, llm, spm, settings: dict, prompt: str | None) -> dict:
    """The conversation with the persona chosen here, beside what grounds it: ``{name: messages}``."""
    spec = choose_persona(study)
    persona = persona_from_spec(study, spec)
    kept = study_state()  # conversations stay with their study, through reruns, pages and study switches
    kept["last_persona"] = spec
    conversation = kept.get("conversation")
    if conversation is None or conversation["persona"] != spec:
        conversation = kept["conversation"] = {"persona": spec, "messages": []}
    talk, side = st.columns([2, 1])
    with side:
        grounding(study, spec, persona)
    with talk:
        st.markdown(f"**{persona.name}**" + ("" if spm else " (unsteered model)"))
        settle(conversation["messages"])
        for message in conversation["messages"]:
            show_message(message)
        if prompt:
            conversation["messages"].append({"role": "user", "content": prompt})
            st.chat_message("user").write(prompt)
            with st.chat_message("assistant"):
                reply(study, llm, spm, conversation["messages"], persona, settings)
    return {persona.name: conversation["messages"]}


def side_by_side(study, llm, spm, settings: dict, prompt: str | None) -> dict:
    """2 to 4 personas and the unsteered model, one column each: ``{name: messages}``."""
    # the persona met in one-persona mode, or handed over by the map, comes first
    names = {persona_from_spec(study, s).name: s
             for s in side_by_side_specs(study, (study_state().get("last_persona"), handed_persona()))}
    picked = st.multiselect("Personas (2 to 4; the unsteered model answers too)", list(names),
                            default=list(names)[:2], max_selections=4, key="side_by_side_personas")
    if len(picked) < 2:
        st.info("Pick at least two personas.")
        st.stop()
    state = study_state().setdefault("side_by_side", {})
    if prompt:
        st.button("Stop", key="stop_side_by_side", icon=":material/stop_circle:",
                  on_click=lambda: st.session_state[STOP].set() if STOP in st.session_state else None,
                  help="Stop the replies here (they are written together, in one batch)")
    shown = picked + [UNSTEERED]
    columns = st.columns(len(shown))
    for column, name in zip(columns, shown):
        messages = state.setdefault(name, [])
        settle(messages)
        with column:
            st.markdown(f"**{name}**")
            for message in messages:
                show_message(message)
    if prompt:
        personas = [None if name == UNSTEERED else persona_from_spec(study, names[name]) for name in picked]
        replies_side_by_side(study, llm, spm, [state[name] for name in shown], [*personas, None],
                             columns, prompt, settings)
    return {name: state.get(name, []) for name in shown}


def transcript_buttons(conversations: dict, settings: dict) -> None:
    """The transcript's downloads and "Start over", once something was said."""
    if not any(conversations.values()):
        return
    markdown, payload = transcript(conversations, settings)
    left, middle, right = st.columns(3)
    left.download_button("Transcript (Markdown)", markdown, "transcript.md", mime="text/markdown")
    middle.download_button("Transcript (JSON)", payload, "transcript.json", mime="application/json")
    if right.button("Start over"):
        study_state().pop("conversation", None)
        study_state().pop("side_by_side", None)
        st.rerun()


writing = st.session_state.get(STOP)
if writing is not None:
    writing.set()  # a rerun (a new message, the stop button, any widget) ends the reply being written
study = current_study()
st.title("Chat")
st.info(NOTE, icon=":material/info:")
llm = get_llm()
spm, why_not = get_steering(study, llm)
if spm is None:
    st.warning(f"{why_not} Replies come from the unsteered model, grounded in the persona's answers "
               "as the collaborative filter predicts them.")
    st.page_link("app_pages/steer.py", label="Train a soft-prompting model on the Steer page", icon=":material/tune:")

mode = st.radio("Mode", ["One persona", "Side by side", "New question"], horizontal=True, key="chat_mode")
settings = chat_settings(study, llm, spm)
if mode == "New question":
    ask_new_question(study, llm, spm, settings["strength"])
    st.stop()
prompt = st.chat_input("Ask something…")
chat = one_persona if mode == "One persona" else side_by_side
transcript_buttons(chat(study, llm, spm, settings, prompt), settings)
