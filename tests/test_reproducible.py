"""The same seed gives the same study: a fingerprint recorded before the code was reorganised.

``tests/fixtures/brexit_study_seed0.json`` holds the Brexit sample study fitted
with every default and ``random_state=0`` (respondents, cohorts, embeddings,
centroids and map) as the code stood before the structure pass. Moving code
between modules must not change a single cohort; the floats may differ in the
last digits between CPUs, hence the tolerances.

The embeddings and cohorts are ours and must match under any library version.
The map is UMAP's layout, which changes between umap-learn and numba releases
(the same seed gave another layout after an upgrade, with our code unchanged),
so it is compared only under the versions it was recorded with.
"""

import json
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

GOLDEN = Path(__file__).parent / "fixtures" / "brexit_study_seed0.json"


@pytest.fixture(scope="module")
def recorded():
    return json.loads(GOLDEN.read_text())


def test_the_same_seed_gives_the_embeddings_and_cohorts_recorded_before_the_move(brexit_study, recorded):
    assert [str(r) for r in brexit_study.data.respondent_ids] == recorded["respondent_ids"]
    assert brexit_study.labels.tolist() == recorded["labels"]
    np.testing.assert_allclose(brexit_study.embeddings, recorded["embeddings"], atol=1e-3)
    np.testing.assert_allclose(brexit_study.centroids, recorded["centroids"], atol=1e-3)


def test_the_same_seed_gives_the_map_recorded_before_the_move(brexit_study, recorded):
    installed = {name: metadata.version(name) for name in recorded["map_versions"]}
    if installed != recorded["map_versions"]:
        pytest.skip(f"the map was recorded under {recorded['map_versions']}, these are {installed}")
    np.testing.assert_allclose(brexit_study.latent_map.coords_, recorded["map"], atol=1e-2)
