"""A study's soft-prompting model: trained on its answers, saved in its folder.

:func:`train_steering` trains a :class:`~persona_engine.steer.SoftPromptModel`
on a saved study's *training* answers and writes it as ``STUDY/steering/``;
:func:`load_steering` reads it back for an LLM. The folder holds::

    config.json, model.safetensors   the soft-prompting model (save_pretrained); the config
                                     records the base LLM, the study's fingerprint and
                                     how the answers were split
    holdout.safetensors              test_mask (n_respondents, n_questions) uint8: the
                                     answers the model never saw
    training.json                    one entry per training run: its options (the
                                     SteeringSettings' to_dict()), loss history, how
                                     it stopped

Held-out answers stay held out: by default
:func:`~persona_engine.split.holdout_split` with a fixed seed hides 20% of
each respondent's answers, and a resumed run reuses the saved mask. The
evaluation can pass its own ``holdout`` (a mask, a split, or question ids).

While training, the best model so far is checkpointed in
``STUDY/.steering-checkpoint/``; a run that is cancelled still saves its best
weights to ``steering/``, and ``resume=True`` continues from the checkpoint
(or from ``steering/``).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from safetensors.numpy import load_file, save_file

from persona_engine.errors import DataError
from persona_engine.opinion_data import MISSING
from persona_engine.split import HoldoutSplit, holdout_split
from persona_engine.steer.settings import SteeringSettings
from persona_engine.steer.soft_prompt import CONFIG_NAME, WEIGHTS_NAME, SoftPromptModel
from persona_engine.steer.training import TrainingResult, estimate_training_seconds, train_soft_prompt
from persona_engine.study import STEERING, Study
from persona_engine.study_folder import recover_interrupted_swap, to_jsonable, write_folder_atomically

HOLDOUT_FRACTION = 0.2
HOLDOUT_SEED = 0
HOLDOUT_FILE = "holdout.safetensors"
TRAINING_FILE = "training.json"
CHECKPOINT = ".steering-checkpoint"


def study_holdout(study: Study, holdout=None, *, fraction: float = HOLDOUT_FRACTION,
                  random_state: int = HOLDOUT_SEED) -> tuple[np.ndarray, dict]:
    """The answers to keep away from training, and how they were chosen.

    Parameters
    ----------
    holdout:
        ``None``: :func:`~persona_engine.split.holdout_split` of the study's
        answers with ``fraction`` and ``random_state``; a
        :class:`~persona_engine.split.HoldoutSplit` or a bool mask
        ``(n_respondents, n_questions)`` of held-out cells; or a list of
        question ids whose answers are all held out (``[]`` holds out nothing).

    Returns
    -------
    ``(test_mask, description)``: the bool mask ``(n_respondents,
    n_questions)`` and a JSON-able dict for the soft prompt's config.
    """
    answers = study.data.answers
    if holdout is None:
        split = holdout_split(answers, fraction=fraction, random_state=random_state)
        return split.test_mask, {"method": "holdout_split", "fraction": fraction, "min_answers": 5,
                                 "random_state": random_state}
    if isinstance(holdout, HoldoutSplit):
        holdout = holdout.test_mask
    if isinstance(holdout, np.ndarray) and holdout.dtype == bool:
        if holdout.shape != answers.shape:
            raise DataError(f"a held-out mask of shape {holdout.shape}", expected=f"shape {answers.shape}")
        return holdout.copy(), {"method": "mask"}
    if isinstance(holdout, (list, tuple)) and all(isinstance(q, str) for q in holdout):
        mask = np.zeros(answers.shape, dtype=bool)
        for question_id in holdout:
            mask[:, study.data.question_index(question_id)] = True
        return mask & (answers != MISSING), {"method": "questions", "questions": list(holdout)}
    raise DataError(f"cannot hold out {type(holdout).__name__}",
                    expected="None, a HoldoutSplit, a bool mask of answers, or a list of question ids")


def train_steering(
    study: Study,
    llm,
    settings: SteeringSettings | None = None,
    *,
    holdout=None,
    progress: Callable[[int, int, dict], None] | None = None,
    cancel=None,
    resume: bool = False,
    **overrides,
) -> tuple[SoftPromptModel, TrainingResult]:
    """Train the study's soft-prompting model for ``llm`` and save it as ``STUDY/steering``.

    Parameters
    ----------
    study:
        A saved :class:`~persona_engine.study.Study` (it needs a folder).
    llm:
        The frozen base model (:func:`persona_engine.llm.load_llm`).
    settings, overrides:
        How to train: :class:`~persona_engine.steer.settings.SteeringSettings`
        (``None``: its defaults), with any of its fields given as keywords
        instead (``steps=200``); ``kind=None`` keeps the settings' kind. The
        collaborative filter that ``teacher_weight`` and ``teacher_fill``
        call on is the study's own (its ``predict_proba``). A resumed run
        keeps the saved model's ``kind``, ``n_virtual_tokens`` and
        ``placement`` (a ``kind`` keyword that disagrees is refused).
    holdout:
        Answers never trained on (see :func:`study_holdout`). Not allowed with
        ``resume``, which reuses the saved ones.
    progress, cancel:
        As for :func:`~persona_engine.steer.train_soft_prompt`.
    resume:
        Continue from the checkpoint of an interrupted run, else from the
        saved ``steering/`` (the optimizer starts afresh).

    Returns
    -------
    The trained model (best validated weights) and the run's
    :class:`~persona_engine.steer.TrainingResult`. The settings the run
    used are recorded in ``training.json`` (:func:`training_runs`).
    """
    asked_kind = overrides.get("kind")
    settings = _settings(settings, overrides)
    folder, checkpoint = _study_folder(study) / STEERING, _study_folder(study) / CHECKPOINT
    if resume:
        spm, test_mask, runs = _resumed(study, llm, asked_kind, holdout)
        settings = replace(settings, kind=spm.config.kind, n_virtual_tokens=spm.config.n_virtual_tokens,
                           placement=spm.config.placement)
    else:
        spm, test_mask, runs = _fresh(study, llm, settings, holdout)

    if not resume:  # a checkpoint left by an older run is not this run's
        shutil.rmtree(checkpoint, ignore_errors=True)
    spm.save_pretrained(checkpoint)  # the starting point is the first checkpoint
    _write_holdout(checkpoint, test_mask)
    started, clock = datetime.now(timezone.utc), time.perf_counter()
    result = train_soft_prompt(llm, spm, study.embeddings, study.data.questions,
                               **_training_inputs(study, settings, test_mask),
                               progress=progress, cancel=cancel, checkpoint=checkpoint)
    runs.append({"started": started.isoformat(timespec="seconds"), "resumed": resume,
                 "seconds": round(time.perf_counter() - clock, 2),
                 "llm_dtype": str(llm.dtype).removeprefix("torch."), "device": str(llm.device),
                 "options": settings.to_dict(), "result": to_jsonable(asdict(result))})
    _write_runs(checkpoint, runs)

    def write(target: Path) -> None:
        spm.save_pretrained(target)
        _write_holdout(target, test_mask)
        _write_runs(target, runs)

    write_folder_atomically(folder, write, marker=CONFIG_NAME, kind="soft-prompting model folder")
    shutil.rmtree(checkpoint, ignore_errors=True)
    return spm, result


def _settings(settings: SteeringSettings | None, overrides: dict) -> SteeringSettings:
    """``settings`` (or the defaults) with ``overrides`` of its fields; a ``kind`` of ``None`` changes nothing."""
    settings = settings or SteeringSettings()
    unknown = set(overrides) - set(settings.to_dict())
    if unknown:
        raise TypeError(f"unexpected keyword arguments {sorted(unknown)}; the steering settings are "
                        f"{list(settings.to_dict())}")
    return replace(settings, **{k: v for k, v in overrides.items() if not (k == "kind" and v is None)})


def _training_inputs(study: Study, settings: SteeringSettings, test_mask: np.ndarray) -> dict:
    """:func:`~persona_engine.steer.train_soft_prompt`'s answers, teacher and options for ``settings``."""
    train_answers = np.where(test_mask, MISSING, study.data.answers).astype(np.int16)
    teacher = study.embedder.predict_proba(study.embeddings) if settings.teacher_weight > 0 else None
    # cells nobody answered: held-out answers are answers, so they are never among these
    unanswered = study.data.answers == MISSING if settings.teacher_fill else None
    return dict(answers=train_answers, teacher=teacher, teacher_cells=unanswered, **settings.training_options())


def _fresh(study: Study, llm, settings: SteeringSettings, holdout):
    """A new soft prompt for ``llm``, the held-out mask, and no earlier runs."""
    test_mask, description = study_holdout(study, holdout)
    spm = SoftPromptModel.for_llm(llm, study.embeddings.shape[1], kind=settings.kind,
                                  n_virtual_tokens=settings.n_virtual_tokens, placement=settings.placement,
                                  study=study.data.source.name, random_state=settings.random_state)
    spm.config.study_fingerprint = study.fingerprint
    spm.config.holdout = description
    return spm, test_mask, []


def _resumed(study: Study, llm, kind, holdout):
    """The interrupted run's checkpoint, else the saved soft prompt, with its mask and runs."""
    if holdout is not None:
        raise DataError("a resumed run keeps its held-out answers", expected="no holdout together with resume")
    folder, checkpoint = study.steering_path, _study_folder(study) / CHECKPOINT
    start = checkpoint if (checkpoint / WEIGHTS_NAME).is_file() else folder
    if start is None:
        raise DataError("nothing to resume: this study has no steering yet", file=_study_folder(study),
                        expected="a first run without resume")
    spm = _load_checked(start, study, llm)
    if kind is not None and kind != spm.config.kind:
        raise DataError(f"the saved soft prompt is '{spm.config.kind}', not '{kind}'",
                        expected="the same kind, or a new run without resume")
    return spm, _read_holdout(start), _read_runs(start) or _read_runs(folder)


def estimate_steering_seconds(study: Study, llm, settings: SteeringSettings | None = None, *, holdout=None,
                              resume: bool = False, **overrides) -> float:
    """Seconds :func:`train_steering` would take with the same arguments, from two timed steps."""
    settings = _settings(settings, overrides)
    saved = study.steering_path if resume else None
    if saved is not None:
        spm, test_mask = SoftPromptModel.from_pretrained(saved, llm), _read_holdout(saved)
    else:
        spm = SoftPromptModel.for_llm(llm, study.embeddings.shape[1], kind=settings.kind,
                                      n_virtual_tokens=settings.n_virtual_tokens, placement=settings.placement,
                                      random_state=settings.random_state)
        test_mask, _ = study_holdout(study, holdout)
    return estimate_training_seconds(llm, spm, study.embeddings, study.data.questions,
                                     **_training_inputs(study, settings, test_mask))


def load_steering(study: Study | str | Path, llm) -> SoftPromptModel:
    """The study's trained soft-prompting model, for ``llm`` (refused for another base model)."""
    study = study if isinstance(study, Study) else Study.load(study)
    return _load_checked(steering_folder(study), study, llm).eval()


def steering_folder(study: Study) -> Path:
    """``STUDY/steering``; a :class:`DataError` that says how to make it if the study has none."""
    folder = study.steering_path
    if folder is None:
        raise DataError("this study has no soft-prompting model yet", file=_study_folder(study),
                        expected="one trained with 'persona-engine train-steering STUDY'")
    return folder


def steering_base_model(study: Study) -> str:
    """The name of the LLM the study's soft prompt was trained for."""
    return json.loads((steering_folder(study) / CONFIG_NAME).read_text()).get("base_model", "")


def load_holdout(study: Study) -> np.ndarray:
    """The answers the study's steering never saw: bool mask ``(n_respondents, n_questions)``."""
    return _read_holdout(steering_folder(study))


def training_runs(study: Study) -> list[dict]:
    """The saved record of each training run (options, history, how it stopped), oldest first."""
    folder = study.steering_path
    return [] if folder is None else _read_runs(folder)


# ------------------------------------------------------------------ files
def _study_folder(study: Study) -> Path:
    if study.path is None:
        raise DataError("the study has not been saved yet", expected="study.save(folder) before steering")
    return Path(study.path)


def _load_checked(folder: Path, study: Study, llm) -> SoftPromptModel:
    recover_interrupted_swap(folder, marker=CONFIG_NAME)
    spm = SoftPromptModel.from_pretrained(folder, llm)
    if spm.config.study_fingerprint != study.fingerprint:
        raise DataError("this soft prompt was trained on other embeddings than the study's "
                        "(the study was refitted since)", file=folder,
                        expected="a soft prompt retrained with 'persona-engine train-steering'")
    return spm


def _write_holdout(folder: Path, test_mask: np.ndarray) -> None:
    save_file({"test_mask": np.ascontiguousarray(test_mask, dtype=np.uint8)}, str(folder / HOLDOUT_FILE))


def _read_holdout(folder: Path) -> np.ndarray:
    file = folder / HOLDOUT_FILE
    if not file.is_file():
        raise DataError("the soft prompt's held-out answers are missing", file=file)
    return load_file(str(file))["test_mask"].astype(bool)


def _write_runs(folder: Path, runs: Sequence[dict]) -> None:
    (folder / TRAINING_FILE).write_text(json.dumps({"runs": list(runs)}, indent=2) + "\n")


def _read_runs(folder: Path | None) -> list[dict]:
    file = None if folder is None else folder / TRAINING_FILE
    if file is None or not file.is_file():
        return []
    try:
        return list(json.loads(file.read_text()).get("runs", []))
    except (json.JSONDecodeError, AttributeError):
        return []


