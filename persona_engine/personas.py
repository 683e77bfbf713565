"""Personas: the points of a study's latent space that the LLM is steered toward.

A persona is one vector of the study's embedding space, shape ``(dim,)``,
with a name for people to read. It can come from

* a respondent (their collaborative-filtering embedding),
* a cohort (its centroid),
* any latent vector (e.g. between two cohorts),
* a point of the 2-D map (through the map's inverse; the distance to the
  nearest respondents says how much of an extrapolation it is),
* a new person's partial answers, placed by fold-in: the question
  parameters stay frozen and only the person's vector is fitted,
* a selection of respondents (a lasso or box on the map): their mean vector.

Before any LLM is involved, :func:`predicted_answers` shows what the
collaborative filter expects a persona to answer to each study question.

A *persona spec* names a persona as a small JSON-able dict (``{"kind":
"cohort", "cohort": 2}``), so that it can be kept in the app's session, handed
from one page to another and written into a transcript;
:func:`persona_from_spec` builds the persona it names.

Every function takes a fitted :class:`~persona_engine.study.Study`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from persona_engine.errors import DataError
from persona_engine.opinion_data import MISSING

SOURCES = ("respondent", "cohort", "vector", "map_point", "answers", "selection")


@dataclass(frozen=True, eq=False)
class Persona:
    """One point of a study's latent space, ready to steer toward.

    Attributes
    ----------
    name:
        What to call it ("respondent 17", "cohort 2", "map point (1.20, 3.40)").
    vector:
        Shape ``(dim,)`` float32, in the study's embedding space.
    source:
        Where it came from: one of :data:`SOURCES`.
    details:
        Source-specific facts: ``respondent_id``; ``cohort`` and ``size``;
        ``point`` and ``distance_to_data`` (in map kernel widths: below ~1
        among respondents, well above it an extrapolation); ``answers``
        (``{question_id: option}``) for a fold-in; ``size`` and ``cohorts``
        (``{cohort: members}``) for a selection.
    """

    name: str
    vector: np.ndarray
    source: str
    details: dict = field(default_factory=dict)


def respondent_persona(study, respondent_id) -> Persona:
    """The persona of one respondent of the study, by id."""
    row = study.data.respondent_index(str(respondent_id))
    return Persona(f"respondent {respondent_id}", _vector(study.embeddings[row]), "respondent",
                   {"respondent_id": str(respondent_id), "cohort": int(study.labels[row])})


def cohort_persona(study, cohort: int) -> Persona:
    """The centroid of cohort ``cohort`` (0 to ``study.n_cohorts - 1``)."""
    if isinstance(cohort, bool) or not isinstance(cohort, (int, np.integer)) \
            or not 0 <= cohort < study.n_cohorts:
        raise DataError(f"no cohort {cohort!r} in this study",
                        expected=f"a cohort number from 0 to {study.n_cohorts - 1}")
    size = int(np.sum(study.labels == cohort))
    return Persona(f"cohort {int(cohort)}", _vector(study.centroids[cohort]), "cohort",
                   {"cohort": int(cohort), "size": size})


def vector_persona(study, vector: Sequence[float], name: str | None = None) -> Persona:
    """Any latent vector ``(dim,)`` as a persona."""
    dim = study.embeddings.shape[1]
    values = np.asarray(vector, dtype=np.float64)
    if values.shape != (dim,) or not np.isfinite(values).all():
        raise DataError(f"a persona vector of shape {values.shape}",
                        expected=f"{dim} finite numbers, like the study's embeddings")
    return Persona(name or "latent vector", _vector(values), "vector")


def map_point_persona(study, point: Sequence[float]) -> Persona:
    """The persona at a point ``(x, y)`` of the study's map, through the map's inverse."""
    try:
        xy = np.asarray(point, dtype=np.float64)
    except (TypeError, ValueError):
        xy = np.asarray([])
    n_components = study.latent_map.coords_.shape[1]
    if xy.shape != (n_components,) or not np.isfinite(xy).all():
        raise DataError(f"map point {point!r}",
                        expected=f"{n_components} finite coordinates, like X,Y read off the map")
    vector = study.latent_map.inverse_transform(xy[None])[0]
    distance = float(study.latent_map.distance_to_data(xy[None])[0])
    label = ", ".join(f"{v:.2f}" for v in xy)
    return Persona(f"map point ({label})", _vector(vector), "map_point",
                   {"point": tuple(float(v) for v in xy), "distance_to_data": distance})


def answers_persona(study, answers: Mapping, name: str | None = None) -> Persona:
    """A new person placed by fold-in from some answers ``{question_id: option}``.

    An option is its label (as in the study, case and surrounding spaces
    ignored) or its index from 0. Questions not given count as unanswered.
    """
    row = answer_row(study, answers)
    vector = study.embedder.transform(row[None])[0]
    known = {study.data.questions[j].id: study.data.questions[j].options[a]
             for j, a in enumerate(row) if a != MISSING}
    return Persona(name or f"new person ({len(known)} answers)", _vector(vector), "answers",
                   {"answers": known})


def selection_persona(study, respondent_ids: Sequence, name: str | None = None) -> Persona:
    """The mean vector of some respondents (e.g. a lasso or box selection on the map).

    Ids not in the study are an error naming the first few of them.
    """
    ids = [str(r) for r in dict.fromkeys(respondent_ids)]
    if not ids:
        raise DataError("an empty selection", expected="at least one respondent id")
    rows = np.flatnonzero(np.isin(study.data.respondent_ids.astype(str), ids))
    if len(rows) < len(ids):
        known = set(study.data.respondent_ids[rows].astype(str))
        missing = [r for r in ids if r not in known]
        raise DataError(f"{len(missing)} selected respondents are not in this study: {', '.join(missing[:5])}",
                        expected="respondent ids of the open study")
    cohorts = np.bincount(study.labels[rows], minlength=study.n_cohorts)
    return Persona(name or f"selection of {len(rows):,}", _vector(study.embeddings[rows].mean(axis=0)), "selection",
                   {"size": int(len(rows)), "cohorts": {int(c): int(n) for c, n in enumerate(cohorts) if n}})


def answer_row(study, answers: Mapping) -> np.ndarray:
    """``{question_id: option label or index}`` as one answer row ``(n_questions,)`` int16, -1 missing."""
    if not answers:
        raise DataError("no answers given for the new person",
                        expected="at least one {question id: option} pair")
    row = np.full(study.data.n_questions, MISSING, dtype=np.int16)
    for question_id, option in answers.items():
        j = study.data.question_index(str(question_id))
        row[j] = option_index(study.data.questions[j], option)
    return row


def option_index(question, option) -> int:
    """The index of ``option`` (a label or an index from 0) among ``question``'s options."""
    if isinstance(option, (int, np.integer)) and not isinstance(option, bool):
        if 0 <= option < question.n_options:
            return int(option)
    elif isinstance(option, str):
        wanted = option.strip().casefold()
        for index, label in enumerate(question.options):
            if label.strip().casefold() == wanted:
                return index
    raise DataError(f"'{option}' is not an option of this question", column=question.id,
                    expected=f"one of {', '.join(question.options)} (or an index from 0 to "
                    f"{question.n_options - 1})")


def predicted_answers(study, persona: Persona) -> pd.DataFrame:
    """What the collaborative filter expects ``persona`` to answer, one row per study question.

    Columns: ``question_id``, ``question``, ``answer`` (the most likely
    option's label), ``probability`` (its probability) and ``probabilities``
    (a tuple with one probability per option, in the question's order).
    """
    proba = study.embedder.predict_proba(persona.vector[None])[0]  # (n_questions, max_options)
    rows = []
    for question, p in zip(study.data.questions, proba):
        p = p[: question.n_options]
        best = int(np.argmax(p))
        rows.append({"question_id": question.id, "question": question.text,
                     "answer": question.options[best], "probability": float(p[best]),
                     "probabilities": tuple(float(v) for v in p)})
    return pd.DataFrame(rows, columns=["question_id", "question", "answer", "probability", "probabilities"])


def parse_point(text: str) -> tuple[float, ...]:
    """``"X,Y"`` (as typed on a command line) as a tuple of floats."""
    try:
        values = tuple(float(part) for part in str(text).split(","))
    except ValueError:
        values = ()
    if len(values) < 2 or not all(math.isfinite(v) for v in values):
        raise DataError(f"map point '{text}'", expected="two numbers separated by a comma, like 1.5,-0.2")
    return values


# ------------------------------------------------------------------ specs
SPEC_KINDS = ("respondent", "cohort", "map_point", "answers", "selection")
"""The ``kind`` of a persona spec; each has its own fields (see :func:`persona_from_spec`)."""


def respondent_spec(respondent_id) -> dict:
    return {"kind": "respondent", "id": str(respondent_id)}


def cohort_spec(cohort: int) -> dict:
    return {"kind": "cohort", "cohort": int(cohort)}


def map_point_spec(point: Sequence[float]) -> dict:
    return {"kind": "map_point", "point": [float(v) for v in point]}


def answers_spec(answers: Mapping, name: str = "you") -> dict:
    return {"kind": "answers", "answers": dict(answers), "name": name}


def selection_spec(respondent_ids: Sequence) -> dict:
    """A selection of respondents on the map, named by its size."""
    ids = [str(r) for r in respondent_ids]
    return {"kind": "selection", "ids": ids, "name": f"selection of {len(ids):,}"}


def persona_from_spec(study, spec: Mapping) -> Persona:
    """The persona a spec dict names.

    ``{"kind": "respondent", "id": "17"}``, ``{"kind": "cohort", "cohort": 2}``,
    ``{"kind": "map_point", "point": [x, y]}``, ``{"kind": "answers", "answers": {qid: option}}``
    (optionally ``"name"``), ``{"kind": "selection", "ids": [...], "name": ...}`` (a lasso or
    box on the map). An id, cohort or option the study lacks is a :class:`DataError`.
    """
    kind = spec["kind"]
    if kind == "respondent":
        return respondent_persona(study, spec["id"])
    if kind == "cohort":
        return cohort_persona(study, int(spec["cohort"]))
    if kind == "map_point":
        return map_point_persona(study, spec["point"])
    if kind == "answers":
        return answers_persona(study, spec["answers"], name=spec.get("name", "you"))
    if kind == "selection":
        return selection_persona(study, spec["ids"], name=spec.get("name"))
    raise ValueError(f"unknown persona kind {kind!r}")


def side_by_side_specs(study, met: Sequence[Mapping | None] = ()) -> list[dict]:
    """The personas to choose from for a side-by-side chat: every cohort, after those met elsewhere.

    ``met``: specs met before (the last persona talked to, the one handed
    over by the map), each put first unless it is None, already a choice, or
    a fold-in without answers yet; the last one given ends up first.
    """
    choices = [cohort_spec(c) for c in range(study.n_cohorts)]
    for spec in met:
        usable = spec is not None and (spec["kind"] != "answers" or spec.get("answers"))
        if usable and spec not in choices:
            choices.insert(0, dict(spec))
    return choices


def _vector(values) -> np.ndarray:
    return np.array(values, dtype=np.float32)  # a copy: a persona never shares the study's arrays
