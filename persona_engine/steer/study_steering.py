"""Training a saved study's soft-prompting model on its answers.

:func:`train_steering` trains a :class:`~persona_engine.steer.SoftPromptModel`
on a saved study's *training* answers, with the study's collaborative
filter as the teacher, judges the run against each question's majority
answer, and keeps it in the study's folder: installed, or as the candidate
(:mod:`~persona_engine.steer.steering_folder` describes the folders and how
they are kept safe). :func:`estimate_steering_seconds` says how long a run
would take.

Held-out answers stay held out: by default
:func:`~persona_engine.evaluation.protocol.holdout_split` with a fixed seed hides 20% of
each respondent's answers, and a resumed run reuses the saved mask. The
evaluation can pass its own ``holdout`` (a mask, a split, or question ids).
While training, the best model so far is checkpointed in
``STUDY/.steering-checkpoint/``, which ``resume=True`` continues from after a
crash.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

from persona_engine.errors import DataError
from persona_engine.opinion_data import MISSING
from persona_engine.evaluation.protocol import HoldoutSplit, holdout_split
from persona_engine.progress import Progress
from persona_engine.steer.augmentation import TrainingInputs, rearranged
from persona_engine.steer.examples import example_counts
from persona_engine.steer.settings import SteeringSettings
from persona_engine.steer.soft_prompt import CONFIG_NAME, WEIGHTS_NAME, SoftPromptModel
from persona_engine.steer.steering_folder import (CANDIDATE, CHECKPOINT, FOLDER_KIND, PREVIOUS, install_model,
                                                  load_checked_model, read_holdout, read_runs, read_spm_config,
                                                  recover_steering, run_score, saved_study_folder, write_holdout,
                                                  write_runs)
from persona_engine.steer.training import TrainingResult, estimate_training_seconds, total_steps, train_soft_prompt
from persona_engine.study import STEERING, Study
from persona_engine.study.folder import to_jsonable, write_folder_atomically

HOLDOUT_FRACTION = 0.2
HOLDOUT_SEED = 0


def study_holdout(study: Study, holdout=None, *, fraction: float = HOLDOUT_FRACTION,
                  random_state: int = HOLDOUT_SEED) -> tuple[np.ndarray, dict]:
    """The answers to keep away from training, and how they were chosen.

    Parameters
    ----------
    holdout:
        ``None``: :func:`~persona_engine.evaluation.protocol.holdout_split` of the study's
        answers with ``fraction`` and ``random_state``; a
        :class:`~persona_engine.evaluation.protocol.HoldoutSplit` or a bool mask
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
    progress: Progress | None = None,
    cancel=None,
    resume: bool = False,
    **overrides,
) -> tuple[SoftPromptModel, TrainingResult]:
    """Train the study's soft-prompting model for ``llm``; install it only if it finished and beats the baseline.

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
        As for :func:`~persona_engine.steer.train_soft_prompt`:
        ``progress("training", step, total, info)``; a cancel takes effect
        within a step.
    resume:
        Continue from the checkpoint of a crashed run, else from the
        candidate (a cancelled run), else from the installed model (the
        optimizer starts afresh).

    Returns
    -------
    The trained model (best validated weights) and the run's
    :class:`~persona_engine.steer.TrainingResult`. A run that finished and
    beats each question's majority on its validation answers is installed
    as ``STUDY/steering/`` (the model it replaces becomes
    ``STUDY/steering.previous/``); any other run is saved as
    ``STUDY/steering.candidate/`` and the installed model is left alone.
    The run is recorded in ``training.json``
    (:func:`~persona_engine.steer.steering_folder.training_runs`) with its
    outcome; :func:`~persona_engine.steer.steering_folder.steering_status`
    tells which it was.
    """
    # Long only for its docstring: start (fresh or resumed), checkpoint, train, judge, install or keep as candidate.
    asked_kind = overrides.get("kind")
    settings = _settings(settings, overrides)
    root = saved_study_folder(study)
    recover_steering(root)
    checkpoint = root / CHECKPOINT
    if resume:
        spm, test_mask, runs = _resumed(study, llm, asked_kind, holdout)
        settings = replace(settings, kind=spm.config.kind, n_virtual_tokens=spm.config.n_virtual_tokens,
                           placement=spm.config.placement)
    else:
        spm, test_mask, runs = _fresh(study, llm, settings, holdout)
        shutil.rmtree(checkpoint, ignore_errors=True)  # a checkpoint left by an older run is not this run's

    _write_model(checkpoint, spm, test_mask, runs)  # the starting point, and the runs before this one
    started, clock = datetime.now(timezone.utc), time.perf_counter()
    result = train_soft_prompt(llm, spm, **_training_inputs(study, settings, test_mask),
                               progress=progress, cancel=cancel, checkpoint=checkpoint)
    record = {"started": started.isoformat(timespec="seconds"), "resumed": resume,
              "seconds": round(time.perf_counter() - clock, 2), "llm": llm.name,
              "llm_dtype": str(llm.dtype).removeprefix("torch."), "device": str(llm.device),
              "options": settings.to_dict(), "result": to_jsonable(asdict(result))}
    installed = _judge_run(record, result, checkpoint, study)
    runs.append(record)
    write_runs(checkpoint, runs)

    def write(target: Path) -> None:
        _write_model(target, spm, test_mask, runs)

    if installed:
        install_model(root, write)
        shutil.rmtree(root / CANDIDATE, ignore_errors=True)  # superseded
    else:
        write_folder_atomically(root / CANDIDATE, write, marker=CONFIG_NAME, kind=FOLDER_KIND)
    shutil.rmtree(checkpoint, ignore_errors=True)
    return spm, result


def _write_model(folder: Path, spm: SoftPromptModel, test_mask: np.ndarray, runs: Sequence[dict]) -> None:
    """A soft-prompting model folder: the model, its held-out answers and its runs."""
    spm.save_pretrained(folder)
    write_holdout(folder, test_mask)
    write_runs(folder, runs)


def _judge_run(record: dict, result: TrainingResult, checkpoint: Path, study: Study) -> bool:
    """Whether the run is installed: it finished and beats the majority baseline; its ``outcome`` goes in ``record``."""
    score = run_score(record, checkpoint, study)
    installed = result.stopped != "cancelled" and score.beats_majority
    record["outcome"] = "installed" if installed else "candidate"
    if not installed:
        record["why_not_installed"] = (f"it was cancelled after {result.steps} steps" if result.stopped == "cancelled"
                                       else score.shortfall())
    return installed


def _settings(settings: SteeringSettings | None, overrides: dict) -> SteeringSettings:
    """``settings`` (or the defaults) with ``overrides`` of its fields; a ``kind`` of ``None`` changes nothing."""
    settings = settings or SteeringSettings()
    unknown = set(overrides) - set(settings.to_dict())
    if unknown:
        raise TypeError(f"unexpected keyword arguments {sorted(unknown)}; the steering settings are "
                        f"{list(settings.to_dict())}")
    return replace(settings, **{k: v for k, v in overrides.items() if not (k == "kind" and v is None)})


def _training_inputs(study: Study, settings: SteeringSettings, test_mask: np.ndarray) -> dict:
    """:func:`~persona_engine.steer.train_soft_prompt`'s embeddings, questions, answers, teacher and options
    for ``settings``: the study's answers less the held-out ones, rearranged as the settings ask
    (:func:`~persona_engine.steer.augmentation.rearranged`)."""
    train_answers = np.where(test_mask, MISSING, study.data.answers).astype(np.int16)
    # cells nobody answered: held-out answers are answers, so they are never among these
    inputs = TrainingInputs.of(study.embedder, study.embeddings, study.data.questions, train_answers,
                               teacher=settings.teacher_weight > 0, unanswered=study.data.answers == MISSING)
    inputs = rearranged(inputs, study.embedder, settings, np.random.default_rng([settings.random_state, 13]))
    return dict(embeddings=inputs.embeddings, questions=inputs.questions, answers=inputs.answers,
                teacher=inputs.teacher, teacher_cells=inputs.unanswered if settings.teacher_fill else None,
                **settings.training_options())


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
    """The crashed run's checkpoint, else the candidate, else the installed soft prompt, with its mask and runs."""
    if holdout is not None:
        raise DataError("a resumed run keeps its held-out answers", expected="no holdout together with resume")
    start = _resume_source(study)
    if start is None:
        raise DataError("nothing to resume: this study has no steering yet", file=saved_study_folder(study),
                        expected="a first run without resume")
    spm = load_checked_model(start, study, llm)
    if kind is not None and kind != spm.config.kind:
        raise DataError(f"the saved soft prompt is '{spm.config.kind}', not '{kind}'",
                        expected="the same kind, or a new run without resume")
    return spm, read_holdout(start), read_runs(start) or read_runs(study.steering_path)


def _resume_source(study: Study) -> Path | None:
    root = saved_study_folder(study)
    for folder in (root / CHECKPOINT, root / CANDIDATE, root / STEERING):
        if (folder / WEIGHTS_NAME).is_file() and (folder / CONFIG_NAME).is_file():
            return folder
    return None


def estimate_steering_seconds(study: Study, llm, settings: SteeringSettings | None = None, *, holdout=None,
                              resume: bool = False, **overrides) -> float:
    """Seconds :func:`train_steering` would take with the same arguments.

    From the measured speed of an earlier run of this study's models on the
    same LLM (name, dtype, device) with the same batch size, words share and
    form of soft prompt, when ``training.json`` holds one: no step is run.
    Otherwise from two timed steps
    (:func:`~persona_engine.steer.estimate_training_seconds`).
    """
    settings = _settings(settings, overrides)
    saved = _resume_source(study) if resume else None
    if saved is not None:
        spm, test_mask = SoftPromptModel.from_pretrained(saved, llm), read_holdout(saved)
        settings = replace(settings, kind=spm.config.kind, n_virtual_tokens=spm.config.n_virtual_tokens,
                           placement=spm.config.placement)
    else:
        spm, test_mask = None, study_holdout(study, holdout)[0]
    measured = _measured_seconds(study, llm, settings, test_mask)
    if measured is not None:
        return measured
    if spm is None:
        spm = SoftPromptModel.for_llm(llm, study.embeddings.shape[1], kind=settings.kind,
                                      n_virtual_tokens=settings.n_virtual_tokens, placement=settings.placement,
                                      random_state=settings.random_state)
    return estimate_training_seconds(llm, spm, **_training_inputs(study, settings, test_mask))


def _measured_seconds(study: Study, llm, settings: SteeringSettings, test_mask: np.ndarray) -> float | None:
    """The run's seconds at the speed of the newest comparable earlier run, or None if there is none.

    Comparable: the same LLM, dtype and device, and the same settings that
    set a step's cost. Its seconds outside the training steps (preparation,
    validation checks) are counted once more.
    """
    same = ("batch_size", "words_share", "kind", "n_virtual_tokens", "placement")
    root, earlier = saved_study_folder(study), []
    for folder in (root / STEERING, root / CANDIDATE, root / PREVIOUS):
        config = read_spm_config(folder)  # older records lack the model's form: it is the folder's
        form = {"llm": config.get("base_model", ""), **{k: config[k] for k in same[2:] if k in config}}
        earlier += [(run, form) for run in read_runs(folder)]
    for run, form in sorted(earlier, key=lambda pair: pair[0].get("started", ""), reverse=True):
        result = run.get("result", {})
        options = {**SteeringSettings().to_dict(), **form, **run.get("options", {})}
        per_step, steps = result.get("seconds_per_step") or 0.0, result.get("steps") or 0
        if (run.get("llm", form["llm"]) == llm.name and run.get("llm_dtype") == str(llm.dtype).removeprefix("torch.")
                and run.get("device") == str(llm.device) and per_step > 0 and steps > 0
                and all(options.get(k) == getattr(settings, k) for k in same)):
            filled = settings.teacher_fill and settings.teacher_weight > 0  # as _training_inputs has it
            n_train, _ = example_counts(np.where(test_mask, MISSING, study.data.answers),
                                        max_examples=settings.max_examples,
                                        max_val_examples=settings.max_val_examples,
                                        teacher_cells=study.data.answers == MISSING if filled else None)
            n_steps = total_steps(settings.epochs, settings.steps, math.ceil(n_train / settings.batch_size))
            return per_step * n_steps + max(0.0, run.get("seconds", 0.0) - per_step * steps)
    return None
