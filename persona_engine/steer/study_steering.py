"""A study's soft-prompting model: trained on its answers, saved in its folder.

:func:`train_steering` trains a :class:`~persona_engine.steer.SoftPromptModel`
on a saved study's *training* answers and writes it as ``STUDY/steering/``;
:func:`load_steering` reads it back for an LLM. The folder holds::

    config.json, model.safetensors   the soft-prompting model (save_pretrained); the config
                                     records the base LLM, the study's fingerprint and
                                     how the answers were split
    holdout.safetensors              test_mask (n_respondents, n_questions) uint8: the
                                     answers the model never saw
    training.json                    one entry per training run: options, loss history,
                                     how it stopped

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
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from safetensors.numpy import load_file, save_file

from persona_engine.errors import DataError
from persona_engine.opinion_data import MISSING
from persona_engine.split import HoldoutSplit, holdout_split
from persona_engine.steer.soft_prompt import CONFIG_NAME, WEIGHTS_NAME, SoftPromptModel
from persona_engine.steer.training import TrainingResult, estimate_training_seconds, train_soft_prompt
from persona_engine.study import STEERING, Study
from persona_engine.study_folder import recover_interrupted_swap, to_jsonable, write_folder_atomically

HOLDOUT_FRACTION = 0.2
HOLDOUT_SEED = 0
HOLDOUT_FILE = "holdout.safetensors"
TRAINING_FILE = "training.json"
CHECKPOINT = ".steering-checkpoint"
DEFAULT_LR = 3e-3
"""Ten times Li et al.'s 1e-3: CPU runs take hundreds of steps, not tens of thousands."""
WORDS_SHARE = 0.5
"""Share of the training answers taught as a sentence in words rather than a letter.

Chosen by ``bench/chat_stance.py`` on the sample study (16,000 answers, one
epoch): taught by letter only, cohort personas' free replies took their
cohort's majority stance 0.28 of the time, less than the unsteered model
(0.42); with half the answers taught in words, 0.60. Words cost about ten
times a letter per example on a CPU, so training takes longer.
"""


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
    *,
    kind: str | None = None,
    n_virtual_tokens: int = 4,
    placement: str = "reply",
    holdout=None,
    epochs: float = 2.0,
    batch_size: int = 32,
    lr: float = DEFAULT_LR,
    max_examples: int | None = None,
    max_val_examples: int | None = None,
    words_share: float = WORDS_SHARE,
    teacher_weight: float = 0.7,
    schedule: str = "cosine",
    random_state: int = 0,
    progress: Callable[[int, int, dict], None] | None = None,
    cancel=None,
    resume: bool = False,
) -> tuple[SoftPromptModel, TrainingResult]:
    """Train the study's soft-prompting model for ``llm`` and save it as ``STUDY/steering``.

    Parameters
    ----------
    study:
        A saved :class:`~persona_engine.study.Study` (it needs a folder).
    llm:
        The frozen base model (:func:`persona_engine.llm.load_llm`).
    kind, n_virtual_tokens, placement:
        ``"prefix"`` (the paper's, default) or ``"prompt"``, how many
        virtual tokens, and where they go; see
        :class:`~persona_engine.steer.SoftPromptModel`. The defaults (4
        tokens before the reply) are faster and, at equal CPU time, more
        accurate than the paper's (1 token before the question). A resumed
        run keeps the saved model's.
    holdout:
        Answers never trained on (see :func:`study_holdout`). Not allowed with
        ``resume``, which reuses the saved ones.
    epochs, batch_size, lr, schedule, max_examples, words_share, random_state, progress, cancel:
        As for :func:`~persona_engine.steer.train_soft_prompt`; ``words_share``
        defaults to :data:`WORDS_SHARE`, so that chat stays in character.
    teacher_weight:
        Share of the letter loss taught by the study's collaborative filter
        (its ``predict_proba`` for each training answer's respondent and
        question) rather than by the answer alone; 0 trains on the answers only.
        When ``max_examples`` is more than the study's training answers, the
        cells nobody answered make up the difference, taught by the filter
        alone (see ``teacher_cells`` in :func:`~persona_engine.steer.train_soft_prompt`).
    max_val_examples:
        Validation answers for early stopping; ``None``: 256, or a quarter of
        ``max_examples`` (at least 48) when that is smaller, so that a short
        run spends its time training rather than checking.
    resume:
        Continue from the checkpoint of an interrupted run, else from the
        saved ``steering/`` (the optimizer starts afresh).

    Returns
    -------
    The trained model (best validated weights) and the run's
    :class:`~persona_engine.steer.TrainingResult`.
    """
    folder, checkpoint = _study_folder(study) / STEERING, _study_folder(study) / CHECKPOINT
    if resume:
        spm, test_mask, runs = _resumed(study, llm, kind, holdout)
    else:
        spm, test_mask, runs = _fresh(study, llm, kind, n_virtual_tokens, placement, holdout, random_state)

    train_answers = np.where(test_mask, MISSING, study.data.answers).astype(np.int16)
    max_val_examples = _validation_size(max_examples, max_val_examples)
    if not resume:  # a checkpoint left by an older run is not this run's
        shutil.rmtree(checkpoint, ignore_errors=True)
    spm.save_pretrained(checkpoint)  # the starting point is the first checkpoint
    _write_holdout(checkpoint, test_mask)
    options = dict(epochs=epochs, batch_size=batch_size, lr=lr, schedule=schedule, max_examples=max_examples,
                   max_val_examples=max_val_examples, words_share=words_share, teacher_weight=teacher_weight,
                   random_state=random_state)
    started, clock = datetime.now(timezone.utc), time.perf_counter()
    teacher = study.embedder.predict_proba(study.embeddings) if teacher_weight > 0 else None
    unanswered = study.data.answers == MISSING  # held-out answers are answers: never among these
    result = train_soft_prompt(llm, spm, study.embeddings, study.data.questions, train_answers, teacher=teacher,
                               teacher_cells=unanswered,
                               progress=progress, cancel=cancel, checkpoint=checkpoint, **options)
    runs.append({"started": started.isoformat(timespec="seconds"), "resumed": resume,
                 "seconds": round(time.perf_counter() - clock, 2),
                 "llm_dtype": str(llm.dtype).removeprefix("torch."), "device": str(llm.device),
                 "options": options, "result": to_jsonable(asdict(result))})
    _write_runs(checkpoint, runs)

    def write(target: Path) -> None:
        spm.save_pretrained(target)
        _write_holdout(target, test_mask)
        _write_runs(target, runs)

    write_folder_atomically(folder, write, marker=CONFIG_NAME, kind="soft-prompting model folder")
    shutil.rmtree(checkpoint, ignore_errors=True)
    return spm, result


def _fresh(study: Study, llm, kind, n_virtual_tokens, placement, holdout, random_state):
    """A new soft prompt for ``llm``, the held-out mask, and no earlier runs."""
    test_mask, description = study_holdout(study, holdout)
    spm = SoftPromptModel.for_llm(llm, study.embeddings.shape[1], kind=kind or "prefix",
                                  n_virtual_tokens=n_virtual_tokens, placement=placement,
                                  study=study.data.source.name,
                                  random_state=random_state)
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


def estimate_steering_seconds(study: Study, llm, *, kind: str | None = None, n_virtual_tokens: int = 4,
                              placement: str = "reply", holdout=None, resume: bool = False,
                              **options) -> float:
    """Seconds :func:`train_steering` would take with the same arguments, from two timed steps."""
    saved = study.steering_path if resume else None
    if saved is not None:
        spm, test_mask = SoftPromptModel.from_pretrained(saved, llm), _read_holdout(saved)
    else:
        spm = SoftPromptModel.for_llm(llm, study.embeddings.shape[1], kind=kind or "prefix",
                                      n_virtual_tokens=n_virtual_tokens, placement=placement)
        test_mask, _ = study_holdout(study, holdout)
    train_answers = np.where(test_mask, MISSING, study.data.answers).astype(np.int16)
    options["max_val_examples"] = _validation_size(options.get("max_examples"), options.get("max_val_examples"))
    return estimate_training_seconds(llm, spm, study.embeddings, study.data.questions, train_answers,
                                     **{"lr": DEFAULT_LR, **options})


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


def _validation_size(max_examples: int | None, max_val_examples: int | None) -> int:
    if max_val_examples is not None:
        return max_val_examples
    return 256 if max_examples is None else min(256, max(48, max_examples // 4))


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


