"""A study: one dataset and everything fitted on it, saved as one folder.

:func:`fit_study` runs the pipeline top to bottom, like a paper's method
section: opinions → collaborative-filtering embeddings → cohorts → latent map.
:func:`fit_embedding_and_cohorts` is its first two stages alone, as a study's
saved ``parameters`` say: what the evaluations refit on their training answers.
:class:`Study` holds the result; ``save`` writes it as a folder of JSON,
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
    cohorts/                 config.json + model.safetensors + selection.parquet
                             (choice of k) + stability.parquet (per cohort)
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
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from persona_engine.embed import EMBEDDERS, embedder_from_state
from persona_engine.cohort_quality import cohort_stability
from persona_engine.cohort_space import CohortSpaceChoice, fit_cohorts
from persona_engine.cohorts import MIN_RESPONDENTS, CohortFinder
from persona_engine.errors import DataError
from persona_engine.exports import looks_like_formula
from persona_engine.ingest.polis import missing_comments
from persona_engine.latent_map import LatentMap
from persona_engine.study_folder import (
    load_arrays, load_component, read_json, read_table, recover_interrupted_swap, save_arrays,
    save_component, to_jsonable, write_folder_atomically, write_json,
)
from persona_engine.opinion_data import MISSING, OpinionData, Question, Source

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
STEERING = "steering"
"""Sub-folder holding the study's soft-prompting model."""

StudyProgress = Callable[[str, int, int], None]
"""``progress(stage, step, total)``: stage is 'embedding', 'cohorts' or 'map'."""


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
        self.cohorts.selection_.to_parquet(folder / "cohorts" / "selection.parquet", index=False)
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
        cohorts = CohortFinder.from_state(
            cohort_config, cohort_arrays, read_table(path / "cohorts" / "selection.parquet")
        )
        latent_map = LatentMap.from_state(*load_component(path / "map"))
        stability = read_table(path / "cohorts" / "stability.parquet")
        latent_map_3d = (LatentMap.from_state(*load_component(path / "map3d"))
                         if (path / "map3d").is_dir() else None)
        return cls(data, embedder, cohorts, latent_map, stability, manifest, path, latent_map_3d)


# ------------------------------------------------------------------- pipeline
def fit_study(
    data: OpinionData,
    *,
    model: str = "softmax",
    dim: int = 16,
    n_cohorts: int | str = "auto",
    cohort_method: str = "kmeans",
    cohort_space: str = "auto",
    min_cohort_size: int | None = None,
    map_3d: bool = False,
    random_state: int = 0,
    progress: StudyProgress | None = None,
    max_respondents: int | None = None,
) -> Study:
    """Fit embeddings, cohorts and the map on ``data`` and return the study.

    ``map_3d`` also lays out a 3-D map (another UMAP fit). ``cohort_space``:
    where cohorts are found, ``"auto"`` (chosen by held-out accuracy),
    ``"embedding"`` or ``"answers"`` (see :mod:`persona_engine.cohort_space`).

    ``model`` is ``"softmax"`` (the default collaborative filter) or
    ``"paper"`` (Li et al.'s MSE factorization of answers scaled to [0, 1]).
    The same data and ``random_state`` give the same study.

    On large studies some steps run on a random sample of the respondents
    (the choice of cohort space and of k, the stability refits: 3,000; the
    UMAP layout: 20,000, the rest placed among them); the manifest's
    ``subsampled`` says which. ``max_respondents`` sets one cap for all of
    them instead (mainly for tests).
    """
    _check_model(model)
    check_cohorts_findable(data)
    report = progress or (lambda stage, step, total: None)
    parameters = {"model": model, "dim": dim, "n_cohorts": n_cohorts, "cohort_method": cohort_method,
                  "cohort_space": cohort_space, "min_cohort_size": min_cohort_size, "map_3d": map_3d,
                  "random_state": random_state}
    cap = {} if max_respondents is None else {"max_respondents": max_respondents}

    embedder, cohorts, points, space = fit_embedding_and_cohorts(data, parameters, max_respondents=max_respondents,
                                                                 progress=report)
    # Weighted by answers: vectors resting on few answers pull the cohorts less.
    stability = cohort_stability(points, cohorts, random_state=random_state, sample_weight=data.observed.sum(axis=1),
                                 **cap)
    report("cohorts", 2, 2)

    report("map", 0, 1)
    embeddings = embedder.respondent_factors_
    latent_map = LatentMap(random_state=random_state, **cap).fit(embeddings)
    latent_map_3d = LatentMap(n_components=3, random_state=random_state, **cap).fit(embeddings) if map_3d else None
    report("map", 1, 1)

    manifest = _manifest(data, parameters, embedder, cohorts, space, stability, [latent_map, latent_map_3d])
    return Study(data, embedder, cohorts, latent_map, stability.per_cohort, manifest,
                 latent_map_3d=latent_map_3d)


def fit_embedding_and_cohorts(
    answers: OpinionData | np.ndarray,
    parameters: Mapping[str, object],
    *,
    n_options: np.ndarray | None = None,
    questions: Sequence[Question] | None = None,
    max_respondents: int | None = None,
    progress: StudyProgress | None = None,
) -> tuple[object, CohortFinder, np.ndarray, CohortSpaceChoice]:
    """Fit the collaborative filter on ``answers`` and find the cohorts, as a study's saved parameters say.

    Parameters
    ----------
    answers:
        :class:`OpinionData`, or its answer matrix ``(n_respondents,
        n_questions)`` (-1 missing) with ``n_options`` ``(n_questions,)``
        and the ``questions`` (which ``cohort_space`` may read).
    parameters:
        As a study manifest's ``"parameters"`` (the keywords of
        :func:`fit_study`): ``model``, ``dim``, ``n_cohorts``,
        ``cohort_method``, ``cohort_space``, ``min_cohort_size``,
        ``random_state``, each missing one taking :func:`fit_study`'s
        default; others (``map_3d``) are not read here.
    max_respondents:
        One cap on the respondents the choices of cohort space and of k are
        made on (``None``: their own defaults).
    progress:
        ``progress(stage, step, total)``: ``"embedding"`` as the filter
        trains, then ``"cohorts"`` at 0 and 1 of 2 steps (the second being
        :func:`fit_study`'s stability refits).

    Returns
    -------
    ``(embedder, cohorts, points, space)``: the fitted filter
    (``respondent_factors_`` ``(n_respondents, dim)``), the fitted
    :class:`CohortFinder`, the points it clustered ``(n_respondents, d)``
    and the :class:`~persona_engine.cohort_space.CohortSpaceChoice`.
    """
    given = {**_FIT_DEFAULTS, **{k: v for k, v in parameters.items() if k in _FIT_DEFAULTS}}
    report = progress or (lambda stage, step, total: None)
    matrix = answers.answers if isinstance(answers, OpinionData) else np.asarray(answers)
    if questions is None and isinstance(answers, OpinionData):
        questions = answers.questions
    seed = given["random_state"]
    embedder = _check_model(given["model"])(dim=given["dim"], random_state=seed).fit(
        answers, n_options, progress=None if progress is None else (
            lambda step, total, info: progress("embedding", step, total)))

    report("cohorts", 0, 2)
    cap = {} if max_respondents is None else {"max_respondents": max_respondents}
    smallest = {} if given["min_cohort_size"] is None else {"min_cohort_size": given["min_cohort_size"]}
    finder = CohortFinder(method=given["cohort_method"], n_cohorts=given["n_cohorts"], random_state=seed,
                          **smallest, **cap)
    cohorts, points, space = fit_cohorts(embedder, matrix, finder, given["cohort_space"], questions=questions,
                                         random_state=seed, **cap)
    report("cohorts", 1, 2)
    return embedder, cohorts, points, space


_FIT_DEFAULTS = {"model": "softmax", "dim": 16, "n_cohorts": "auto", "cohort_method": "kmeans",
                 "cohort_space": "auto", "min_cohort_size": None, "random_state": 0}
"""What :func:`fit_embedding_and_cohorts` reads of a study's parameters, with :func:`fit_study`'s defaults."""


def _check_model(model: str):
    """The embedder class called ``model``; a :class:`DataError` naming the choices if there is none."""
    if model not in EMBEDDERS:
        raise DataError(f"unknown embedding model '{model}'", expected=" or ".join(EMBEDDERS))
    return EMBEDDERS[model]


def _manifest(data: OpinionData, parameters: dict, embedder, cohorts: CohortFinder, space, stability,
              maps: list) -> dict:
    """What ``manifest.json`` holds: provenance, the parameters, what was fitted, which steps were subsampled."""
    return {
        "format_version": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": _describe_source(data.source),
        "data": data.summary(),
        "parameters": parameters,
        "fitted": {
            "embedding_reg": float(embedder.reg_),
            "embedding_validation": to_jsonable(embedder.validation_scores_),
            "n_cohorts": int(len(cohorts.centroids_)),
            "cohort_space": space.space,
            "cohort_space_scores": {k: round(v, 4) for k, v in space.mean_scores().items()},
            "cohort_stability_ari": round(stability.ari, 4),
            "map_method": maps[0].method_,
        },
        "subsampled": _subsamples(data.n_respondents, space, cohorts, stability, maps),
        "versions": _library_versions(),
    }


def _subsamples(n: int, space, cohorts: CohortFinder, stability, maps) -> dict[str, str]:
    """Which steps ran on a random sample of the respondents, in words (empty: none did)."""
    used = {
        "cohort_space": (space.n_respondents, "choice of cohort space"),
        "cohort_selection": (getattr(cohorts, "selection_respondents_", n), "choice of the number of cohorts"),
        "cohort_stability": (stability.n_respondents, "stability of the cohorts"),
        **{f"map{'3d' if m.n_components == 3 else ''}": (m.layout_respondents_, f"UMAP layout of the "
           f"{m.n_components}-D map (the others placed among their nearest neighbours)")
           for m in maps if m is not None and m.method_ == "umap"},
    }
    return {step: f"{what} on a random {m:,} of {n:,} respondents"
            for step, (m, what) in used.items() if 0 < m < n}


def check_cohorts_findable(data: OpinionData) -> None:
    """Raise :class:`DataError` saying, in the survey's words, why ``data`` cannot have cohorts.

    Checked before anything is fitted, so that a wrong file gets its real
    reason rather than the cohort finder's "all vectors are identical".
    """
    error = missing_comments(data.source.files) if data.source.format == "wide" else None
    if error is not None:
        raise error
    where = data.source.files[0] if data.source.files else data.source.name
    answered = data.observed.sum(axis=0)
    shared = [int(np.bincount(col[col != MISSING], minlength=1).max()) if count else 0
              for col, count in zip(data.answers.T, answered)]
    if max(shared) < 2 and answered.max() >= 2:
        raise DataError(_no_shared_answer(data, answered), file=where,
                        expected="closed questions: columns whose few options many respondents share")
    if data.n_respondents < MIN_RESPONDENTS:
        raise DataError(f"{data.n_respondents} respondents is too few to find cohorts "
                        f"(at least {MIN_RESPONDENTS})", file=where)
    if len(np.unique(data.answers, axis=0)) < 2:
        raise DataError(f"all {data.n_respondents} respondents gave the same answers to every question, "
                        "so there are no cohorts to find", file=where, expected="respondents whose answers differ")


def _no_shared_answer(data: OpinionData, answered: np.ndarray) -> str:
    """Why no column reads like a question: each answer in it was given by one respondent only."""
    j = int(np.argmax(answered))
    question, n = data.questions[j], int(answered[j])
    labels = [question.options[a] for a in np.unique(data.answers[:, j][data.answers[:, j] != MISSING])]
    longest = max(labels, key=len)
    formulas = [label for label in labels if looks_like_formula(label)]
    detail = ""
    if len(longest) > 1000:
        detail = f" (one of them {len(longest):,} characters long)"
    elif formulas:
        detail = f" (such as '{formulas[0][:40]}', which looks like a spreadsheet formula)"
    return (f"no question has an answer that two respondents share: question '{question.id}' has {n} "
            f"different answers in {n} rows{detail}, so it reads like ids or free text, not a question")


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


def _describe_source(source: Source) -> dict:
    files = []
    for name in source.files:
        entry = {"name": str(name)}
        file = Path(name)
        if file.is_file():
            entry["bytes"] = file.stat().st_size
            entry["sha256"] = _sha256(file)
        files.append(entry)
    described = {"name": source.name, "format": source.format, "files": files}
    if source.weight_column is not None:
        described["weight_column"] = source.weight_column
    return described


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _library_versions() -> dict:
    versions = {}
    for package in ("persona-engine", "numpy", "pandas", "scikit-learn", "umap-learn", "torch", "safetensors"):
        try:
            versions[package] = importlib_metadata.version(package)
        except importlib_metadata.PackageNotFoundError:
            versions[package] = None
    return versions
