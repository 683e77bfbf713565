"""Steer page: train the study's soft-prompting model, see its runs and its evaluation.

Training runs in a background thread (one per study, shared by every
session), so the page and other sessions stay responsive; the page polls its
progress. A run is installed only if it finished and beats each question's
majority answer on its validation answers; otherwise (cancelled, which
takes effect within a step, or not good enough) it waits as a candidate to
keep (only if it beats that baseline) or discard, and "continue" resumes
it. The model an installation replaced can be restored.
"""

from __future__ import annotations

import math
import threading
from dataclasses import replace
from pathlib import Path

import streamlit as st

from app_pages.state import (TrainingJob, log, current_study, get_llm, get_steering_status, is_bundled,
                         llm_model, open_study, training_jobs, writable_copy)
from persona_engine.errors import DataError
from persona_engine.evaluation import report
from persona_engine.steer.settings import SteeringSettings
from persona_engine.steer.settings import KINDS
from persona_engine.steer.steering_folder import discard_candidate, keep_candidate, restore_previous, training_runs
from persona_engine.steer.study_steering import estimate_steering_seconds, train_steering
from persona_engine.steer.runs import runs_table

DEFAULTS = SteeringSettings()


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 90 * 60 else f"{seconds / 3600:.1f} h"


def train_in_background(job: TrainingJob, study, llm, settings: SteeringSettings, resume: bool) -> None:
    def progress(stage: str, step: int, total: int, info) -> None:
        job.step, job.total, job.info = step, total, dict(info)

    def run() -> None:
        try:
            job.result = train_steering(study, llm, settings, resume=resume, progress=progress,
                                        cancel=job.cancel)[1]
        except DataError as error:
            job.error = str(error)
        except Exception as error:  # shown on the page; the traceback goes to the server's log
            log.exception("soft-prompt training failed")
            job.error = f"{type(error).__name__}: {error}"

    job.thread = threading.Thread(target=run, daemon=True, name="persona-steering")
    job.thread.start()


@st.fragment(run_every=1.0)
def training_progress(job: TrainingJob) -> None:
    if not job.running:
        st.rerun()  # the whole page: the new model, the runs table
    if job.total == 0:
        text = "Preparing the training: reading the answers and the collaborative filter's predictions…"
    elif job.step == 0:
        text = f"Preparing {job.total} steps: the questions' prompts and a first validation check…"
    else:
        text = f"Step {job.step} of {job.total}"
    if "eta_seconds" in job.info:
        text += f" · about {duration(job.info['eta_seconds'])} left"
    if "loss" in job.info:
        text += f" · loss {job.info['loss']:.3f}"
    st.progress(job.step / job.total if job.total else 0.0, text=text)
    if job.cancel.is_set():
        st.caption("Stopping within a step; the best weights so far are kept as a candidate, which you can keep "
                   "only if it beats each question's majority answer.")
    elif st.button("Cancel (the best weights so far become a candidate; the installed model stays)"):
        job.cancel.set()


def installed_model(status) -> None:
    """What the study's installed model is, and how it scored on its validation answers."""
    active = status.active
    if active is None:
        st.warning("This study has no soft-prompting model yet: chat uses the unsteered model until one is trained.")
    elif active.beats_majority:
        st.success(f"This study has a soft-prompting model, trained for **{active.base_model}**: "
                   f"{active.summary()}.")
    elif active.at_or_below_chance:
        st.error(f"This study's soft-prompting model (for **{active.base_model}**) does no better than chance: "
                 f"{active.summary()}. Chat does not use it; retrain it or restore the previous model.")
    else:
        st.warning(f"This study has a soft-prompting model, trained for **{active.base_model}**, that does not "
                   f"beat each question's majority answer: {active.summary()}.")


def candidate_choice(study, candidate) -> None:
    """The run that was not installed: its scores, "Keep this model" (only if it beats the baseline), "Discard"."""
    reason = candidate.why_not_installed or candidate.shortfall()
    st.warning("The last run was not installed" + (f": {reason}." if reason else "."))
    accuracy, majority, chance = st.columns(3)
    for column, label, value in ((accuracy, "Validation accuracy", candidate.accuracy),
                                 (majority, "Each question's majority", candidate.majority),
                                 (chance, "Chance", candidate.chance)):
        column.metric(label, "–" if math.isnan(value) else f"{value:.3f}")  # NaN: not validated
    keep, discard = st.columns(2)
    if keep.button("Keep this model", type="primary", disabled=not candidate.beats_majority,
                   help=candidate.shortfall() or "Install it; the installed model is kept as the previous one"):
        installed = keep_candidate(study)
        st.session_state["steer_notice"] = f"Installed the candidate: {installed.summary()}."
        st.rerun()
    if discard.button("Discard", help="Delete this run's weights; the installed model stays"):
        discard_candidate(study)
        st.session_state["steer_notice"] = "Discarded the candidate."
        st.rerun()


def previous_choice(study, previous) -> None:
    """Undo the last installation: the previous model back, the replaced one kept as the previous."""
    if st.button("Restore the previous model", help=f"Trained for {previous.base_model}: {previous.summary()}. "
                                                    "The installed model becomes the previous one."):
        restored = restore_previous(study)
        st.session_state["steer_notice"] = f"Restored the previous model: {restored.summary()}."
        st.rerun()


def training_form() -> SteeringSettings:
    """The training inputs, each starting at the default settings' value; 0 stands for no bound (``None``)."""
    a, b, c, d, e = st.columns(5)
    max_examples = a.number_input("Training answers (0: all)", 0, 1_000_000, DEFAULTS.max_examples or 0,
                                  step=1000, help="A random subsample of the study's training answers")
    epochs = b.number_input("Most epochs (0: no bound)", 0.0, 50.0, float(DEFAULTS.epochs or 0), step=0.5,
                            help="Passes over the training answers, if fewer than the steps take")
    steps = c.number_input("Steps (0: epochs decide)", 0, 100_000, DEFAULTS.steps or 0, step=250,
                           help=f"Optimizer steps of {DEFAULTS.batch_size} answers; the time grows with them")
    words = d.number_input("Share taught in words", 0.0, 1.0, DEFAULTS.words_share, step=0.1,
                           help="Answers taught as a sentence rather than a letter; each costs about ten "
                                "letters' time, and chat is grounded in the study's answers without them")
    kind = e.selectbox("Soft prompt", list(KINDS), index=KINDS.index(DEFAULTS.kind),
                       help="prefix: the paper's prefix tuning")
    f, g = st.columns(2)
    dropout = f.checkbox("Train for questions never asked", DEFAULTS.question_dropout,
                         help="Question dropout: teach each answer from the persona placed without that "
                              "question, as a new question's persona is (the Chat page's new questions); "
                              "measured in docs/results.md")
    shuffled = g.checkbox("Shuffle the options while training", DEFAULTS.train_shuffled_options,
                          help="Teach each answer with its options in a random order, so that a letter "
                               "carries no stance and a new question's options may come in any order")
    return replace(DEFAULTS, max_examples=int(max_examples) or None, epochs=float(epochs) or None,
                   steps=int(steps) or None, words_share=float(words), kind=kind, question_dropout=dropout,
                   train_shuffled_options=shuffled)


def evaluation_section(study) -> None:
    """The study's evaluation report (``persona-engine evaluate-steering``), if it has one."""
    folder = Path(study.path) / "evaluation"
    if not (folder / report.MARKER).is_file():
        st.info(f"No evaluation yet: run `persona-engine evaluate-steering {study.path}` "
                "(about 15 minutes on 2 CPU cores for the sample study).")
        return
    result = report.read_report(folder)
    facts = result.facts
    st.caption(f"{facts.get('date', '?')} · {facts.get('llm', '?')} ({facts.get('llm_dtype', '?')}) · "
               f"{facts.get('scored_respondents', '?')} respondents scored on "
               f"{facts.get('held_out_answers', '?')} held-out answers")
    for line in report.verdict(result):
        st.markdown(f"- {line}")
    st.plotly_chart(report.accuracy_figure(result), key="evaluation_accuracy")
    st.dataframe(result.accuracy, hide_index=True)
    if not result.fold_in.empty:
        st.plotly_chart(report.fold_in_figure(result), key="evaluation_fold_in")
    if not result.alignment.empty:
        st.plotly_chart(report.alignment_figure(result), key="evaluation_alignment")


study = current_study()
st.title("Steer")
st.caption("A soft-prompting model turns a persona vector into virtual tokens that steer the language "
           "model; it is trained on the study's answers (20% of each respondent's answers are held out "
           "for evaluation).")

if "steer_notice" in st.session_state:
    st.info(st.session_state.pop("steer_notice"))
status = get_steering_status(study)
installed_model(status)
runs = training_runs(study)
if runs:
    st.dataframe(runs_table(runs), hide_index=True)

st.subheader("Train")
jobs = training_jobs()
job = jobs.get(str(study.path))
if job is not None and job.running:
    training_progress(job)
elif is_bundled(study.path):
    st.info("The bundled sample study is read-only. Train on a copy in your studies folder.")
    if st.button("Copy the study to my studies folder"):
        open_study(writable_copy(study))
        st.rerun()
else:
    if job is not None and job.error:
        st.error(f"Training stopped: {job.error}")
    elif job is not None and job.result is not None and status.candidate is None:
        st.success(f"Trained {job.result.steps} steps on {job.result.n_train} answers ({job.result.stopped}) "
                   "and installed the model.")
    if status.candidate is not None:
        candidate_choice(study, status.candidate)
    if status.previous is not None:
        previous_choice(study, status.previous)
    resumable = any((status.active, status.candidate, status.interrupted))
    with st.form("train"):
        settings = training_form()
        resume = st.checkbox("Continue the last run", value=False, disabled=not resumable,
                             help="Continues the candidate if there is one, else the installed model; keeps "
                                  "its kind of soft prompt")
        estimate, train = st.columns(2)
        wants_estimate = estimate.form_submit_button("Estimate the time")
        wants_training = train.form_submit_button("Train", type="primary")
    if wants_estimate:  # the same settings as the run's
        with st.spinner("Estimating the time (from earlier runs' speed, else two timed steps)…"):
            seconds = estimate_steering_seconds(study, get_llm(), settings, resume=resume)
        st.info(f"Training should take about {duration(seconds)} with {llm_model() or 'SmolLM2'}.")
    if wants_training:
        job = jobs[str(study.path)] = TrainingJob()
        train_in_background(job, study, get_llm(), settings, resume)
        st.rerun()

st.subheader("Evaluation")
evaluation_section(study)
