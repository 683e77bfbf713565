"""Training a soft-prompting model on a study's answers: the run and its loop.

A run builds its examples from the known answers (:mod:`~persona_engine.steer.examples`:
the validation split, the teacher fill, the share taught in words), prepares
the loss on them (:mod:`~persona_engine.steer.loss`: the chosen letter's
cross-entropy, the teacher's distributions, replies in words), then takes
its optimizer steps, validating every few of them and keeping the best
weights (:mod:`~persona_engine.steer.early_stopping`).

The LLM stays frozen: only the SPM's parameters learn (AdamW with Li et
al.'s weight decay). The defaults of the settings a run can change (steps,
batch size, learning rate...) are those of
:class:`~persona_engine.steer.settings.SteeringSettings`.
:func:`estimate_training_seconds` says how long a run would take by timing
two of its steps.

Pass the study's *training* answer matrix (held-out cells set to
``MISSING``) so that held-out answers stay held out.
"""

from __future__ import annotations

import copy
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from persona_engine.errors import DataError
from persona_engine.opinion_data import MISSING, Question
from persona_engine.progress import Progress
from persona_engine.steer.early_stopping import BestWeights, Cancelled, stop_if_cancelled, validate, validation_check
from persona_engine.steer.examples import VALIDATION, Examples, draw_examples, example_counts
from persona_engine.steer.loss import SoftPromptLoss
from persona_engine.steer.settings import SCHEDULES, SteeringSettings, UNBOUNDED_EPOCHS

DEFAULTS = SteeringSettings()
PROGRESS_STAGE = "training"
"""The stage :func:`train_soft_prompt` reports its steps as."""


@dataclass
class TrainingResult:
    """What happened during :func:`train_soft_prompt`.

    Attributes
    ----------
    history:
        One dict per evaluation: ``step``, ``train_loss`` (mean since the last
        evaluation), ``val_loss``, ``val_accuracy`` (of the validation
        examples asked with letters), ``seconds``.
    best_val_loss:
        The validation loss of the weights the SPM ends with.
    val_accuracy:
        Their letter accuracy on the ``n_val`` validation answers (NaN
        without validation, or when cancelled before the first check).
    val_majority_accuracy:
        The baseline a soft prompt must beat: the accuracy on the same
        validation answers of always giving each question's most common
        answer among the training answers (:func:`majority_baseline`).
    val_chance_accuracy:
        The accuracy of guessing: ``1 / n_options`` of each validation
        answer's question, averaged.
    steps:
        Optimizer steps taken.
    stopped:
        ``"finished"``, ``"early_stopping"`` or ``"cancelled"``.
    seconds_per_step:
        Mean wall time of a training step.
    """

    history: list[dict] = field(default_factory=list)
    best_val_loss: float = math.inf
    steps: int = 0
    stopped: str = "finished"
    seconds_per_step: float = 0.0
    val_accuracy: float = math.nan
    val_majority_accuracy: float = math.nan
    val_chance_accuracy: float = math.nan
    n_train: int = 0
    n_val: int = 0
    n_teacher_only: int = 0
    """Of the ``n_train`` examples, those from cells without an answer (``teacher_cells``)."""


def majority_baseline(questions: Sequence[Question], question: np.ndarray, answer: np.ndarray,
                      train: np.ndarray, val: np.ndarray) -> tuple[float, float]:
    """``(majority, chance)`` accuracies on the validation examples ``val``.

    ``question`` and ``answer`` are ``(n_examples,)`` index arrays
    (:func:`~persona_engine.steer.examples.answer_examples`); ``train`` and ``val`` index into them.
    *majority*: always answering each question's most common answer among
    the ``train`` examples (option 0 for a question without any);
    *chance*: ``1 / n_options`` of each validation answer's question,
    averaged. Both are NaN without validation examples.
    """
    if len(val) == 0:
        return math.nan, math.nan
    n_options = np.array([q.n_options for q in questions])
    counts = np.zeros((len(questions), max(int(n_options.max()), int(answer.max()) + 1)), dtype=np.int64)
    np.add.at(counts, (question[train], answer[train]), 1)
    majority = counts.argmax(axis=1)
    return (float(np.mean(majority[question[val]] == answer[val])),
            float(np.mean(1.0 / n_options[question[val]])))


def train_soft_prompt(
    llm,
    soft_prompt,
    embeddings: np.ndarray,
    questions: Sequence[Question],
    answers: np.ndarray,
    *,
    epochs: float | None = DEFAULTS.epochs,
    batch_size: int = DEFAULTS.batch_size,
    lr: float = DEFAULTS.lr,
    weight_decay: float = 1e-3,
    schedule: str = DEFAULTS.schedule,
    validation: float = VALIDATION,
    eval_every: int | None = None,
    patience: int = 3,
    max_examples: int | None = DEFAULTS.max_examples,
    max_val_examples: int | None = DEFAULTS.max_val_examples,
    max_steps: int | None = DEFAULTS.steps,
    words_share: float = DEFAULTS.words_share,
    teacher: np.ndarray | None = None,
    teacher_weight: float = DEFAULTS.teacher_weight,
    teacher_cells: np.ndarray | None = None,
    system: str | None = None,
    random_state: int = DEFAULTS.random_state,
    progress: Progress | None = None,
    cancel: threading.Event | Callable[[], bool] | None = None,
    checkpoint: str | Path | None = None,
) -> TrainingResult:
    """Fit ``soft_prompt`` (a :class:`~persona_engine.steer.SoftPromptModel`) in place.

    The keywords that :class:`~persona_engine.steer.settings.SteeringSettings`
    holds default to ``SteeringSettings()``'s (pass
    ``**settings.training_options()`` to train with other settings); their
    meaning is given there.

    Parameters
    ----------
    embeddings:
        Shape ``(n_respondents, dim)``: one embedding per row of ``answers``.
    answers:
        Shape ``(n_respondents, n_questions)`` option indices, ``MISSING``
        where unknown or held out.
    epochs, max_steps:
        The run's length: at most ``epochs`` passes over the training
        examples (fractions allowed) and at most ``max_steps`` optimizer
        steps; either may be ``None`` (both: :data:`~persona_engine.steer.settings.UNBOUNDED_EPOCHS`
        passes).
    eval_every:
        Steps between validation checks; ``None``: about 10 per run.
    patience:
        Validation checks without improvement before stopping early.
    schedule:
        ``"cosine"`` or ``"constant"`` (see :func:`learning_rate_factor`).
    max_examples:
        Subsample this many training examples.
    max_val_examples:
        Most validation examples (``None``: :func:`~persona_engine.steer.settings.validation_size`).
    words_share:
        Share of training examples asked in free form with the answer in
        words as the target (validation always uses letters).
    teacher, teacher_weight:
        Optional soft targets ``(n_respondents, n_questions, max_options)``,
        e.g. the collaborative filter's ``predict_proba`` (fitted on the same
        training answers). The letter loss becomes ``(1 - teacher_weight)``
        times the cross-entropy on the answer plus ``teacher_weight`` times
        the cross-entropy against the teacher's distribution: a full
        distribution per example teaches more per step than one observed
        option (distillation). Validation always scores the answers alone.
    teacher_cells:
        Optional boolean mask ``(n_respondents, n_questions)`` of cells with
        no answer (never a held-out one) that the ``teacher`` alone teaches:
        when the known answers are fewer than ``max_examples``, examples
        from these cells make up the difference, with the teacher's
        distribution as their only target. On a small study this gives
        the soft prompt the filter's view of every respondent instead of a
        few dozen answers each.
    progress:
        ``progress("training", step, total_steps, info)``
        (:mod:`persona_engine.progress`), called after each step; ``info``
        holds ``loss``, ``eta_seconds`` (from the mean step time so far)
        and, after a validation check, ``val_loss`` and ``val_accuracy``. It
        is first called as ``("training", 0, total_steps, {})`` as soon as
        the run's length is known, before the preparation (the questions'
        prompts, the first validation check).
    cancel:
        A ``threading.Event`` (or a callable returning True) checked before
        every step, between the batches of a validation check and before a
        checkpoint is written, so that a cancel takes effect within a step;
        on cancel the SPM keeps its best weights so far (a validation check
        cut short does not count).
    checkpoint:
        Folder where the best SPM so far is saved (``save_pretrained``) at
        each improvement, so that an interrupted run leaves a usable model,
        and at the end. Resume by loading it with ``from_pretrained`` and
        training again (the optimizer starts afresh).
    """
    # Long only for its visible knobs and their docs: the run is the examples, the loss, then the loop.
    embeddings, answers, teacher = _checked_inputs(embeddings, questions, answers, teacher)
    rng = np.random.default_rng(random_state)  # every draw of the run, in a fixed order
    examples = draw_examples(answers, rng, validation=validation, max_examples=max_examples,
                             max_val_examples=max_val_examples, teacher=teacher, teacher_cells=teacher_cells,
                             words_share=words_share)
    total = total_steps(epochs, max_steps, math.ceil(len(examples.train) / batch_size))
    if progress is not None:
        progress(PROGRESS_STAGE, 0, total, {})  # the length is known; the preparation follows

    loss = SoftPromptLoss(llm, soft_prompt, embeddings, questions, examples, teacher=teacher,
                          teacher_weight=teacher_weight, system=system)
    result = _empty_result(questions, examples)
    _optimize(loss, examples.train, result, rng, total=total, batch_size=batch_size, lr=lr,
              weight_decay=weight_decay, schedule=schedule, eval_every=eval_every, patience=patience,
              progress=progress, cancel=cancel, checkpoint=checkpoint)
    return result


def _checked_inputs(embeddings, questions, answers, teacher) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(embeddings, answers, teacher)`` as arrays; a :class:`DataError` when their shapes disagree."""
    embeddings = np.asarray(embeddings, dtype=np.float32)
    answers = np.asarray(answers)
    if embeddings.shape[0] != answers.shape[0] or answers.shape[1] != len(questions):
        raise DataError(f"{embeddings.shape[0]} embeddings and {len(questions)} questions for an answer "
                        f"matrix of shape {answers.shape}", expected="one embedding per respondent row")
    if teacher is not None:
        teacher = np.asarray(teacher, dtype=np.float32)
        if teacher.shape[:2] != answers.shape:
            raise DataError(f"teacher distributions of shape {teacher.shape}",
                            expected=f"shape {answers.shape} + (options,)")
    return embeddings, answers, teacher


def _empty_result(questions: Sequence[Question], examples: Examples) -> TrainingResult:
    """A :class:`TrainingResult` that knows the examples and the baselines, before any step."""
    majority, chance = majority_baseline(questions, examples.question, examples.answer, examples.unvalidated,
                                         examples.val)
    return TrainingResult(n_train=len(examples.train), n_val=len(examples.val),
                          n_teacher_only=int((examples.answer[examples.train] < 0).sum()),
                          val_majority_accuracy=majority, val_chance_accuracy=chance)


# ------------------------------------------------------------------ the loop
def _optimize(loss: SoftPromptLoss, train: np.ndarray, result: TrainingResult, rng: np.random.Generator, *,
              total: int, batch_size: int, lr: float, weight_decay: float, schedule: str, eval_every: int | None,
              patience: int, progress: Progress | None, cancel, checkpoint) -> None:
    """``total`` AdamW steps on the ``train`` examples, validated every ``eval_every``; fills ``result``.

    The soft prompt ends with its best validated weights, also after a
    cancel or an early stop, and is saved in ``checkpoint`` (if any).
    """
    spm, steps_per_epoch = loss.spm, math.ceil(len(train) / batch_size)
    optimizer = torch.optim.AdamW(spm.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, learning_rate_factor(schedule, total))
    eval_every = eval_every or max(1, total // 10)
    best, running, step_seconds = BestWeights(spm, checkpoint, cancel), [], 0.0
    try:  # a cancel raises Cancelled: before a step, between validation batches, before a checkpoint
        result.best_val_loss, result.val_accuracy = validate(loss, batch_size, cancel)
        if not math.isnan(result.best_val_loss):
            best.keep()
        started = time.perf_counter()
        for step in range(total):
            stop_if_cancelled(cancel)
            epoch_step = step % steps_per_epoch
            if epoch_step == 0:
                train = loss.epoch_order(rng, train, batch_size)
            tick = time.perf_counter()
            batch_loss, _, _ = loss(train[epoch_step * batch_size:(epoch_step + 1) * batch_size])
            optimizer.zero_grad(set_to_none=True)
            batch_loss.backward()
            optimizer.step()
            scheduler.step()
            running.append(batch_loss.item())
            step_seconds += time.perf_counter() - tick
            result.steps = step + 1
            result.seconds_per_step = step_seconds / result.steps
            # Wall time per step so far includes the validation checks.
            info = {"loss": running[-1],
                    "eta_seconds": (time.perf_counter() - started) / result.steps * (total - result.steps)}
            if (step + 1) % eval_every == 0 or step + 1 == total:
                info.update(validation_check(loss, result, best, running, started, batch_size, cancel))
            if progress is not None:
                progress(PROGRESS_STAGE, step + 1, total, info)
            if loss.n_val and best.bad_checks >= patience:
                result.stopped = "early_stopping"
                break
    except Cancelled:
        result.stopped = "cancelled"
    best.restore()


def total_steps(epochs: float | None, max_steps: int | None, steps_per_epoch: int) -> int:
    """Optimizer steps of a run: ``epochs`` passes, at most ``max_steps`` (both ``None``: :data:`UNBOUNDED_EPOCHS`)."""
    if epochs is None and max_steps is None:
        epochs = UNBOUNDED_EPOCHS
    total = max(1, math.ceil(epochs * steps_per_epoch)) if epochs is not None else max(1, max_steps)
    return total if max_steps is None else min(total, max_steps)


def learning_rate_factor(schedule: str, total_steps: int) -> Callable[[int], float]:
    """The learning rate at each step as a share of the peak.

    ``"cosine"``: a linear warm-up over the first 5% of the steps to the
    peak, then a cosine decay to zero at the last step, so that the last
    steps, taken at a small learning rate, settle the weights that a
    constant rate keeps shaking; or ``"constant"``.
    """
    if schedule not in SCHEDULES:
        raise DataError(f"unknown learning-rate schedule {schedule!r}", expected=f"one of {SCHEDULES}")
    if schedule == "constant":
        return lambda step: 1.0
    warmup = max(1, round(0.05 * total_steps))

    def cosine(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return cosine


def estimate_training_seconds(llm, soft_prompt, embeddings, questions, answers, *, probe_steps: int = 2,
                              probe_questions: int = 8, **options) -> float:
    """Seconds :func:`train_soft_prompt` would take with ``options``, from ``probe_steps`` timed steps on a copy.

    ``options`` are :func:`train_soft_prompt`'s keywords; those not given
    take its defaults, as the run would. The probe asks only the
    ``probe_questions`` most answered questions, since preparing every
    question's prompt can take longer than the steps; that preparation is
    scaled up to all the questions. The first step warms up, so with two
    steps the second alone gives a step's time.
    """
    answers = np.asarray(answers)
    keep = np.sort(np.argsort(-(answers != MISSING).sum(axis=0), kind="stable")[:probe_questions])
    probe_options = {**options, "max_steps": probe_steps, "validation": 0.0, "checkpoint": None}
    for name in ("teacher", "teacher_cells"):
        if probe_options.get(name) is not None:
            probe_options[name] = np.asarray(probe_options[name])[:, keep]
    stamps: list[float] = []  # at the length's call (step 0), then after each step
    timed = train_soft_prompt(llm, copy.deepcopy(soft_prompt), embeddings, [questions[i] for i in keep],
                              answers[:, keep], **probe_options,
                              progress=lambda stage, step, total, info: stamps.append(time.perf_counter()))
    per_step = stamps[-1] - stamps[-2] if len(stamps) >= 3 else timed.seconds_per_step
    preparation = max(0.0, stamps[1] - stamps[0] - per_step) * len(questions) / len(keep) if len(stamps) >= 2 else 0.0

    batch_size = options.get("batch_size", DEFAULTS.batch_size)
    n_train, n_val = example_counts(
        answers, validation=options.get("validation", VALIDATION),
        max_examples=options.get("max_examples", DEFAULTS.max_examples),
        max_val_examples=options.get("max_val_examples", DEFAULTS.max_val_examples),
        teacher_cells=options.get("teacher_cells") if options.get("teacher") is not None else None)
    steps = total_steps(options.get("epochs", DEFAULTS.epochs), options.get("max_steps", DEFAULTS.steps),
                        math.ceil(n_train / batch_size))
    # Validation: ~10 checks of forward-only batches, about a third of a training step each.
    checks = min(steps, 10) + 1
    return preparation + per_step * (steps + checks * math.ceil(n_val / batch_size) / 3)
