"""Fitting a study: the pipeline from opinions to embeddings, cohorts and the map.

:func:`fit_study` runs the pipeline top to bottom, like a paper's method
section: opinions → collaborative-filtering embeddings (matrix factorization)
→ k-means cohorts → latent map. :func:`fit_embedding_and_cohorts` is its first
two stages alone, as a study's saved ``parameters`` say: what the evaluations
refit on their training answers.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from persona_engine.cohorts.kmeans import MIN_RESPONDENTS, CohortFinder
from persona_engine.cohorts.space import CohortSpaceChoice, fit_cohorts
from persona_engine.cohorts.stability import cohort_stability
from persona_engine.embed.factorization import EMBEDDERS
from persona_engine.errors import DataError
from persona_engine.exports import looks_like_formula
from persona_engine.ingest.polis import missing_comments
from persona_engine.latent_map import LatentMap
from persona_engine.opinion_data import MISSING, OpinionData, Question, Source
from persona_engine.progress import as_stage, no_progress
from persona_engine.study.folder import to_jsonable
from persona_engine.study.saved import FORMAT_VERSION, Study, StudyProgress


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
    ``"embedding"`` or ``"answers"`` (see :mod:`persona_engine.cohorts.space`).

    ``model`` is ``"softmax"`` (the default collaborative filter) or
    ``"paper"`` (Li et al.'s MSE factorization of answers scaled to [0, 1]).
    The same data and ``random_state`` give the same study.

    On large studies some steps run on a random sample of the respondents
    (the choice of cohort space and of k, the stability refits: 3,000; the
    UMAP layout: 20,000, the rest placed among them); the manifest's
    ``subsampled`` says which. ``max_respondents`` sets one cap for all of
    them instead (mainly for tests).

    ``progress(stage, done, total, info)`` (:mod:`persona_engine.progress`)
    reports the stages ``"embedding"``, ``"cohorts"`` and ``"map"`` in turn
    (see :func:`fit_embedding_and_cohorts`).
    """
    _check_model(model)
    check_cohorts_findable(data)
    report = progress or no_progress
    parameters = {"model": model, "dim": dim, "n_cohorts": n_cohorts, "cohort_method": cohort_method,
                  "cohort_space": cohort_space, "min_cohort_size": min_cohort_size, "map_3d": map_3d,
                  "random_state": random_state}
    cap = {} if max_respondents is None else {"max_respondents": max_respondents}

    embedder, cohorts, points, space = fit_embedding_and_cohorts(data, parameters, max_respondents=max_respondents,
                                                                 progress=report)
    # Weighted by answers: vectors resting on few answers pull the cohorts less.
    stability = cohort_stability(points, cohorts, random_state=random_state, sample_weight=data.observed.sum(axis=1),
                                 **cap)
    report("cohorts", 2, 2, {})

    report("map", 0, 1, {})
    embeddings = embedder.respondent_factors_
    latent_map = LatentMap(random_state=random_state, **cap).fit(embeddings)
    latent_map_3d = LatentMap(n_components=3, random_state=random_state, **cap).fit(embeddings) if map_3d else None
    report("map", 1, 1, {})

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
        ``progress(stage, done, total, info)`` (:mod:`persona_engine.progress`):
        ``"embedding"`` after each of the filter's training passes (``info``
        its history row), then ``"cohorts"`` at 0 and 1 of 2 steps (the
        second being :func:`fit_study`'s stability refits).

    Returns
    -------
    ``(embedder, cohorts, points, space)``: the fitted filter
    (``respondent_factors_`` ``(n_respondents, dim)``), the fitted
    :class:`CohortFinder`, the points it clustered ``(n_respondents, d)``
    and the :class:`~persona_engine.cohorts.space.CohortSpaceChoice`.
    """
    given = {**FIT_DEFAULTS, **{k: v for k, v in parameters.items() if k in FIT_DEFAULTS}}
    report = progress or no_progress
    matrix = answers.answers if isinstance(answers, OpinionData) else np.asarray(answers)
    if questions is None and isinstance(answers, OpinionData):
        questions = answers.questions
    seed = given["random_state"]
    embedder = _check_model(given["model"])(dim=given["dim"], random_state=seed).fit(
        answers, n_options, progress=as_stage(progress, "embedding"))

    report("cohorts", 0, 2, {})
    cap = {} if max_respondents is None else {"max_respondents": max_respondents}
    smallest = {} if given["min_cohort_size"] is None else {"min_cohort_size": given["min_cohort_size"]}
    finder = CohortFinder(method=given["cohort_method"], n_cohorts=given["n_cohorts"], random_state=seed,
                          **smallest, **cap)
    cohorts, points, space = fit_cohorts(embedder, matrix, finder, given["cohort_space"], questions=questions,
                                         random_state=seed, **cap)
    report("cohorts", 1, 2, {})
    return embedder, cohorts, points, space


FIT_DEFAULTS = {"model": "softmax", "dim": 16, "n_cohorts": "auto", "cohort_method": "kmeans",
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
        "cohort_k_choice": (getattr(cohorts, "k_choice_respondents_", n), "choice of the number of cohorts"),
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
