"""A study as saved: one dataset and everything fitted on it, in one folder.

:func:`~persona_engine.study.fitting.fit_study` fits it; :class:`Study` holds the result; ``save`` writes it as a folder of JSON,
parquet and safetensors (never pickle, since study folders are shared between
people), and ``Study.load`` reads it back in one call.

Folder layout::

    manifest.json            format version, source files and hashes, parameters,
                             which steps ran on a random sample of respondents,
                             library versions, seeds, metrics
    questions.json           questions with their ordered options
    respondents.parquet      respondent ids, metadata, weights, and for reading
                             outside Python a copy of each cohort and map position
    answers.safetensors      answers (n_respondents, n_questions) int16, -1 missing
    embedding/               config.json + model.safetensors (collaborative filter)
    cohorts/                 config.json + model.safetensors + k_choice.parquet
                             (choice of k; selection.parquet before) + stability.parquet
                             (per cohort)
    map/                     config.json + model.safetensors (coordinates + vectors)
    map3d/                   the same for the optional 3-D map
    steering/                optional: the soft-prompting model trained on this study
                             (written by persona_engine.steer.study_steering)

Saving is atomic: the folder is written beside its destination and renamed
into place, so a fit killed mid-way never corrupts an existing study. A
re-save keeps ``steering/`` when it was trained on the same embeddings
(:attr:`Study.fingerprint`), and drops it when a refit changed them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from persona_engine.cohorts.kmeans import CohortFinder
from persona_engine.embed.factorization import embedder_from_state
from persona_engine.errors import DataError
from persona_engine.latent_map import LatentMap
from persona_engine.opinion_data import OpinionData, Question, Source
from persona_engine.progress import Progress
from persona_engine.study.folder import (
    load_arrays, load_component, read_json, read_table, recover_interrupted_swap, save_arrays,
    save_component, write_folder_atomically, write_json,
)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
STEERING = "steering"
"""Sub-folder holding the study's soft-prompting model."""

StudyProgress = Progress
"""``progress(stage, done, total, info)`` (:mod:`persona_engine.progress`): stage is 'embedding', 'cohorts' or 'map'."""


@dataclass
class Study:
    """Opinions and everything fitted on them.

    Attributes
    ----------
    data:
        The respondents' answers (:class:`OpinionData`).
    embedder:
        The fitted collaborative filter; ``embedder.respondent_factors_`` has
        shape ``(n_respondents, dim)``.
    cohorts:
        The fitted :class:`CohortFinder`; ``labels_`` ``(n_respondents,)``,
        ``centroids_`` ``(n_cohorts, dim)``.
    latent_map:
        The fitted :class:`LatentMap`; ``coords_`` ``(n_respondents, 2)``.
    stability:
        One row per cohort: ``cohort``, ``size``, ``jaccard`` (Hennig's
        clusterboot: above 0.75 stable, below 0.5 the cohort dissolves) and
        ``dissolved`` (share of bootstrap refits where it did).
    manifest:
        Provenance and parameters (what ``manifest.json`` holds).
    path:
        Where the study was loaded from or last saved, if anywhere.
    """

    data: OpinionData
    embedder: object
    cohorts: CohortFinder
    latent_map: LatentMap
    stability: pd.DataFrame
    manifest: dict = field(default_factory=dict)
    path: Path | None = None
    latent_map_3d: LatentMap | None = None

    # ------------------------------------------------------------ accessors
    @property
    def embeddings(self) -> np.ndarray:
        """``(n_respondents, dim)`` respondent vectors."""
        return self.embedder.respondent_factors_

    @property
    def labels(self) -> np.ndarray:
        """``(n_respondents,)`` cohort of each respondent."""
        return self.cohorts.labels_

    @property
    def centroids(self) -> np.ndarray:
        """``(n_cohorts, dim)`` cohort personas."""
        return self.cohorts.centroids_

    @property
    def n_cohorts(self) -> int:
        return int(len(self.cohorts.centroids_))

    def respondents(self) -> pd.DataFrame:
        """One row per respondent: id, cohort, map position, then metadata."""
        frame = pd.DataFrame(
            {
                "respondent_id": self.data.respondent_ids.astype(str),
                "cohort": self.labels.astype(np.int64),
                "map_x": self.latent_map.coords_[:, 0],
                "map_y": self.latent_map.coords_[:, 1],
                "n_answers": self.data.observed.sum(axis=1),
            }
        )
        if self.data.weights is not None:
            frame["weight"] = self.data.weights
        meta = self.data.metadata.reset_index(drop=True)
        meta = meta[[c for c in meta.columns if c not in frame.columns]]
        return pd.concat([frame, meta], axis=1)

    @property
    def fingerprint(self) -> str:
        """A short hash of the embeddings: what a soft prompt trained on this study records."""
        vectors = np.ascontiguousarray(self.embeddings, dtype=np.float32)
        return hashlib.sha256(vectors.tobytes() + str(vectors.shape).encode()).hexdigest()[:16]

    @property
    def steering_path(self) -> Path | None:
        """The saved soft-prompting model folder (``STUDY/steering``), or None if there is none."""
        if self.path is None:
            return None
        folder = self.path / STEERING
        return folder if (folder / "config.json").is_file() else None

    def centroid_coords(self) -> np.ndarray:
        """``(n_cohorts, 2)``: where each cohort persona sits on the map."""
        return self.latent_map.transform(self.centroids)

    def summary(self) -> dict:
        """What ``persona-engine info`` prints."""
        sizes = np.bincount(self.labels, minlength=self.n_cohorts)
        return {
            **self.data.summary(),
            "embedding": self.manifest.get("parameters", {}).get("model"),
            "dim": int(self.embeddings.shape[1]),
            "cohorts": self.n_cohorts,
            "cohort_sizes": sizes.tolist(),
            "cohort_stability_ari": self.manifest.get("fitted", {}).get("cohort_stability_ari"),
            "map": self.latent_map.method_,
            "created": self.manifest.get("created"),
            "seed": self.manifest.get("parameters", {}).get("random_state"),
        }

    # ---------------------------------------------------------------- save
    def save(self, path: str | Path) -> Path:
        """Write the study folder at ``path`` atomically and return the path."""
        path = Path(path)
        steering = self._steering_to_keep(path)

        def write(folder: Path) -> None:
            self._write_into(folder)
            if steering is not None:
                shutil.copytree(steering, folder / STEERING)

        write_folder_atomically(path, write, marker=MANIFEST, kind="study")
        self.path = path
        return path

    def _steering_to_keep(self, path: Path) -> Path | None:
        """A ``steering/`` folder (at ``path`` or where this study was loaded) trained on these embeddings."""
        for study_folder in (path, self.path):
            folder = None if study_folder is None else Path(study_folder) / STEERING
            if folder is None or not (folder / "config.json").is_file():
                continue
            try:
                trained_on = json.loads((folder / "config.json").read_text()).get("study_fingerprint")
            except (json.JSONDecodeError, UnicodeDecodeError, OSError):
                continue
            if trained_on == self.fingerprint:
                return folder
        return None

    def _write_into(self, folder: Path) -> None:
        write_json(folder / MANIFEST, self.manifest)
        write_json(folder / "questions.json", [_question_to_dict(q) for q in self.data.questions])
        _table_for_parquet(self.respondents()).to_parquet(folder / "respondents.parquet", index=False)
        save_arrays(folder / "answers.safetensors", {"answers": self.data.answers})
        save_component(folder / "embedding", self.embedder.get_config(), self.embedder.state_arrays())
        save_component(folder / "cohorts", self.cohorts.get_config(), self.cohorts.state_arrays())
        self.cohorts.k_choice_.to_parquet(folder / "cohorts" / "k_choice.parquet", index=False)
        self.stability.to_parquet(folder / "cohorts" / "stability.parquet", index=False)
        save_component(folder / "map", self.latent_map.get_config(), self.latent_map.state_arrays())
        if self.latent_map_3d is not None:
            save_component(folder / "map3d", self.latent_map_3d.get_config(), self.latent_map_3d.state_arrays())

    # ---------------------------------------------------------------- load
    @classmethod
    def load(cls, path: str | Path) -> "Study":
        """Read a study folder written by :meth:`save`."""
        path = Path(path)
        recover_interrupted_swap(path, marker=MANIFEST)
        # A soft prompt saved by another process (train-steering) may have been cut off mid-swap too.
        recover_interrupted_swap(path / STEERING, marker="config.json")
        if not (path / MANIFEST).is_file():
            raise DataError(
                "not a Persona Engine study folder (no manifest.json)",
                file=path, expected="a folder written by 'persona-engine fit'",
            )
        manifest = read_json(path / MANIFEST)
        version = manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise DataError(
                f"study format version {version} is not supported by this version of Persona Engine",
                file=path / MANIFEST, expected=f"format_version {FORMAT_VERSION}",
            )
        questions = tuple(_question_from_dict(q) for q in read_json(path / "questions.json"))
        table = read_table(path / "respondents.parquet")
        answers = load_arrays(path / "answers.safetensors")["answers"]
        derived = {"respondent_id", "cohort", "map_x", "map_y", "n_answers", "weight"}
        source = manifest.get("source", {})
        data = OpinionData(
            respondent_ids=table["respondent_id"].to_numpy(),
            questions=questions,
            answers=answers,
            metadata=table[[c for c in table.columns if c not in derived]],
            weights=table["weight"].to_numpy() if "weight" in table else None,
            source=Source(
                name=source.get("name", path.name),
                format=source.get("format", "study"),
                files=tuple(f["name"] for f in source.get("files", [])),
                weight_column=source.get("weight_column"),
            ),
        )
        embedder = embedder_from_state(*load_component(path / "embedding"))
        cohort_config, cohort_arrays = load_component(path / "cohorts")
        k_choice = path / "cohorts" / "k_choice.parquet"
        if not k_choice.is_file() and (path / "cohorts" / "selection.parquet").is_file():
            k_choice = path / "cohorts" / "selection.parquet"  # its name in studies saved before
        cohorts = CohortFinder.from_state(cohort_config, cohort_arrays, read_table(k_choice))
        latent_map = LatentMap.from_state(*load_component(path / "map"))
        stability = read_table(path / "cohorts" / "stability.parquet")
        latent_map_3d = (LatentMap.from_state(*load_component(path / "map3d"))
                         if (path / "map3d").is_dir() else None)
        return cls(data, embedder, cohorts, latent_map, stability, manifest, path, latent_map_3d)


def _question_to_dict(question: Question) -> dict:
    return {
        "id": question.id, "text": question.text, "options": list(question.options),
        "ordinal": question.ordinal,
        "option_values": None if question.option_values is None else list(question.option_values),
    }


def _question_from_dict(entry: dict) -> Question:
    return Question(
        id=entry["id"], text=entry["text"], options=tuple(entry["options"]),
        ordinal=bool(entry.get("ordinal", True)),
        option_values=None if entry.get("option_values") is None else tuple(entry["option_values"]),
    )


def _table_for_parquet(frame: pd.DataFrame) -> pd.DataFrame:
    """Mixed-type object columns (common in metadata) become strings parquet can hold."""
    frame = frame.copy()
    for column in frame.columns:
        if frame[column].dtype == object:
            frame[column] = frame[column].map(lambda v: None if pd.isna(v) else str(v))
    return frame
