"""Large studies: which steps run on a random sample of respondents, and the manifest says so."""

import warnings

import numpy as np
import pytest

from persona_engine.cohorts.stability import cohort_stability
from persona_engine.cohorts.kmeans import CohortFinder
from persona_engine.latent_map import LatentMap
from persona_engine.study import fit_study
from persona_engine.synthetic import make_opinions


@pytest.fixture(scope="module")
def opinions():
    return make_opinions(n_respondents=300, n_cohorts=3, n_likert=6, n_statements=6, random_state=1)


def test_manifest_names_every_subsampled_step(opinions):
    study = fit_study(opinions, random_state=0, max_respondents=120)
    subsampled = study.manifest["subsampled"]
    assert set(subsampled) == {"cohort_space", "cohort_k_choice", "cohort_stability", "map"}
    assert subsampled["cohort_k_choice"] == "choice of the number of cohorts on a random 120 of 300 respondents"
    # Everyone still gets a cohort and a map position.
    assert study.labels.shape == (300,) and study.latent_map.coords_.shape == (300, 2)
    assert study.stability["size"].sum() == 300


def test_nothing_is_subsampled_below_the_caps(opinions):
    study = fit_study(opinions, random_state=0, max_respondents=300)
    assert study.manifest["subsampled"] == {}


def test_finder_below_its_cap_is_unchanged_and_above_it_fits_the_chosen_k_on_everyone(opinions):
    X = np.random.default_rng(0).normal(size=(200, 4)) + np.repeat(np.eye(4)[:2] * 6, 100, axis=0)
    uncapped = CohortFinder(n_resamples=3, max_respondents=None).fit(X)
    at_cap = CohortFinder(n_resamples=3, max_respondents=200).fit(X)
    np.testing.assert_array_equal(uncapped.labels_, at_cap.labels_)
    assert at_cap.k_choice_respondents_ == 200
    capped = CohortFinder(n_resamples=3, max_respondents=80).fit(X)
    assert capped.k_choice_respondents_ == 80 and capped.labels_.shape == (200,)
    assert capped.n_cohorts_ == 2


def test_stability_on_a_sample_counts_everyone_in_cohort_sizes():
    X = np.random.default_rng(0).normal(size=(200, 3)) + np.repeat(np.eye(3)[:2] * 6, 100, axis=0)
    finder = CohortFinder(n_cohorts=2).fit(X)
    stability = cohort_stability(X, finder, n_resamples=3, n_seeds=1, max_respondents=50)
    assert stability.n_respondents == 50
    assert stability.per_cohort["size"].tolist() == [100, 100]
    assert stability.ari > 0.9


def test_map_on_a_sample_places_everyone_among_their_neighbours():
    X = np.random.default_rng(0).normal(size=(120, 3)).astype(np.float32)
    X[60:] += 8
    latent_map = LatentMap(max_respondents=40, random_state=0).fit(X)
    assert latent_map.layout_respondents_ == 40 and latent_map.coords_.shape == (120, 2)
    # The two groups stay apart on the map.
    a, b = latent_map.coords_[:60].mean(axis=0), latent_map.coords_[60:].mean(axis=0)
    spread = latent_map.coords_[:60].std(axis=0).max()
    assert np.linalg.norm(a - b) > 2 * spread


def test_a_failed_spectral_start_gives_no_raw_umap_warning(monkeypatch):
    umap = pytest.importorskip("umap")

    def fit_transform(self, X):
        # What umap-learn says on tiny or degenerate inputs (it then starts from random positions).
        warnings.warn("Spectral initialisation failed! The eigenvector solver failed.", UserWarning)
        return np.random.default_rng(0).normal(size=(len(X), self.n_components))

    monkeypatch.setattr(umap.UMAP, "fit_transform", fit_transform)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        latent_map = LatentMap(random_state=0).fit(np.random.default_rng(1).normal(size=(30, 4)))
    assert latent_map.method_ == "umap"
