"""A study's soft-prompting models kept in its folder: installed, candidate, previous; loading them.

A soft-prompting model folder holds::

    config.json, model.safetensors   the soft-prompting model (save_pretrained); the config
                                     records the base LLM, the study's fingerprint and
                                     how the answers were split
    holdout.safetensors              test_mask (n_respondents, n_questions) uint8: the
                                     answers the model never saw
    training.json                    one entry per training run: its options (the
                                     SteeringSettings' to_dict()), loss history, how it
                                     stopped, its validation accuracy and the baselines
                                     it is judged against, and what became of it

A training run (:func:`~persona_engine.steer.study_steering.train_steering`)
must never poison a study. The study keeps up to three such folders:

``STUDY/steering/``
    The installed model, the one chat and the evaluation use.
``STUDY/steering.candidate/``
    The last run, when it was not installed: it was cancelled (its best
    weights so far), or it finished without beating each question's
    majority on its validation answers. :func:`keep_candidate` installs it
    if, and only if, it beats that baseline; :func:`discard_candidate`
    deletes it; ``resume=True`` continues it.
``STUDY/steering.previous/``
    The model that the last installation replaced; :func:`restore_previous`
    puts it back (and keeps the replaced one as the previous in turn).

A run that finishes and beats the baseline (its validation letter accuracy
is above that of always answering each question's most common training
answer, on the same validation answers) is installed, the old model first
copied to ``steering.previous/``; every folder is written beside its
destination and swapped in (:func:`~persona_engine.study.folder.write_folder_atomically`),
and any look at the study first finishes a swap or a restore that a crash
cut short. :func:`steering_status` says what the study has and how each
model scored; :func:`load_steering` reads the installed model back for an
LLM. While training, the best model so far is checkpointed in
``STUDY/.steering-checkpoint/``.

The folder's files (``read_runs``, ``write_holdout``...), installing and
recovering are public for :mod:`~persona_engine.steer.study_steering`, which
writes these folders; a reader of a study needs only the loaders above them.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from safetensors.numpy import load_file, save_file

from persona_engine.errors import DataError
from persona_engine.opinion_data import MISSING
from persona_engine.steer.examples import answer_examples, validation_split
from persona_engine.steer.settings import SteeringSettings
from persona_engine.steer.soft_prompt import CONFIG_NAME, WEIGHTS_NAME, SoftPromptModel
from persona_engine.steer.training import majority_baseline
from persona_engine.study import STEERING, Study
from persona_engine.study.folder import copy_folder_atomically, recover_interrupted_swap, write_folder_atomically

HOLDOUT_FILE = "holdout.safetensors"
TRAINING_FILE = "training.json"
CHECKPOINT = ".steering-checkpoint"
CANDIDATE = "steering.candidate"
"""Sub-folder of the last run when it was not installed (see the module docstring)."""
PREVIOUS = "steering.previous"
"""Sub-folder of the model the last installation replaced."""
RESTORING = ".steering.restoring"
"""The previous model on its way back to ``steering/``; a crash mid-restore leaves it, and it is finished."""
FOLDER_KIND = "soft-prompting model folder"


def load_steering(study: Study | str | Path, llm, *, refuse_below_chance: bool = False) -> SoftPromptModel:
    """The study's installed soft-prompting model, for ``llm`` (refused for another base model).

    ``refuse_below_chance``: raise a :class:`DataError` instead when the
    model's validation accuracy is at or below chance (see
    :meth:`SteeringScore.at_or_below_chance`; :func:`steering_status` tells
    without loading).
    """
    study = study if isinstance(study, Study) else Study.load(study)
    recover_steering(saved_study_folder(study))
    folder = steering_folder(study)
    if refuse_below_chance:
        score = steering_status(study).active
        if score is not None and score.at_or_below_chance:
            raise DataError(f"the study's soft-prompting model is no better than chance: {score.summary()}",
                            file=folder, expected="a retrained model, or the previous one restored")
    return load_checked_model(folder, study, llm).eval()


def steering_folder(study: Study) -> Path:
    """``STUDY/steering``; a :class:`DataError` that says how to make it if the study has none."""
    folder = study.steering_path
    if folder is None:
        raise DataError("this study has no soft-prompting model yet", file=saved_study_folder(study),
                        expected="one trained with 'persona-engine train-steering STUDY'")
    return folder


def steering_base_model(study: Study) -> str:
    """The name of the LLM the study's soft prompt was trained for."""
    return _base_model(steering_folder(study))


def load_holdout(study: Study) -> np.ndarray:
    """The answers the study's steering never saw: bool mask ``(n_respondents, n_questions)``."""
    return read_holdout(steering_folder(study))


def training_runs(study: Study, model: str = "installed") -> list[dict]:
    """The saved record of each run of a model (options, history, scores, outcome), oldest first.

    ``model``: ``"installed"`` (``STUDY/steering/``), ``"candidate"`` or ``"previous"``.
    """
    folders = {"installed": STEERING, "candidate": CANDIDATE, "previous": PREVIOUS}
    if model not in folders:
        raise DataError(f"no {model!r} soft prompt", expected=" or ".join(folders))
    return [] if study.path is None else read_runs(Path(study.path) / folders[model])


# ------------------------------------------------------------- the model's versions
@dataclass(frozen=True)
class SteeringScore:
    """How one saved soft-prompting model did on the validation answers of its last run.

    Accuracies are shares of ``n_val`` validation answers (held back from
    the training answers for early stopping, never the held-out ones); NaN
    where unknown (a run without validation, or one cancelled before its
    first check).
    """

    folder: Path
    base_model: str
    stopped: str
    """How its last run stopped: ``"finished"``, ``"early_stopping"`` or ``"cancelled"``."""
    steps: int
    accuracy: float
    """Letter accuracy of the model's weights."""
    majority: float
    """Always answering each question's most common training answer: the baseline to beat."""
    chance: float
    """Guessing: ``1 / n_options`` of each answer's question, averaged."""
    n_val: int
    why_not_installed: str = ""
    """For a candidate: why its run was not installed."""

    @property
    def beats_majority(self) -> bool:
        return math.isfinite(self.accuracy) and math.isfinite(self.majority) and self.accuracy > self.majority

    @property
    def at_or_below_chance(self) -> bool:
        return math.isfinite(self.accuracy) and math.isfinite(self.chance) and self.accuracy <= self.chance

    @property
    def validated(self) -> bool:
        return math.isfinite(self.accuracy) and math.isfinite(self.majority)

    def summary(self) -> str:
        """One line: its validation accuracy against the majority baseline and chance."""
        if not self.validated:
            return f"no validation accuracy ({self.stopped} after {self.steps} steps)"
        return (f"validation accuracy {self.accuracy:.3f} against {self.majority:.3f} for always giving each "
                f"question's majority answer (chance {self.chance:.3f}; {self.n_val} answers)")

    def shortfall(self) -> str:
        """Why the model cannot be installed, or ``""`` if it can."""
        if self.beats_majority:
            return ""
        if not self.validated:
            return f"it has {self.summary()}, so nothing shows it beats each question's majority answer"
        return (f"its validation accuracy {self.accuracy:.3f} is not above the {self.majority:.3f} of always "
                f"giving each question's majority answer (chance {self.chance:.3f})")


@dataclass(frozen=True)
class SteeringStatus:
    """What a study has of soft-prompting models (:func:`steering_status`); ``None`` where it has none."""

    active: SteeringScore | None
    """The installed model (``STUDY/steering/``), the one chat uses."""
    candidate: SteeringScore | None
    """The last run, when it was not installed (``STUDY/steering.candidate/``)."""
    previous: SteeringScore | None
    """The model the last installation replaced (``STUDY/steering.previous/``)."""
    interrupted: bool = False
    """A crashed run left a checkpoint (``resume=True`` continues it)."""


def steering_status(study: Study) -> SteeringStatus:
    """The study's installed, candidate and previous soft-prompting models and their validation scores.

    Reads the folders' ``training.json`` only (no LLM). For runs recorded
    before the baselines were, the majority and chance accuracies are
    recomputed from the run's recorded options and held-out answers.
    """
    root = saved_study_folder(study)
    recover_steering(root)
    active, candidate, previous = (_folder_score(root / name, study) for name in (STEERING, CANDIDATE, PREVIOUS))
    return SteeringStatus(active, candidate, previous, interrupted=(root / CHECKPOINT / WEIGHTS_NAME).is_file())


def keep_candidate(study: Study) -> SteeringScore:
    """Install the candidate (``STUDY/steering.candidate/``) if it beats each question's majority.

    The installed model it replaces becomes ``STUDY/steering.previous/``.
    Raises a :class:`DataError` giving its accuracy against the majority
    baseline when it does not beat it, or when there is no candidate.
    """
    root = saved_study_folder(study)
    recover_steering(root)
    candidate = root / CANDIDATE
    score = _folder_score(candidate, study)
    if score is None:
        raise DataError("there is no candidate soft prompt to keep", file=candidate,
                        expected="a cancelled or not-installed training run")
    if not score.beats_majority:
        raise DataError(f"the candidate soft prompt is not installed: {score.shortfall()}", file=candidate,
                        expected="a run that beats each question's majority answer: train longer, or "
                                 "continue this one (resume), then keep it")
    runs = read_runs(candidate)
    runs[-1] = {**runs[-1], "outcome": "kept"}

    def write(target: Path) -> None:
        shutil.copytree(candidate, target, dirs_exist_ok=True, copy_function=shutil.copy)
        write_runs(target, runs)

    install_model(root, write)
    shutil.rmtree(candidate, ignore_errors=True)
    return replace(score, folder=root / STEERING, why_not_installed="")


def discard_candidate(study: Study) -> bool:
    """Delete the candidate soft prompt; whether there was one."""
    candidate = saved_study_folder(study) / CANDIDATE
    found = candidate.is_dir()
    shutil.rmtree(candidate, ignore_errors=True)
    return found


def restore_previous(study: Study) -> SteeringScore:
    """Put the previous soft prompt back as ``STUDY/steering/``; the replaced one becomes the previous.

    Restoring twice swaps them back. Raises a :class:`DataError` if there is no previous model.
    """
    root = saved_study_folder(study)
    recover_steering(root)
    active, previous, staged = root / STEERING, root / PREVIOUS, root / RESTORING
    if _folder_score(previous, study) is None:
        raise DataError("there is no previous soft prompt to restore", file=previous,
                        expected="a study whose model was replaced by a later run")
    if not (active / CONFIG_NAME).is_file():
        os.rename(previous, active)
        return _folder_score(active, study)
    copy_folder_atomically(previous, staged, marker=CONFIG_NAME, kind=FOLDER_KIND)  # survives the next step
    copy_folder_atomically(active, previous, marker=CONFIG_NAME, kind=FOLDER_KIND)
    recover_steering(root)  # installs the staged copy
    return _folder_score(active, study)


def install_model(root: Path, write: Callable[[Path], None]) -> None:
    """Write ``STUDY/steering`` with ``write(folder)``, first copying the installed model to ``steering.previous``.

    Each of the two writes is atomic; a crash between them leaves the old
    model installed (and as the previous).
    """
    active = root / STEERING
    if (active / CONFIG_NAME).is_file():
        copy_folder_atomically(active, root / PREVIOUS, marker=CONFIG_NAME, kind=FOLDER_KIND)
    write_folder_atomically(active, write, marker=CONFIG_NAME, kind=FOLDER_KIND)


def recover_steering(root: Path) -> None:
    """Finish what a crash interrupted: a folder swap, or a restore of the previous model."""
    for name in (STEERING, CANDIDATE, PREVIOUS, RESTORING):
        recover_interrupted_swap(root / name, marker=CONFIG_NAME)
    staged = root / RESTORING
    if (staged / CONFIG_NAME).is_file():
        copy_folder_atomically(staged, root / STEERING, marker=CONFIG_NAME, kind=FOLDER_KIND)
        shutil.rmtree(staged, ignore_errors=True)


def _folder_score(folder: Path, study: Study) -> SteeringScore | None:
    """The score of the soft prompt in ``folder`` from its last run, or None if it holds none."""
    if not (folder / CONFIG_NAME).is_file():
        return None
    runs = read_runs(folder)
    return run_score(runs[-1] if runs else {}, folder, study)


def run_score(run: dict, folder: Path, study: Study) -> SteeringScore:
    """A run record's validation scores; for an older record, the baselines recomputed from its options."""
    result = run.get("result", {})
    accuracy, majority, chance = (_number(result.get(f"val_{name}")) for name in
                                  ("accuracy", "majority_accuracy", "chance_accuracy"))
    if "val_majority_accuracy" not in result and run:  # recorded before the baselines were
        checked = [h for h in result.get("history", []) if h.get("val_loss") == result.get("best_val_loss")]
        accuracy = _number(checked[0].get("val_accuracy")) if checked else math.nan
        majority, chance = _recomputed_baselines(run, folder, study)
    return SteeringScore(folder=folder, base_model=_base_model(folder), stopped=result.get("stopped", "unknown"),
                         steps=int(result.get("steps") or 0), accuracy=accuracy, majority=majority, chance=chance,
                         n_val=int(result.get("n_val") or 0), why_not_installed=run.get("why_not_installed", ""))


def _number(value) -> float:
    """A recorded number; JSON's null (how NaN is saved) is NaN."""
    return math.nan if value is None else float(value)


def _recomputed_baselines(run: dict, folder: Path, study: Study) -> tuple[float, float]:
    """``(majority, chance)`` on the validation answers the run's options drew (as train_soft_prompt draws them)."""
    options = {**SteeringSettings().to_dict(), **run.get("options", {})}
    try:
        train_answers = np.where(read_holdout(folder), MISSING, study.data.answers)
    except (DataError, ValueError):
        return math.nan, math.nan
    _, question, answer = answer_examples(train_answers)
    val, rest = validation_split(len(answer), np.random.default_rng(options["random_state"]),
                                 max_examples=options["max_examples"], max_val_examples=options["max_val_examples"])
    return majority_baseline(study.data.questions, question, answer, rest, val)


def saved_study_folder(study: Study) -> Path:
    if study.path is None:
        raise DataError("the study has not been saved yet", expected="study.save(folder) before steering")
    return Path(study.path)


def read_spm_config(folder: Path) -> dict:
    """The soft prompt's ``config.json`` in ``folder``; ``{}`` if there is none (or it is unreadable)."""
    try:
        config = json.loads((folder / CONFIG_NAME).read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return config if isinstance(config, dict) else {}


def _base_model(folder: Path) -> str:
    return read_spm_config(folder).get("base_model", "")


def load_checked_model(folder: Path, study: Study, llm) -> SoftPromptModel:
    recover_interrupted_swap(folder, marker=CONFIG_NAME)
    spm = SoftPromptModel.from_pretrained(folder, llm)
    if spm.config.study_fingerprint != study.fingerprint:
        raise DataError("this soft prompt was trained on other embeddings than the study's "
                        "(the study was refitted since)", file=folder,
                        expected="a soft prompt retrained with 'persona-engine train-steering'")
    return spm


def write_holdout(folder: Path, test_mask: np.ndarray) -> None:
    save_file({"test_mask": np.ascontiguousarray(test_mask, dtype=np.uint8)}, str(folder / HOLDOUT_FILE))


def read_holdout(folder: Path) -> np.ndarray:
    file = folder / HOLDOUT_FILE
    if not file.is_file():
        raise DataError("the soft prompt's held-out answers are missing", file=file)
    return load_file(str(file))["test_mask"].astype(bool)


def write_runs(folder: Path, runs: Sequence[dict]) -> None:
    (folder / TRAINING_FILE).write_text(json.dumps({"runs": list(runs)}, indent=2) + "\n")


def read_runs(folder: Path | None) -> list[dict]:
    file = None if folder is None else folder / TRAINING_FILE
    if file is None or not file.is_file():
        return []
    try:
        return list(json.loads(file.read_text()).get("runs", []))
    except (json.JSONDecodeError, AttributeError):
        return []
