"""The soft prompt's training inputs rearranged for questions never asked: dropout and option orders."""

import itertools

import numpy as np
import pytest

from persona_engine.embed.factorization import EMBEDDERS
from persona_engine.opinion_data import MISSING, Question
from persona_engine.steer.augmentation import (TrainingInputs, option_orders, question_dropout, question_groups,
                                               shuffled_orders)
from persona_engine.synthetic import make_opinions


@pytest.fixture(scope="module")
def fitted():
    data = make_opinions(n_respondents=120, n_likert=4, n_statements=6, missingness=0.2, random_state=3)
    embedder = EMBEDDERS["softmax"](dim=4, reg=0.05, n_epochs=20, random_state=0).fit(data.answers, data.n_options)
    inputs = TrainingInputs.of(embedder, embedder.respondent_factors_, data.questions, data.answers)
    return data, embedder, inputs


def test_question_groups_deal_every_question_once():
    groups = question_groups(30, np.random.default_rng(0), max_groups=12)
    assert len(groups) == 12
    assert sorted(np.concatenate(groups).tolist()) == list(range(30))
    assert len(question_groups(5, np.random.default_rng(0), max_groups=12)) == 5


def test_dropout_teaches_each_answer_once_from_a_vector_placed_without_its_question(fitted):
    data, embedder, inputs = fitted
    out = question_dropout(inputs, embedder, np.random.default_rng(1), max_groups=4)
    n, q = data.answers.shape
    assert out.embeddings.shape == (4 * n, embedder.dim) and out.answers.shape == (4 * n, q)
    blocks = out.answers.reshape(4, n, q)
    taught = (blocks != MISSING).sum(axis=0)
    assert (taught == (data.answers != MISSING)).all()  # every answer taught exactly once
    assert (np.where(blocks != MISSING, blocks, 0).sum(axis=0) == np.where(data.answers != MISSING,
                                                                           data.answers, 0)).all()
    assert (out.unanswered.reshape(4, n, q).sum(axis=0) == inputs.unanswered).all()
    groups = question_groups(q, np.random.default_rng(1), max_groups=4)  # the same draw as above
    for g, group in enumerate(groups):
        taught_here = np.flatnonzero((blocks[g] != MISSING).any(axis=0) | out.unanswered.reshape(4, n, q)[g].any(0))
        assert set(taught_here) <= set(group)
        without = data.answers.copy()
        without[:, group] = MISSING
        placed = out.embeddings[g * n:(g + 1) * n]
        np.testing.assert_allclose(placed, embedder.transform(without), atol=1e-6)
        np.testing.assert_allclose(out.teacher[g * n:(g + 1) * n], embedder.predict_proba(placed)[..., :out.teacher.shape[-1]],
                                   atol=1e-6)
    # the vector that teaches a group's answers does not move when those answers change
    changed = data.answers.copy()
    group = groups[0]
    changed[:, group] = np.where(changed[:, group] == MISSING, MISSING, 0)
    again = question_dropout(TrainingInputs.of(embedder, inputs.embeddings, data.questions, changed), embedder,
                             np.random.default_rng(1), max_groups=4)
    np.testing.assert_allclose(again.embeddings[:n], out.embeddings[:n], atol=1e-6)
    moved = (changed != data.answers).any(axis=1)
    assert moved.any()  # ... while the other groups' vectors, placed with those answers, do
    assert not np.allclose(again.embeddings[n:2 * n][moved], out.embeddings[n:2 * n][moved], atol=1e-3)

def test_option_orders_are_every_order_up_to_three_options_and_a_sample_beyond():
    rng = np.random.default_rng(0)
    three = option_orders(3, rng)
    assert three[0] == (0, 1, 2) and sorted(three) == sorted(itertools.permutations(range(3)))
    five = option_orders(5, rng, max_orders=6)
    assert five[0] == tuple(range(5)) and len(set(five)) == 6
    assert all(sorted(order) == list(range(5)) for order in five)
    assert option_orders(2, rng) == [(0, 1), (1, 0)]


def test_shuffled_orders_keep_each_answers_words_and_its_teachers_distribution():
    questions = [Question("q1", "Spend more on parks?", ("too little", "about right", "too much")),
                 Question("q2", "Agree?", ("agree", "disagree"), ordinal=False)]
    rng = np.random.default_rng(5)
    answers = rng.integers(0, 2, (400, 2))
    answers[rng.random((400, 2)) < 0.2] = MISSING
    teacher = rng.dirichlet(np.ones(3), (400, 2))
    teacher[:, 1, 2] = 0
    inputs = TrainingInputs(rng.normal(size=(400, 4)).astype(np.float32), questions, answers, teacher,
                            answers == MISSING)
    out = shuffled_orders(inputs, np.random.default_rng(0))
    assert [q.id for q in out.questions] == ["q1"] * 6 + ["q2"] * 2
    assert out.embeddings is inputs.embeddings
    variant_of = np.array([0] * 6 + [1] * 2)
    for j, question in enumerate(questions):
        columns = np.flatnonzero(variant_of == j)
        cells = (out.answers[:, columns] != MISSING) | out.unanswered[:, columns]
        assert (cells.sum(axis=1) == 1).all()  # each cell in exactly one order
        assert (out.unanswered[:, columns].any(axis=1) == inputs.unanswered[:, j]).all()
        for r in range(400):
            v = columns[np.flatnonzero(cells[r])[0]]
            variant = out.questions[v]
            shown = {option: k for k, option in enumerate(variant.options)}
            if answers[r, j] != MISSING:
                assert variant.options[out.answers[r, v]] == question.options[answers[r, j]]
            for k, option in enumerate(question.options):
                assert out.teacher[r, v, shown[option]] == pytest.approx(teacher[r, j, k])
        used = {out.questions[v].options for v in columns if (out.answers[:, v] != MISSING).any()}
        assert len(used) == len(columns)  # every order is taught


def test_a_rearrangement_too_large_for_memory_is_refused_with_its_size(fitted, monkeypatch):
    from persona_engine.errors import DataError
    from persona_engine.steer import augmentation

    data, embedder, inputs = fitted
    monkeypatch.setattr(augmentation, "MAX_CELLS", 1000)
    with pytest.raises(DataError, match="question dropout would make 4,800 training cells"):
        question_dropout(inputs, embedder, np.random.default_rng(0), max_groups=4)
    with pytest.raises(DataError, match="shuffled option orders would make"):
        shuffled_orders(inputs, np.random.default_rng(0))
