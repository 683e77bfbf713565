"""CohortFinder: choice of k, fixed k, small-cohort merging, stable labels, saving."""

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from persona_engine.cohorts.kmeans import CohortFinder
from persona_engine.errors import DataError


@pytest.fixture(scope="module")
def blobs():
    """Three well-separated groups of unequal size in 6 dimensions."""
    X, truth = make_blobs(n_samples=[150, 100, 60], n_features=6, cluster_std=0.6,
                          center_box=(-8, 8), random_state=3)
    return X, truth


@pytest.mark.parametrize("method", ["kmeans", "gmm"])
def test_auto_k_finds_the_planted_groups(blobs, method):
    X, truth = blobs
    finder = CohortFinder(method=method, random_state=0).fit(X)
    assert finder.n_cohorts_ == 3
    assert adjusted_rand_score(truth, finder.labels_) > 0.99
    k_choice = finder.k_choice_
    assert list(k_choice["k"]) == list(range(2, 11))
    assert {"inertia", "silhouette", "bic", "stability", "chosen", "n_cohorts"} <= set(k_choice.columns)
    assert k_choice["chosen"].sum() == 1
    chosen = k_choice[k_choice["chosen"]].iloc[0]
    assert chosen["k"] == 3
    # The rule: among the ks stable enough, the lowest BIC.
    stable = k_choice[k_choice["stability"] >= finder.min_stability]
    assert chosen["bic"] == stable["bic"].min()
    assert chosen["stability"] > 0.95
    assert k_choice["stability"].between(-1, 1).all()
    # The elbow curve falls from 2 to 3 cohorts.
    inertia = k_choice.set_index("k")["inertia"]
    assert inertia[3] < inertia[2]


def test_fixed_k_labels_sorted_by_size_and_centroids_are_means(blobs):
    X, _ = blobs
    finder = CohortFinder(n_cohorts=5, random_state=0).fit(X)
    assert finder.n_cohorts_ == 5
    assert finder.centroids_.shape == (5, X.shape[1])
    assert finder.labels_.shape == (len(X),)
    assert set(finder.labels_) == set(range(5))
    sizes = np.bincount(finder.labels_)
    assert list(sizes) == sorted(sizes, reverse=True)
    assert np.array_equal(sizes, finder.sizes_)
    for c in range(5):
        np.testing.assert_allclose(finder.centroids_[c], X[finder.labels_ == c].mean(axis=0))
    assert len(finder.k_choice_) == 1 and finder.k_choice_["chosen"].all()
    assert finder.k_choice_["stability"].isna().all()   # no resampling for a fixed k


def test_predict_agrees_with_training_labels_and_new_points(blobs):
    X, _ = blobs
    finder = CohortFinder(n_cohorts=3, random_state=0).fit(X)
    assert np.array_equal(finder.predict(X), finder.labels_)
    near = finder.centroids_ + 0.01
    assert np.array_equal(finder.predict(near), np.arange(3))


def test_same_seed_same_cohorts(blobs):
    X, _ = blobs
    noisy = X + np.random.default_rng(0).normal(0, 3, size=X.shape)  # ambiguous groups
    a = CohortFinder(n_cohorts=6, random_state=7).fit(noisy)
    b = CohortFinder(n_cohorts=6, random_state=7).fit(noisy)
    assert np.array_equal(a.labels_, b.labels_)
    np.testing.assert_array_equal(a.centroids_, b.centroids_)
    pd.testing.assert_frame_equal(a.k_choice_, b.k_choice_)


def test_small_cohorts_are_merged_into_the_nearest():
    rng = np.random.default_rng(1)
    big_a = rng.normal(0, 0.3, size=(80, 2))
    big_b = rng.normal(0, 0.3, size=(80, 2)) + [10, 0]
    tiny = rng.normal(0, 0.1, size=(5, 2)) + [7, 0]  # nearer to big_b
    X = np.vstack([big_a, big_b, tiny])
    unmerged = CohortFinder(n_cohorts=3, min_cohort_size=1, random_state=0).fit(X)
    assert unmerged.n_cohorts_ == 3 and unmerged.sizes_.min() == 5
    finder = CohortFinder(n_cohorts=3, min_cohort_size=10, random_state=0).fit(X)
    assert finder.n_cohorts_ == 2
    assert finder.sizes_.min() >= 10
    assert len(set(finder.labels_[160:])) == 1
    assert finder.labels_[160] == finder.labels_[100]  # joined big_b, its nearest
    # A share works too: 4% of 165 respondents is 7.
    assert CohortFinder(n_cohorts=3, min_cohort_size=0.04, random_state=0).fit(X).n_cohorts_ == 2


def test_auto_never_returns_undersized_cohorts(blobs):
    X, _ = blobs
    finder = CohortFinder(random_state=0, k_range=(2, 10), min_cohort_size=40).fit(X)
    assert finder.sizes_.min() >= 40
    assert (finder.k_choice_["smallest_cohort"] >= 40).all()


def test_sample_weight_moves_centroids(blobs):
    X, _ = blobs
    weight = np.where(np.arange(len(X)) % 2 == 0, 5.0, 1.0)
    finder = CohortFinder(n_cohorts=3, random_state=0).fit(X, sample_weight=weight)
    for c in range(3):
        members = finder.labels_ == c
        np.testing.assert_allclose(finder.centroids_[c], np.average(X[members], axis=0, weights=weight[members]))


@pytest.mark.parametrize("method", ["kmeans", "gmm"])
def test_saved_state_rebuilds_the_same_finder(blobs, method):
    X, _ = blobs
    finder = CohortFinder(method=method, n_cohorts=3, random_state=0).fit(X)
    config, arrays = finder.get_config(), finder.state_arrays()
    assert all(isinstance(a, np.ndarray) for a in arrays.values())
    loaded = CohortFinder.from_state(config, arrays, finder.k_choice_)
    probe = X + np.random.default_rng(2).normal(0, 1.0, size=X.shape)
    assert np.array_equal(loaded.predict(probe), finder.predict(probe))
    np.testing.assert_array_equal(loaded.centroids_, finder.centroids_)
    assert loaded.get_params() == finder.get_params()


@pytest.mark.parametrize("kwargs", [{"n_cohorts": 0}, {"n_cohorts": "many"}, {"method": "dbscan"},
                                    {"min_cohort_size": -1}, {"k_range": (5, 2)}])
def test_bad_settings_raise_data_error(blobs, kwargs):
    with pytest.raises(DataError):
        CohortFinder(**kwargs).fit(blobs[0])


def test_identical_vectors_raise_data_error():
    with pytest.raises(DataError, match="identical"):
        CohortFinder().fit(np.zeros((10, 3)))
