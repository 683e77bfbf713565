"""Training a soft-prompting model on a study's answers.

Each example is one known answer: (respondent embedding, question with
lettered options, the option the respondent chose). The loss is the
cross-entropy of the chosen letter against the LLM's next-token logits
restricted to the question's option letters. A share of the examples
(``words_share``) can instead ask the question in free form and teach the
answer said in words (:data:`~persona_engine.steer.prompts.REPLY`), so that
the persona carries over to free conversation, not only to letters.

The LLM stays frozen: only the SPM's parameters learn (AdamW with Li et
al.'s weight decay). A random share of the examples is held back for early
stopping. The defaults of the settings a run can change (steps, batch
size, learning rate...) are those of
:class:`~persona_engine.steer.settings.SteeringSettings`.

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
import torch.nn.functional as F

from persona_engine.errors import DataError
from persona_engine.opinion_data import MISSING, Question
from persona_engine.steer.injection import Prompts, steered_forward
from persona_engine.steer.persona import letter_logits
from persona_engine.steer.prompts import encode_questions, reply_ids
from persona_engine.steer.settings import SCHEDULES, UNBOUNDED_EPOCHS, SteeringSettings, validation_size

DEFAULTS = SteeringSettings()
VALIDATION = 0.1
"""Share of the known answers held back for early stopping (at most ``max_val_examples``)."""


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
    n_train: int = 0
    n_val: int = 0
    n_teacher_only: int = 0
    """Of the ``n_train`` examples, those from cells without an answer (``teacher_cells``)."""


def answer_examples(answers: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The known cells of an answer matrix ``(n_respondents, n_questions)`` as examples.

    Returns ``(respondent, question, answer)`` index arrays, each ``(n_examples,)``.
    """
    respondent, question = np.nonzero(np.asarray(answers) != MISSING)
    return respondent, question, np.asarray(answers)[respondent, question].astype(np.int64)


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
    progress: Callable[[int, int, dict], None] | None = None,
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
        ``"cosine"``: a linear warm-up over the first 5% of the steps to
        ``lr``, then a cosine decay to zero at the last step; or
        ``"constant"``. On the sample study's evaluation split the decay
        lifted held-out accuracy from 0.588 to 0.625 at the same 1,250 steps:
        the last steps, taken at a small learning rate, settle the weights
        that a constant rate keeps shaking.
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
        ``callable(step, total_steps, info)``; ``info`` holds ``loss``,
        ``eta_seconds`` (from the mean step time so far) and, after a
        validation check, ``val_loss`` and ``val_accuracy``.
    cancel:
        A ``threading.Event`` (or a callable returning True) checked every
        step; on cancel the SPM keeps its best weights so far.
    checkpoint:
        Folder where the best SPM so far is saved (``save_pretrained``) at
        each improvement, so that an interrupted run leaves a usable model,
        and at the end. Resume by loading it with ``from_pretrained`` and
        training again (the optimizer starts afresh).
    """
    embeddings = np.asarray(embeddings, dtype=np.float32)
    answers = np.asarray(answers)
    if embeddings.shape[0] != answers.shape[0] or answers.shape[1] != len(questions):
        raise DataError(f"{embeddings.shape[0]} embeddings and {len(questions)} questions for an answer "
                        f"matrix of shape {answers.shape}", expected="one embedding per respondent row")
    rng = np.random.default_rng(random_state)
    respondent, question, answer = answer_examples(answers)
    order = rng.permutation(len(answer))
    n_val = min(int(round(validation * len(order))), validation_size(max_examples, max_val_examples)) \
        if len(order) > 1 else 0
    val, train = order[:n_val], order[n_val:]
    if max_examples is not None:
        train = train[:max_examples]
    if len(train) == 0:
        raise DataError("no answers to train the soft prompt on", expected="a study with known answers")
    if teacher_cells is not None and teacher is not None and max_examples is not None \
            and len(train) < max_examples:
        cells = np.asarray(teacher_cells, dtype=bool)
        if cells.shape != answers.shape:
            raise DataError(f"teacher cells of shape {cells.shape}", expected=f"shape {answers.shape}")
        fill_r, fill_q = np.nonzero(cells & (answers == MISSING))
        pick = rng.permutation(len(fill_r))[: max_examples - len(train)]
        train = np.concatenate([train, len(answer) + np.arange(len(pick))])
        respondent = np.concatenate([respondent, fill_r[pick]])
        question = np.concatenate([question, fill_q[pick]])
        answer = np.concatenate([answer, np.full(len(pick), -1, dtype=answer.dtype)])  # no answer: teacher only

    spm = soft_prompt.to(llm.device).train()
    placement = spm.config.placement
    encoded = encode_questions(llm.tokenizer, questions, system)
    prompts = Prompts.for_questions(llm, encoded, placement)  # persona-independent: computed once
    if not spm.embedding_scaled:  # a fresh SPM; a resumed one keeps its input scale
        spm.set_embedding_scale(embeddings[np.unique(respondent[train])])
    kind = spm.config.kind
    x = torch.as_tensor(embeddings, device=llm.device)
    y = torch.as_tensor(answer, device=llm.device)
    if teacher is not None:
        teacher = np.asarray(teacher, dtype=np.float32)
        if teacher.shape[:2] != answers.shape:
            raise DataError(f"teacher distributions of shape {teacher.shape}",
                            expected=f"shape {answers.shape} + (options,)")
        n_letters = len(encoded.letter_ids)
        soft = np.zeros((len(answer), n_letters), dtype=np.float32)
        width = min(n_letters, teacher.shape[2])
        soft[:, :width] = teacher[respondent, question, :width]
        soft = torch.as_tensor(soft / soft.sum(axis=1, keepdims=True).clip(1e-12), device=llm.device)
    spoken = rng.random(len(answer)) < words_share  # examples taught in words
    spoken[val] = False  # validation (early stopping) scores the answers by letter
    spoken[answer < 0] = False  # a teacher-only cell has no answer to say
    if spoken.any():
        free = Prompts.for_questions(llm, encode_questions(llm.tokenizer, questions, system, lettered=False),
                                     placement)
        replies = reply_ids(llm.tokenizer, questions)

    def loss_on(rows: np.ndarray, training: bool = True) -> tuple[torch.Tensor, int, int]:
        """Mean loss over ``rows``, and letter hits and letter examples among them."""
        letters, words = rows[~spoken[rows]], rows[spoken[rows]]
        loss, hits = 0.0, 0
        if len(letters):
            logits = letter_logits(llm, prompts, question[letters], spm(x[respondent[letters]]), kind=kind)
            hard = F.cross_entropy(logits, y[letters], reduction="sum", ignore_index=-1)
            if teacher is not None and training:
                log_p = torch.log_softmax(logits, dim=-1).clamp_min(-1e4)  # -inf past the options
                distilled = -(soft[letters] * log_p).sum(-1)
                # cells without an answer learn from the teacher alone
                weight = torch.where(y[letters] >= 0, teacher_weight, 1.0)
                hard = (1 - teacher_weight) * hard + (weight * distilled).sum()
            loss = loss + hard
            hits = int((logits.argmax(-1) == y[letters]).sum())
        if len(words):
            loss = loss + len(words) * reply_loss(
                llm, free, [replies[q][a] for q, a in zip(question[words], answer[words])],
                question[words], spm(x[respondent[words]]), kind=kind)
        return loss / len(rows), hits, len(letters)

    def evaluate() -> tuple[float, float]:
        if n_val == 0:
            return math.nan, math.nan
        spm.eval()
        total_loss, hits, asked = 0.0, 0, 0
        with torch.no_grad():
            for start in range(0, n_val, batch_size):
                rows = val[start:start + batch_size]
                loss, batch_hits, batch_asked = loss_on(rows, training=False)
                total_loss += loss.item() * len(rows)
                hits, asked = hits + batch_hits, asked + batch_asked
        spm.train()
        return total_loss / n_val, hits / asked if asked else math.nan

    optimizer = torch.optim.AdamW(spm.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(train) / batch_size)
    total = total_steps(epochs, max_steps, steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, learning_rate_factor(schedule, total))
    eval_every = eval_every or max(1, total // 10)
    result = TrainingResult(n_train=len(train), n_val=n_val, n_teacher_only=int((answer[train] < 0).sum()))
    best_state, bad_checks, running, step_seconds = None, 0, [], 0.0
    result.best_val_loss, _ = evaluate()
    if not math.isnan(result.best_val_loss):
        best_state = copy.deepcopy(spm.state_dict())
    started = time.perf_counter()

    for step in range(total):
        if _cancelled(cancel):
            result.stopped = "cancelled"
            break
        epoch_step = step % steps_per_epoch
        if epoch_step == 0:
            train = rng.permutation(train)
        tick = time.perf_counter()
        loss, _, _ = loss_on(train[epoch_step * batch_size:(epoch_step + 1) * batch_size])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        running.append(loss.item())
        step_seconds += time.perf_counter() - tick
        result.steps = step + 1
        result.seconds_per_step = step_seconds / result.steps
        # Wall time per step so far includes the validation checks.
        info = {"loss": running[-1],
                "eta_seconds": (time.perf_counter() - started) / result.steps * (total - result.steps)}

        if (step + 1) % eval_every == 0 or step + 1 == total:
            val_loss, val_accuracy = evaluate()
            info.update(val_loss=val_loss, val_accuracy=val_accuracy)
            result.history.append({"step": step + 1, "train_loss": float(np.mean(running)),
                                   "val_loss": val_loss, "val_accuracy": val_accuracy,
                                   "seconds": time.perf_counter() - started})
            running = []
            if n_val and val_loss < result.best_val_loss:
                result.best_val_loss, bad_checks = val_loss, 0
                best_state = copy.deepcopy(spm.state_dict())
                if checkpoint is not None:
                    spm.save_pretrained(checkpoint)
            elif n_val:
                bad_checks += 1
        if progress is not None:
            progress(step + 1, total, info)
        if n_val and bad_checks >= patience:
            result.stopped = "early_stopping"
            break

    if best_state is not None:  # the best validated weights, also after a cancel
        spm.load_state_dict(best_state)
    if checkpoint is not None:
        spm.save_pretrained(checkpoint)
    spm.eval()
    return result


def reply_loss(llm, free: Prompts, replies: Sequence[Sequence[int]], question_index: np.ndarray,
               soft_prompt: torch.Tensor | None, *, kind: str = "prefix") -> torch.Tensor:
    """Cross-entropy of each whole reply (summed over its tokens), teacher-forced, averaged over replies.

    Summed, not averaged over tokens: once the sentence's wording is learned
    only the token that says the option (e.g. "little" in "spending too
    little on...") stays uncertain, and it should weigh as much as an answer
    letter does, not a fourteenth of it.

    ``free`` holds the questions asked without options (:meth:`Prompts.for_questions`);
    ``replies[i]`` are the token ids the assistant should say after question
    ``question_index[i]``. Sequences are left-padded, so every reply ends at
    the last position and its predictions are in the last ``max_len + 1``.
    """
    longest = max(len(r) for r in replies)
    context, ids, mask = free.batch(question_index, replies)
    logits = steered_forward(llm, context, ids, mask, soft_prompt, kind=kind, n_positions=longest + 1).logits
    # The logits at window index t predict the token at t + 1.
    targets = torch.full((len(replies), longest + 1), -100, dtype=torch.long, device=llm.device)
    for row, reply in enumerate(replies):
        targets[row, longest - len(reply):longest] = torch.as_tensor(list(reply))
    token_losses = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                   ignore_index=-100, reduction="sum")
    return token_losses / len(replies)


def total_steps(epochs: float | None, max_steps: int | None, steps_per_epoch: int) -> int:
    """Optimizer steps of a run: ``epochs`` passes, at most ``max_steps`` (both ``None``: :data:`UNBOUNDED_EPOCHS`)."""
    if epochs is None and max_steps is None:
        epochs = UNBOUNDED_EPOCHS
    total = max(1, math.ceil(epochs * steps_per_epoch)) if epochs is not None else max(1, max_steps)
    return total if max_steps is None else min(total, max_steps)


def learning_rate_factor(schedule: str, total_steps: int) -> Callable[[int], float]:
    """The learning rate at each step as a share of the peak (see ``schedule`` in :func:`train_soft_prompt`)."""
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


def _cancelled(cancel) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel())


def estimate_training_seconds(llm, soft_prompt, embeddings, questions, answers, *, probe_steps: int = 2,
                              **options) -> float:
    """Seconds :func:`train_soft_prompt` would take with ``options``, from a few timed steps on a copy.

    ``options`` are :func:`train_soft_prompt`'s keywords; those not given
    take its defaults, as the run would.
    """
    probe = copy.deepcopy(soft_prompt)
    timed = train_soft_prompt(llm, probe, embeddings, questions, answers, **{
        **options, "max_steps": probe_steps, "validation": 0.0, "checkpoint": None, "progress": None})
    n_examples = timed.n_train
    batch_size = options.get("batch_size", DEFAULTS.batch_size)
    steps = total_steps(options.get("epochs", DEFAULTS.epochs), options.get("max_steps", DEFAULTS.steps),
                        math.ceil(n_examples / batch_size))
    # Validation: ~10 checks of forward-only batches, about a third of a training step each.
    n_val = min(int(round(options.get("validation", VALIDATION) * len(answer_examples(answers)[0]))),
                validation_size(options.get("max_examples", DEFAULTS.max_examples),
                                options.get("max_val_examples", DEFAULTS.max_val_examples)))
    checks = min(steps, 10) + 1
    return timed.seconds_per_step * (steps + checks * math.ceil(n_val / batch_size) / 3)
