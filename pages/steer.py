"""Steer page: train the study's soft-prompting model, see its runs and its evaluation.

Training runs in a background thread (one per study, shared by every
session), so the page and other sessions stay responsive; the page polls its
progress. Cancelling stops after the current step and saves the best weights
so far; "continue" resumes from them.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import pandas as pd
import streamlit as st

from pages.state import (TrainingJob, log, current_study, get_llm, guarded, is_bundled, llm_model, open_study,
                         training_jobs, writable_copy)
from persona_engine.errors import DataError
from persona_engine.evaluation import report
from persona_engine.steer.settings import SteeringSettings
from persona_engine.steer.settings import KINDS
from persona_engine.steer.study_steering import (CHECKPOINT, estimate_steering_seconds, steering_base_model,
                                                 train_steering, training_runs)

DEFAULTS = SteeringSettings()


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 90 * 60 else f"{seconds / 3600:.1f} h"


def runs_table(runs: list[dict]) -> pd.DataFrame:
    rows = []
    for run in runs:
        result, options = run.get("result", {}), run.get("options", {})
        history = [h for h in result.get("history", []) if h.get("val_loss") == result.get("best_val_loss")]
        rows.append({"started": run.get("started"), "resumed": run.get("resumed"),
                     "minutes": round(run.get("seconds", 0) / 60, 1), "steps": result.get("steps"),
                     "answers trained on": result.get("n_train"), "stopped": result.get("stopped"),
                     "best validation loss": result.get("best_val_loss"),
                     "letter accuracy": history[0].get("val_accuracy") if history else None,
                     "max examples": options.get("max_examples"), "most epochs": options.get("epochs"),
                     "words share": options.get("words_share")})
    return pd.DataFrame(rows)


def train_in_background(job: TrainingJob, study, llm, settings: SteeringSettings, resume: bool) -> None:
    def progress(step: int, total: int, info: dict) -> None:
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
    share = job.step / job.total if job.total else 0.0
    text = f"Step {job.step} of {job.total or '?'}"
    if "eta_seconds" in job.info:
        text += f" · about {duration(job.info['eta_seconds'])} left"
    if "loss" in job.info:
        text += f" · loss {job.info['loss']:.3f}"
    st.progress(share, text=text)
    if job.cancel.is_set():
        st.caption("Stopping after this step; the best weights so far will be saved.")
    elif st.button("Cancel (keeps the best weights so far)"):
        job.cancel.set()


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
    return replace(DEFAULTS, max_examples=int(max_examples) or None, epochs=float(epochs) or None,
                   steps=int(steps) or None, words_share=float(words), kind=kind)


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


with guarded():  # errors become messages, never tracebacks
    study = current_study()
    st.title("Steer")
    st.caption("A soft-prompting model turns a persona vector into virtual tokens that steer the language "
               "model; it is trained on the study's answers (20% of each respondent's answers are held out "
               "for evaluation).")

    if study.steering_path is not None:
        st.success(f"This study has a soft-prompting model, trained for **{steering_base_model(study)}**.")
    else:
        st.warning("This study has no soft-prompting model yet: chat uses the unsteered model until one is trained.")
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
        elif job is not None and job.result is not None:
            st.success(f"Trained {job.result.steps} steps on {job.result.n_train} answers ({job.result.stopped}).")
        resumable = study.steering_path is not None or (Path(study.path) / CHECKPOINT).is_dir()
        with st.form("train"):
            settings = training_form()
            resume = st.checkbox("Continue from the saved model", value=False, disabled=not resumable,
                                 help="Keeps the saved model's kind of soft prompt")
            estimate, train = st.columns(2)
            wants_estimate = estimate.form_submit_button("Estimate the time")
            wants_training = train.form_submit_button("Train", type="primary")
        if wants_estimate:  # the same settings as the run's
            with st.spinner("Timing two training steps…"):
                seconds = estimate_steering_seconds(study, get_llm(), settings, resume=resume)
            st.info(f"Training should take about {duration(seconds)} with {llm_model() or 'SmolLM2'}.")
        if wants_training:
            job = jobs[str(study.path)] = TrainingJob()
            train_in_background(job, study, get_llm(), settings, resume)
            st.rerun()

    st.subheader("Evaluation")
    evaluation_section(study)
