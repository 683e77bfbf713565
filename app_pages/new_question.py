"""The Chat page's "New question" mode: a question the survey never asked, put to every cohort.

Each cohort's answer is the steered model's estimate
(:func:`persona_engine.steer.new_question.cohort_estimates`), shown beside
the study questions it most resembles and how well the soft prompt answers
questions it was never trained on.
"""

from __future__ import annotations

import streamlit as st

from app_pages.state import get_matcher, study_state
from persona_engine.personas import persona_from_spec
from persona_engine.steer.new_question import cohort_estimates, new_question, similar_questions, unseen_accuracy


def ask_new_question(study, llm, spm, strength: float) -> None:
    """A question the survey never asked, put to every cohort (and the last persona talked to)."""
    st.caption("Ask every cohort a question the survey never asked, with its options. The answers are the "
               "steered model's estimates, not survey results.")
    with st.form("new_question"):
        text = st.text_input("Question", key="new_question_text",
                             placeholder="Should the government spend more on high-speed rail?")
        options = st.text_input("Options, separated by |", key="new_question_options",
                                placeholder="too little|about right|too much")
        asked = st.form_submit_button("Ask every cohort", icon=":material/groups:")
    question = new_question(text, options) if asked else None  # a bad question is a message first
    if spm is None:
        st.warning("Without a soft prompt for this model every cohort would get the unsteered model's answer, "
                   "so there is nothing to compare.")
        return
    kept = study_state()
    if question is not None:
        last = kept.get("last_persona")
        persona = persona_from_spec(study, last) if last and last.get("kind") != "cohort" else None
        kept["new_question"] = {"question": question, "strength": strength,
                                "table": cohort_estimates(llm, question, spm, study, persona=persona,
                                                          strength=strength),
                                "similar": similar_questions(study, question, encoder=get_matcher(study).encoder)}
    shown = kept.get("new_question")
    if shown is None:
        return
    table, question = shown["table"], shown["question"]
    st.markdown(f"**{question.text}**")
    shares = "weighted by the survey weights" if table.attrs["weighted"] else "of respondents"
    st.caption(f"{table.attrs['note'].capitalize()}; strength {shown['strength']:g}; share: the cohort's share "
               f"{shares}.")
    st.dataframe(table, hide_index=True, key="new_question_estimates", column_config={
        "share": st.column_config.NumberColumn("share", format="percent"),
        **{o: st.column_config.ProgressColumn(o, min_value=0.0, max_value=1.0, format="percent")
           for o in question.options}})
    st.markdown("**The study questions it most resembles**")
    st.dataframe(shown["similar"], hide_index=True)
    measured = unseen_accuracy(study)
    if measured is None:
        st.caption("How well this soft prompt answers questions it was never trained on is not measured yet: "
                   f"`persona-engine evaluate-steering {study.path} --split questions`.")
    else:
        accuracy, low, high = measured["spm"]
        line = (f"On questions held out of its training, the individual soft prompt chose the respondent's "
                f"answer {accuracy:.0%} of the time ({low:.0%} to {high:.0%})")
        if measured["question_only"]:
            line += f"; the unsteered model, calibrated, {measured['question_only'][0]:.0%}"
        st.caption(line + ".")
