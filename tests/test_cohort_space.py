"""Cohort spaces: the answer-space points, the held-out choice between spaces, personas stay in the embedding."""

from dataclasses import replace

import numpy as np
import pytest
from sklearn.base import clone

from persona_engine.evaluation.references import cohort_majority
from persona_engine.cohorts.space import choose_cohort_space, cohort_features, fit_cohorts
from persona_engine.cohorts.kmeans import CohortFinder
from persona_engine.embed.factorization import SoftmaxFactorization
from persona_engine.errors import DataError
from persona_engine.evaluation.protocol import holdout_split
from persona_engine.evaluation.metrics import macro_accuracy
from persona_engine.synthetic import make_opinions


@pytest.fixture(scope="module")
def opinions():
    return make_opinions(n_respondents=240, n_cohorts=3, n_likert=4, n_statements=10, random_state=5)


@pytest.fixture(scope="module")
def embedder(opinions):
    return SoftmaxFactorization(dim=6, reg=0.1, random_state=0).fit(opinions)


def test_answer_space_keeps_given_answers_and_fills_the_rest_with_expected_answers(opinions, embedder):
    answers = opinions.answers
    positions = [q.scaled_values() for q in opinions.questions]
    points = cohort_features("answers", embedder, answers, opinions.questions)
    assert points.shape == answers.shape
    proba = embedder.predict_proba(embedder.respondent_factors_)
    for j, scale in enumerate(positions):
        given = answers[:, j] != -1
        assert np.allclose(points[given, j], scale[answers[given, j]])
        expected = proba[~given, j, :len(scale)] @ scale
        assert np.allclose(points[~given, j], expected)
        assert (~given).any()  # the sample has empty cells to fill
    assert np.array_equal(cohort_features("embedding", embedder, answers), embedder.respondent_factors_)


def test_a_question_that_is_not_ordinal_gets_one_column_per_option(opinions, embedder):
    answers = opinions.answers
    questions = [replace(q, ordinal=False) if j == 0 else q for j, q in enumerate(opinions.questions)]
    points = cohort_features("answers", embedder, answers, questions)
    m = int(embedder.n_options_[0])
    assert points.shape == (answers.shape[0], answers.shape[1] - 1 + m)
    given = answers[:, 0] != -1
    one_hot = np.eye(m)[answers[given, 0]] / np.sqrt(2)
    assert np.allclose(points[given, :m], one_hot)
    # Empty cells: the filter's probabilities, on the same scale.
    assert np.allclose(points[~given, :m].sum(axis=1), 1 / np.sqrt(2))


def test_the_choice_is_the_space_with_the_better_held_out_cohort_majority(opinions, embedder):
    finder = CohortFinder(random_state=0, n_resamples=4)
    choice = choose_cohort_space(embedder, opinions.answers, finder, n_splits=2, random_state=3)
    assert list(choice.scores["split"]) == [0, 0, 1, 1]
    assert list(choice.scores["space"]) == ["embedding", "answers"] * 2
    means = choice.mean_scores()
    assert choice.space == max(means, key=means.get) or means["answers"] == means["embedding"]
    # Recompute the first split's answer-space score by hand.
    split = holdout_split(opinions.answers, fraction=0.2, min_answers=5, random_state=3 + 1000)
    inner = SoftmaxFactorization(dim=6, reg=float(embedder.reg_), random_state=3).fit(
        split.train_answers, embedder.n_options_)
    points = cohort_features("answers", inner, split.train_answers)
    labels = clone(finder).fit(points, sample_weight=(split.train_answers != -1).sum(axis=1)).labels_
    expected = macro_accuracy(cohort_majority(split.train_answers, labels, embedder.n_options_),
                              opinions.answers, split.test_mask)
    assert choice.scores["accuracy"].iloc[1] == pytest.approx(expected)
    again = choose_cohort_space(embedder, opinions.answers, finder, n_splits=2, random_state=3)
    assert again.scores.equals(choice.scores)


@pytest.mark.parametrize("space", ["answers", "embedding"])
def test_cohort_personas_are_member_means_in_the_embedding_space(opinions, embedder, space):
    finder, points, choice = fit_cohorts(embedder, opinions.answers, CohortFinder(random_state=0, n_resamples=4),
                                         space)
    assert choice.space == space and choice.scores.empty
    vectors = embedder.respondent_factors_
    weight = (opinions.answers != -1).sum(axis=1)
    assert finder.centroids_.shape == (finder.n_cohorts_, vectors.shape[1])
    for c in range(finder.n_cohorts_):
        members = finder.labels_ == c
        assert np.allclose(finder.centroids_[c], np.average(vectors[members], axis=0, weights=weight[members]))
    assert points.shape[1] == (opinions.answers.shape[1] if space == "answers" else vectors.shape[1])


def test_planted_cohorts_come_back_in_either_space(opinions, embedder):
    truth = opinions.metadata["planted_cohort"].to_numpy()
    from sklearn.metrics import adjusted_rand_score
    for space in ("answers", "embedding"):
        finder, _, _ = fit_cohorts(embedder, opinions.answers, CohortFinder(random_state=0, n_resamples=4), space)
        assert adjusted_rand_score(truth, finder.labels_) > 0.8, space


def test_unknown_space_is_a_clear_error(opinions, embedder):
    with pytest.raises(DataError, match="cohort space 'pca'"):
        fit_cohorts(embedder, opinions.answers, CohortFinder(), "pca")
    with pytest.raises(DataError, match="cohort space"):
        cohort_features("latent", embedder, opinions.answers)


def test_without_answers_to_hold_out_the_embedding_is_kept(embedder):
    few = np.full((30, len(embedder.n_options_)), -1)
    few[:, :1] = 0  # one answer each: nothing can be held out
    tiny = SoftmaxFactorization(dim=2, reg=0.1, random_state=0).fit(few, embedder.n_options_)
    choice = choose_cohort_space(tiny, few, CohortFinder(n_resamples=2))
    assert choice.space == "embedding" and choice.scores.empty


def test_a_short_battery_is_scored_leave_one_out_and_a_tie_keeps_the_embedding(embedder):
    few = np.full((30, len(embedder.n_options_)), -1)
    few[:, :3] = 0  # three answers each: one per respondent is held out in each inner split
    tiny = SoftmaxFactorization(dim=2, reg=0.1, random_state=0).fit(few, embedder.n_options_)
    choice = choose_cohort_space(tiny, few, CohortFinder(n_resamples=2))
    assert not choice.scores.empty and set(choice.scores["space"]) == {"embedding", "answers"}
    assert choice.space == "embedding"  # both score 1.0: the tie keeps the embedding
