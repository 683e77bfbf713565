"""Persona sources on a study of the Brexit Polis sample, and the collaborative filter's predictions."""

from __future__ import annotations

import numpy as np
import pytest

from persona_engine.errors import DataError
from persona_engine.opinion_data import MISSING
from persona_engine.personas import (
    answers_persona,
    cohort_persona,
    map_point_persona,
    parse_point,
    predicted_answers,
    respondent_persona,
    vector_persona,
)


@pytest.fixture(scope="module")
def study(brexit_study):
    return brexit_study


def test_respondent_persona_is_their_embedding(study):
    row = 7
    respondent_id = study.data.respondent_ids[row]
    persona = respondent_persona(study, respondent_id)
    assert persona.source == "respondent" and respondent_id in persona.name
    assert persona.vector.shape == (study.embeddings.shape[1],) and persona.vector.dtype == np.float32
    assert np.array_equal(persona.vector, study.embeddings[row])
    assert persona.details["cohort"] == study.labels[row]
    persona.vector[0] += 1.0  # a copy: changing it leaves the study alone
    assert not np.array_equal(persona.vector, study.embeddings[row])
    with pytest.raises(DataError, match="no respondent with id 'nobody'"):
        respondent_persona(study, "nobody")


def test_cohort_persona_is_its_centroid(study):
    last = study.n_cohorts - 1
    persona = cohort_persona(study, last)
    assert np.allclose(persona.vector, study.centroids[last])
    assert persona.details["size"] == int((study.labels == last).sum()) > 0
    for bad in (-1, study.n_cohorts, 1.5, True):
        with pytest.raises(DataError, match="no cohort"):
            cohort_persona(study, bad)


def test_vector_persona_checks_its_shape(study):
    middle = study.centroids.mean(axis=0)
    persona = vector_persona(study, middle, name="between the cohorts")
    assert persona.name == "between the cohorts" and np.allclose(persona.vector, middle)
    with pytest.raises(DataError, match="finite numbers"):
        vector_persona(study, middle[:-1])
    with pytest.raises(DataError, match="finite numbers"):
        vector_persona(study, np.full_like(middle, np.nan))


def test_map_point_persona_inverts_the_map_and_reports_distance(study):
    coords = study.latent_map.coords_
    row = 3
    at_respondent = map_point_persona(study, coords[row])
    assert at_respondent.source == "map_point"
    assert at_respondent.details["distance_to_data"] < 1e-3
    # The inverse at a respondent's own point is nearer to them than to most others.
    distances = np.linalg.norm(study.embeddings - at_respondent.vector, axis=1)
    assert (distances < distances[row]).mean() < 0.1
    far_point = coords.max(axis=0) + 10 * (coords.max(axis=0) - coords.min(axis=0))
    far = map_point_persona(study, far_point)
    assert far.details["distance_to_data"] > 5
    for bad in ([1.0], [np.inf, 0.0], "here"):
        with pytest.raises(DataError, match="map point"):
            map_point_persona(study, bad)


def test_parse_point_reads_command_line_coordinates():
    assert parse_point("1.5,-0.25") == (1.5, -0.25)
    for bad in ("1.5", "a,b", "nan,1"):
        with pytest.raises(DataError, match="two numbers"):
            parse_point(bad)


def test_fold_in_of_a_respondents_answers_lands_near_them(study):
    row = int(np.argmax(study.data.observed.sum(axis=1)))  # someone who answered much
    questions = study.data.questions
    given = {q.id: q.options[a] for q, a in zip(questions, study.data.answers[row]) if a != MISSING}
    persona = answers_persona(study, given)
    assert persona.source == "answers" and persona.details["answers"] == given
    assert f"{len(given)} answers" in persona.name
    distances = np.linalg.norm(study.embeddings - persona.vector, axis=1)
    # Much nearer to that respondent than a typical pair of respondents are to each other.
    typical = np.median(np.linalg.norm(study.embeddings - study.embeddings[row], axis=1))
    assert distances[row] < 0.25 * typical
    assert int(np.argmin(distances)) == row or distances[row] <= np.quantile(distances, 0.02)


def test_fold_in_accepts_labels_any_case_and_indices(study):
    first, second = study.data.questions[:2]
    by_label = answers_persona(study, {first.id: first.options[2].upper(), second.id: f" {second.options[0]} "})
    by_index = answers_persona(study, {first.id: 2, second.id: 0})
    assert np.allclose(by_label.vector, by_index.vector)
    other = answers_persona(study, {first.id: 0, second.id: 2})
    assert not np.allclose(other.vector, by_index.vector)


@pytest.mark.parametrize("answers, message", [
    ({}, "no answers"),
    ({"no such question": "agree"}, "no question with id"),
    ({"0": "maybe"}, "'maybe' is not an option"),
    ({"0": 3}, "'3' is not an option"),
    ({"0": True}, "is not an option"),
])
def test_fold_in_refuses_unknown_questions_and_options(study, answers, message):
    with pytest.raises(DataError, match=message):
        answers_persona(study, answers)


def test_predicted_answers_follow_the_collaborative_filter(study):
    cohorts = [cohort_persona(study, c) for c in range(study.n_cohorts)]
    tables = [predicted_answers(study, persona) for persona in cohorts]
    for table in tables:
        assert list(table.columns) == ["question_id", "question", "answer", "probability", "probabilities"]
        assert len(table) == study.data.n_questions
        sums = table["probabilities"].map(sum)
        assert np.allclose(sums, 1.0)
        best = table["probabilities"].map(max)
        assert np.allclose(best, table["probability"])
    # Cohorts disagree somewhere, and each cohort's prediction matches its members' majority on
    # most questions where the members clearly lean one way.
    assert any((a["answer"] != b["answer"]).any() for a, b in zip(tables, tables[1:]))
    for cohort, table in enumerate(tables):
        members = study.data.answers[study.labels == cohort]
        agree, clear = 0, 0
        for j, question in enumerate(study.data.questions):
            counts = np.bincount(members[:, j][members[:, j] != MISSING], minlength=question.n_options)
            if counts.sum() >= 10 and counts.max() >= 0.7 * counts.sum():
                clear += 1
                agree += question.options[int(counts.argmax())] == table["answer"].iloc[j]
        assert clear > 0 and agree / clear > 0.8
