"""A question the study never asked, put to its personas: the model's estimate for each cohort.

The collaborative filter knows only the study's questions; the steered LLM
can be asked anything. :func:`cohort_estimates` asks a new question with its
options of every cohort's persona (and of one chosen persona and the
unsteered model), :func:`similar_questions` names the study questions it
most resembles, and :func:`unseen_accuracy` says how well this study's soft
prompt did on questions it was never trained on, when
``persona-engine evaluate-steering STUDY --split questions`` has measured it.
The figures are model estimates, never survey results.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from persona_engine.errors import DataError
from persona_engine.opinion_data import Question
from persona_engine.cohorts.profiles import cohort_shares
from persona_engine.cohorts.statistics import uses_weights
from persona_engine.steer.answering import answer

ESTIMATE_NOTE = ("model estimate: the steered language model's probability of each option, not a survey "
                 "result")
UNSEEN_REPORT = "evaluation-questions"


def new_question(text: str, options: str | Sequence[str]) -> Question:
    """A question the study never asked: its ``text`` and two or more ``options`` (a list, or ``"a|b|c"``)."""
    labels = options.split("|") if isinstance(options, str) else list(options)
    labels = tuple(dict.fromkeys(o.strip() for o in labels if o.strip()))
    if not text.strip():
        raise DataError("the question is empty", expected="the question to ask, in words")
    if len(labels) < 2:
        raise DataError(f"options '{options if isinstance(options, str) else '|'.join(options)}'",
                        expected="two or more different options separated by |, e.g. 'yes|no'")
    return Question(id="asked", text=text.strip(), options=labels, ordinal=False)


def cohort_estimates(llm, question: Question, soft_prompt, study, *, persona=None,
                     strength: float = 1.0) -> pd.DataFrame:
    """One row per persona asked (``persona`` first if given, then each cohort, then the unsteered model).

    Columns: ``persona``, ``share`` (the cohort's share of respondents,
    weighted by the survey weights when the study has them), then one column
    per option with its probability. ``table.attrs["note"]`` says these are
    model estimates; ``table.attrs["weighted"]`` whether shares are weighted.
    """
    centroids = np.asarray(study.centroids, dtype=np.float32)
    who = [f"cohort {c}" for c in range(len(centroids))]
    vectors = centroids
    if persona is not None:
        who, vectors = [persona.name] + who, np.vstack([persona.vector[None], centroids])
    steered = answer(llm, question, soft_prompt, vectors, strength=strength)
    unsteered = answer(llm, question)
    shares = cohort_shares(study.data, study.labels).reindex(range(len(centroids)), fill_value=0.0)
    share = ([math.nan] if persona is not None else []) + shares.tolist() + [math.nan]
    table = pd.DataFrame(np.vstack([steered, unsteered[None]]), columns=list(question.options))
    table.insert(0, "share", share)
    table.insert(0, "persona", who + ["unsteered model"])
    table.attrs["note"] = ESTIMATE_NOTE
    table.attrs["weighted"] = uses_weights(study.data)
    return table


def similar_questions(study, question: Question, k: int = 3, encoder=None) -> pd.DataFrame:
    """The ``k`` study questions most like ``question`` (text and options): ``question_id, text, similarity``."""
    from persona_engine.evaluation.baselines import question_vectors

    questions: Sequence[Question] = study.data.questions
    vectors = question_vectors(list(questions) + [question], encoder)
    similarity = vectors[:-1] @ vectors[-1]
    top = np.argsort(-similarity, kind="stable")[:k]
    return pd.DataFrame({"question_id": [questions[j].id for j in top],
                         "text": [questions[j].text for j in top],
                         "similarity": similarity[top].round(3)})


def unseen_accuracy(study) -> dict | None:
    """The individual SPM's and the calibrated question-only prompt's accuracy on held-out questions.

    ``{"spm": (accuracy, low, high), "question_only": (...) or None, "folds": K}`` from
    ``STUDY/evaluation-questions``; ``None`` when no such evaluation was run.
    """
    if study.path is None:
        return None
    folder = study.path / UNSEEN_REPORT
    try:
        table = pd.read_csv(folder / "accuracy.csv")
        if "options" in table:
            table = table[table["options"] == "fixed order"]
        table = table.set_index("method")
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, KeyError):
        return None
    if "SPM (individual)" not in table.index:
        return None

    def figures(method):
        if method not in table.index:
            return None
        row = table.loc[method]
        return float(row["accuracy"]), float(row["low"]), float(row["high"])

    return {"spm": figures("SPM (individual)"), "question_only": figures("question only, calibrated")}
