import copy
import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from persona_engine.errors import DataError
from persona_engine.study import Study, fit_study

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data"


@pytest.fixture(scope="module")
def brexit(brexit_data):
    return brexit_data


@pytest.fixture(scope="module")
def study(brexit_study):
    """The shared study, as a copy: saving sets ``path``, which other modules must not see."""
    return dataclasses.replace(brexit_study, manifest=copy.deepcopy(brexit_study.manifest), path=None)


def test_fitted_study_has_one_vector_cohort_and_map_point_per_respondent(study, brexit):
    n = brexit.n_respondents
    assert study.embeddings.shape == (n, 16)
    assert study.labels.shape == (n,) and study.labels.min() == 0
    assert study.latent_map.coords_.shape == (n, 2)
    assert study.centroids.shape == (study.n_cohorts, 16)
    table = study.respondents()
    assert list(table.columns[:4]) == ["respondent_id", "cohort", "map_x", "map_y"]
    assert "polis_group" in table.columns
    assert study.manifest["source"]["files"][0]["sha256"]
    # Where the cohorts were found, and the held-out evidence for it.
    fitted = study.manifest["fitted"]
    assert study.manifest["parameters"]["cohort_space"] == "auto"
    scores = fitted["cohort_space_scores"]
    assert set(scores) == {"embedding", "answers"} and all(0 < v < 1 for v in scores.values())
    assert fitted["cohort_space"] == ("answers" if scores["answers"] > scores["embedding"] else "embedding")


def test_same_data_and_seed_give_the_same_study(study, brexit):
    again = fit_study(brexit, random_state=0)
    assert np.array_equal(again.embeddings, study.embeddings)
    assert np.array_equal(again.labels, study.labels)
    assert np.array_equal(again.latent_map.coords_, study.latent_map.coords_)


def test_saved_study_loads_back_identical(study, tmp_path):
    folder = study.save(tmp_path / "brexit")
    loaded = Study.load(folder)
    assert np.array_equal(loaded.embeddings, study.embeddings)
    assert np.array_equal(loaded.labels, study.labels)
    assert np.array_equal(loaded.data.answers, study.data.answers)
    assert loaded.data.questions == study.data.questions
    assert list(loaded.data.respondent_ids) == list(study.data.respondent_ids)
    assert loaded.data.metadata["polis_group"].tolist() == study.data.metadata["polis_group"].tolist()
    point = study.latent_map.coords_[:3]
    assert np.allclose(loaded.latent_map.inverse_transform(point), study.latent_map.inverse_transform(point))
    # a loaded study still places new people with the frozen question parameters
    assert np.allclose(loaded.embedder.transform(study.data.answers[:5]),
                       study.embedder.transform(study.data.answers[:5]), atol=1e-5)
    assert np.array_equal(loaded.cohorts.predict(study.embeddings), study.cohorts.predict(study.embeddings))
    assert loaded.stability.equals(study.stability)
    assert loaded.stability["jaccard"].between(0, 1).all() and len(loaded.stability) == study.n_cohorts
    # nothing in the folder is a pickle: JSON, parquet and safetensors only
    suffixes = {p.suffix for p in folder.rglob("*") if p.is_file()}
    assert suffixes <= {".json", ".parquet", ".safetensors"}
    assert (folder / "cohorts" / "k_choice.parquet").is_file()
    assert not (folder / "cohorts" / "selection.parquet").exists()
    assert loaded.cohorts.k_choice_.equals(study.cohorts.k_choice_)


@pytest.mark.parametrize("name", ["gss_spending", "brexit-consensus"])
def test_a_study_saved_with_selection_parquet_still_loads_its_choice_of_k(name):
    # The bundled studies were saved before cohorts/selection.parquet was renamed k_choice.parquet.
    folder = SAMPLE / "studies" / name
    assert (folder / "cohorts" / "selection.parquet").is_file()
    assert not (folder / "cohorts" / "k_choice.parquet").exists()
    k_choice = Study.load(folder).cohorts.k_choice_
    assert {"k", "bic", "stability", "chosen"} <= set(k_choice.columns) and k_choice["chosen"].sum() == 1


def test_a_resaved_old_study_writes_k_choice_parquet(tmp_path):
    old = Study.load(SAMPLE / "studies" / "brexit-consensus")
    folder = old.save(tmp_path / "brexit")
    assert not (folder / "cohorts" / "selection.parquet").exists()
    assert Study.load(folder).cohorts.k_choice_.equals(old.cohorts.k_choice_)


def test_failed_save_leaves_the_existing_study_untouched(study, tmp_path, monkeypatch):
    folder = study.save(tmp_path / "study")
    before = (folder / "manifest.json").read_bytes()

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(study.latent_map, "state_arrays", explode)
    with pytest.raises(OSError, match="disk full"):
        study.save(folder)
    assert (folder / "manifest.json").read_bytes() == before
    assert Study.load(folder).n_cohorts == study.n_cohorts
    assert [p.name for p in tmp_path.iterdir()] == ["study"]  # no partial folders left behind


def test_save_killed_mid_write_never_corrupts_the_existing_study(study, tmp_path):
    folder = study.save(tmp_path / "study")
    labels_before = Study.load(folder).labels.copy()
    # A second process re-saves the study and is killed (SIGKILL) halfway through writing.
    script = textwrap.dedent(f"""
        import os, signal
        import safetensors.numpy
        from persona_engine.study import folder as study_folder
        from persona_engine.study import Study
        loaded = Study.load({str(folder)!r})
        calls = []
        real_save = study_folder.save_file
        def save_then_die(*args, **kwargs):
            real_save(*args, **kwargs)
            calls.append(1)
            if len(calls) == 2:
                os.kill(os.getpid(), signal.SIGKILL)
        study_folder.save_file = save_then_die
        loaded.save({str(folder)!r})
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == -signal.SIGKILL, result.stderr
    reloaded = Study.load(folder)
    assert np.array_equal(reloaded.labels, labels_before)


def test_a_crash_between_the_two_renames_is_recovered_on_load(study, tmp_path):
    folder = study.save(tmp_path / "study")
    os.rename(folder, tmp_path / ".study.old-deadbeef")  # the state right after the first rename
    assert Study.load(folder).n_cohorts == study.n_cohorts
    assert folder.is_dir()


def test_bad_study_folders_get_clear_errors(study, tmp_path):
    with pytest.raises(DataError, match="not a Persona Engine study"):
        Study.load(tmp_path)
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("mine")
    with pytest.raises(DataError, match="refusing to overwrite"):
        study.save(other)
    assert (other / "todo.txt").read_text() == "mine"
    folder = study.save(tmp_path / "study")
    (folder / "map" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(DataError, match="model.safetensors"):
        Study.load(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["format_version"] = 99
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="format version 99"):
        Study.load(folder)


def test_optional_3d_map_is_saved_and_loaded(brexit, tmp_path):
    study = fit_study(brexit, map_3d=True, random_state=0)
    assert study.latent_map_3d.coords_.shape == (brexit.n_respondents, 3)
    loaded = Study.load(study.save(tmp_path / "s"))
    assert np.array_equal(loaded.latent_map_3d.coords_, study.latent_map_3d.coords_)
    point = loaded.latent_map_3d.coords_[:1]
    assert loaded.latent_map_3d.inverse_transform(point).shape == (1, 16)
