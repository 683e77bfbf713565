"""Cohort stability, cohort-majority predictions and Polis's groups."""

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from persona_engine.evaluation.references import cohort_majority, polis_groups
from persona_engine.cohorts.stability import cohort_stability
from persona_engine.cohorts.kmeans import CohortFinder
from persona_engine.errors import DataError
from persona_engine.evaluation.protocol import holdout_split
from persona_engine.evaluation.metrics import macro_accuracy


def test_stability_is_high_on_separated_groups_and_lower_on_noise():
    X, _ = make_blobs(n_samples=240, n_features=4, centers=3, cluster_std=0.5, random_state=0)
    separated = cohort_stability(X, CohortFinder(n_cohorts=3), n_resamples=8, n_seeds=3, random_state=0)
    assert separated.seed_ari.shape == (3,) and separated.bootstrap_ari.shape == (8,)
    assert separated.ari > 0.95
    assert (separated.per_cohort["jaccard"] > 0.9).all()
    assert (separated.per_cohort["dissolved"] == 0).all()
    assert list(separated.per_cohort["size"]) == list(np.bincount(CohortFinder(n_cohorts=3).fit(X).labels_))

    noise = np.random.default_rng(0).uniform(size=(240, 4))
    blurred = cohort_stability(noise, CohortFinder(n_cohorts=6), n_resamples=8, n_seeds=3, random_state=0)
    for result in (separated, blurred):
        values = np.concatenate([result.seed_ari, result.bootstrap_ari])
        assert np.all((values >= -1) & (values <= 1))
        assert ((result.per_cohort["jaccard"] >= 0) & (result.per_cohort["jaccard"] <= 1)).all()
    assert blurred.ari < separated.ari - 0.1
    assert blurred.per_cohort["jaccard"].mean() < 0.9


def test_stability_uses_a_fitted_finder_as_reference():
    X, _ = make_blobs(n_samples=120, n_features=3, centers=2, random_state=1)
    finder = CohortFinder(n_cohorts=2, random_state=0).fit(X)
    result = cohort_stability(X, finder, n_resamples=3, n_seeds=2)
    assert result.per_cohort["size"].tolist() == finder.sizes_.tolist()


def test_cohort_majority_by_hand():
    # 5 respondents, 3 questions (3, 3 and 2 options); cohorts {0,1,2} and {3,4}.
    answers = np.array([
        [0, 2, -1],
        [0, 1, -1],
        [1, 2, -1],
        [2, 1, 1],
        [2, -1, 0],
    ])
    labels = np.array([5, 5, 5, 9, 9])
    predicted = cohort_majority(answers, labels, np.array([3, 3, 2]))
    # Cohort 5: q0 -> 0 (two of three), q1 -> 2, q2 has no answers -> overall majority:
    # overall q2 answers are {1, 0}, a tie, which goes to the lower option 0.
    # Cohort 9: q0 -> 2, q1 -> 1 (only answer), q2 tie {1, 0} -> 0.
    expected = np.array([[0, 2, 0]] * 3 + [[2, 1, 0]] * 2)
    np.testing.assert_array_equal(predicted, expected)
    with pytest.raises(DataError):
        cohort_majority(answers, labels[:3], np.array([3, 3, 2]))


def _two_camps(n=120, q=20, seed=0):
    """Two camps who vote opposite ways on every statement (10% flips, 30% unseen)."""
    rng = np.random.default_rng(seed)
    camp = np.arange(n) % 2
    stance = rng.integers(0, 2, size=q) * 2  # each statement: camp 0 votes 0 or 2
    answers = np.where(camp[:, None] == 0, stance[None, :], 2 - stance[None, :])
    flips = rng.random((n, q)) < 0.1
    answers = np.where(flips, 1, answers)
    answers[rng.random((n, q)) < 0.3] = -1
    return answers.astype(np.int16), camp


def test_polis_groups_find_two_opposed_camps():
    answers, camp = _two_camps()
    labels = polis_groups(answers, np.full(answers.shape[1], 3), random_state=0)
    assert adjusted_rand_score(camp, labels) == 1.0
    scaled = polis_groups(answers, np.full(answers.shape[1], 3), random_state=0, sparsity_scaling=True)
    assert adjusted_rand_score(camp, scaled) > 0.9


def test_cohort_majority_of_true_camps_beats_question_majority():
    answers, camp = _two_camps(seed=1)
    split = holdout_split(answers, random_state=0)
    n_options = np.full(answers.shape[1], 3)
    by_camp = macro_accuracy(cohort_majority(split.train_answers, camp, n_options), answers, split.test_mask)
    one_cohort = macro_accuracy(cohort_majority(split.train_answers, np.zeros(len(camp)), n_options),
                                answers, split.test_mask)
    assert by_camp > 0.85
    assert one_cohort < 0.6
