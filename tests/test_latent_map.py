import numpy as np
import pytest

from persona_engine.errors import DataError
from persona_engine.latent_map import LatentMap


@pytest.fixture(scope="module")
def clusters():
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=4.0, size=(3, 16))
    labels = np.repeat(np.arange(3), 80)
    points = centres[labels] + rng.normal(scale=0.5, size=(240, 16))
    return points.astype(np.float32), labels, centres


@pytest.fixture(scope="module")
def fitted(clusters):
    return LatentMap(random_state=0).fit(clusters[0])


def test_map_has_one_point_per_respondent_and_is_reproducible(clusters, fitted):
    assert fitted.method_ == "umap"
    assert fitted.coords_.shape == (240, 2)
    again = LatentMap(random_state=0).fit(clusters[0])
    assert np.array_equal(fitted.coords_, again.coords_)


def test_any_map_point_becomes_a_latent_vector_of_the_cohort_drawn_there(clusters, fitted):
    points, labels, centres = clusters
    for cohort in range(3):
        spot = fitted.coords_[labels == cohort].mean(axis=0)
        vector = fitted.inverse_transform(spot)[0]
        nearest = np.argmin(np.linalg.norm(centres - vector, axis=1))
        assert nearest == cohort


def test_latent_vectors_are_drawn_among_their_neighbours(clusters, fitted):
    points, labels, centres = clusters
    drawn = fitted.transform(centres)
    cohort_means = np.stack([fitted.coords_[labels == c].mean(axis=0) for c in range(3)])
    for cohort in range(3):
        assert np.argmin(np.linalg.norm(cohort_means - drawn[cohort], axis=1)) == cohort


def test_distance_to_data_flags_spots_far_from_every_respondent(fitted):
    on_data = fitted.distance_to_data(fitted.coords_[:5])
    far = fitted.distance_to_data(fitted.coords_.max(axis=0) + 100)
    assert np.allclose(on_data, 0)
    assert far[0] > 10


def test_saved_arrays_rebuild_the_same_map(fitted):
    rebuilt = LatentMap.from_state(fitted.get_config(), fitted.state_arrays())
    spot = np.array([[0.3, -0.2]], dtype=np.float32)
    assert np.array_equal(rebuilt.inverse_transform(spot), fitted.inverse_transform(spot))
    assert rebuilt.bandwidth_map_ == fitted.bandwidth_map_


def test_tiny_studies_fall_back_to_pca_and_bad_shapes_are_explained():
    latent_map = LatentMap().fit(np.eye(5, 4, dtype=np.float32))
    assert latent_map.method_ == "pca" and latent_map.coords_.shape == (5, 2)
    with pytest.raises(DataError, match="3 coordinates"):
        latent_map.inverse_transform(np.zeros((1, 3)))
    with pytest.raises(DataError, match="at least 3 respondents"):
        LatentMap().fit(np.zeros((2, 4)))
