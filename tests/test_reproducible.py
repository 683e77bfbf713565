"""The same seed gives the same study: a fingerprint recorded before the code was reorganised.

``tests/fixtures/brexit_study_seed0.json`` holds the Brexit sample study fitted
with every default and ``random_state=0`` (respondents, cohorts, embeddings,
centroids and map) as the code stood before the structure pass. Moving code
between modules must not change a single cohort; the floats may differ in the
last digits between CPUs, hence the tolerances.
"""

import json
from pathlib import Path

import numpy as np

GOLDEN = Path(__file__).parent / "fixtures" / "brexit_study_seed0.json"


def test_the_same_seed_gives_the_study_recorded_before_the_move(brexit_study):
    recorded = json.loads(GOLDEN.read_text())
    assert [str(r) for r in brexit_study.data.respondent_ids] == recorded["respondent_ids"]
    assert brexit_study.labels.tolist() == recorded["labels"]
    np.testing.assert_allclose(brexit_study.embeddings, recorded["embeddings"], atol=1e-3)
    np.testing.assert_allclose(brexit_study.centroids, recorded["centroids"], atol=1e-3)
    np.testing.assert_allclose(brexit_study.latent_map.coords_, recorded["map"], atol=1e-2)
