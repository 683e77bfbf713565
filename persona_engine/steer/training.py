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
from persona_engine.steer.answering import letter_logits
from persona_engine.steer.prompts import encode_questions, reply_ids
from persona_engine.steer.settings import PREFIX_TUNING, SCHEDULES, SteeringSettings, UNBOUNDED_EPOCHS, validation_size

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


def answer_examples(answers: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The known cells of an answer matrix ``(n_respondents, n_questions)`` as examples.

    Returns ``(respondent, question, answer)`` index arrays, each ``(n_examples,)``.
    """
    respondent, question = np.nonzero(np.asarray(answers) != MISSING)
    return respondent, question, np.asarray(answers)[respondent, question].astype(np.int64)


def validation_split(n_examples: int, rng: np.random.Generator, *, validation: float = VALIDATION,
                     max_examples: int | None = DEFAULTS.max_examples,
                     max_val_examples: int | None = DEFAULTS.max_val_examples) -> tuple[np.ndarray, np.ndarray]:
    """The examples held back for early stopping and the others, as ``(val, rest)`` index arrays.

    ``rng`` is the run's generator (``default_rng(random_state)``) before
    any other draw, so that the split can be redrawn from a run's recorded
    options. ``rest`` is not yet cut to ``max_examples``.
    """
    order = rng.permutation(n_examples)
    n_val = _validation_count(n_examples, validation, max_examples, max_val_examples)
    return order[:n_val], order[n_val:]


def _validation_count(n_examples: int, validation: float, max_examples: int | None,
                      max_val_examples: int | None) -> int:
    if n_examples <= 1:
        return 0
    return min(int(round(validation * n_examples)), validation_size(max_examples, max_val_examples))


def majority_baseline(questions: Sequence[Question], question: np.ndarray, answer: np.ndarray,
                      train: np.ndarray, val: np.ndarray) -> tuple[float, float]:
    """``(majority, chance)`` accuracies on the validation examples ``val``.

    ``question`` and ``answer`` are ``(n_examples,)`` index arrays
    (:func:`answer_examples`); ``train`` and ``val`` index into them.
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


def example_counts(answers: np.ndarray, *, validation: float = VALIDATION,
                   max_examples: int | None = DEFAULTS.max_examples,
                   max_val_examples: int | None = DEFAULTS.max_val_examples,
                   teacher_cells: np.ndarray | None = None) -> tuple[int, int]:
    """``(n_train, n_val)``: the examples :func:`train_soft_prompt` would train and validate on.

    ``teacher_cells`` as there (with a teacher given).
    """
    known = int((np.asarray(answers) != MISSING).sum())
    n_val = _validation_count(known, validation, max_examples, max_val_examples)
    n_train = known - n_val if max_examples is None else min(known - n_val, max_examples)
    if teacher_cells is not None and max_examples is not None and n_train < max_examples:
        unanswered = int((np.asarray(teacher_cells, dtype=bool) & (np.asarray(answers) == MISSING)).sum())
        n_train += min(unanswered, max_examples - n_train)
    return n_train, n_val


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
        ``callable(step, total_steps, info)``, called after each step;
        ``info`` holds ``loss``, ``eta_seconds`` (from the mean step time so
        far) and, after a validation check, ``val_loss`` and
        ``val_accuracy``. It is first called as ``(0, total_steps, {})`` as
        soon as the run's length is known, before the preparation (the
        questions' prompts, the first validation check).
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
    examples = _draw_examples(questions, answers, rng, validation=validation, max_examples=max_examples,
                              max_val_examples=max_val_examples, teacher=teacher, teacher_cells=teacher_cells,
                              words_share=words_share)
    total = total_steps(epochs, max_steps, math.ceil(len(examples.train) / batch_size))
    if progress is not None:
        progress(0, total, {})  # the length is known; the preparation follows

    loss = _SoftPromptLoss(llm, soft_prompt, embeddings, questions, examples, teacher=teacher,
                           teacher_weight=teacher_weight, system=system)
    result = examples.result()
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


# ------------------------------------------------------------------ the examples
@dataclass
class _Examples:
    """A run's examples as index arrays ``(n_examples,)``, and which of them train and validate.

    The known answers come first; examples past them are cells the teacher
    alone teaches (``answer`` -1).
    """

    respondent: np.ndarray
    question: np.ndarray
    answer: np.ndarray
    train: np.ndarray
    """Indices of the training examples."""
    val: np.ndarray
    """Indices of the examples held back for early stopping."""
    spoken: np.ndarray
    """``(n_examples,)`` bool: taught as a reply in words rather than by its letter."""
    baselines: tuple[float, float]
    """``(majority, chance)`` accuracies on the validation examples (:func:`majority_baseline`)."""

    def result(self) -> TrainingResult:
        """An empty :class:`TrainingResult` that knows the examples and the baselines."""
        majority, chance = self.baselines
        return TrainingResult(n_train=len(self.train), n_val=len(self.val),
                              n_teacher_only=int((self.answer[self.train] < 0).sum()),
                              val_majority_accuracy=majority, val_chance_accuracy=chance)


def _draw_examples(questions, answers: np.ndarray, rng: np.random.Generator, *, validation: float,
                   max_examples: int | None, max_val_examples: int | None, teacher: np.ndarray | None,
                   teacher_cells: np.ndarray | None, words_share: float) -> _Examples:
    """The validation split, the training subsample, the teacher's cells and the examples taught in words.

    Drawn from ``rng`` in that order, the split first (see :func:`validation_split`).
    """
    respondent, question, answer = answer_examples(answers)
    val, train = validation_split(len(answer), rng, validation=validation, max_examples=max_examples,
                                  max_val_examples=max_val_examples)
    baselines = majority_baseline(questions, question, answer, train, val)
    if max_examples is not None:
        train = train[:max_examples]
    if len(train) == 0:
        raise DataError("no answers to train the soft prompt on", expected="a study with known answers")
    if teacher_cells is not None and teacher is not None and max_examples is not None \
            and len(train) < max_examples:
        fill_r, fill_q = _teacher_only_cells(teacher_cells, answers, rng, max_examples - len(train))
        train = np.concatenate([train, len(answer) + np.arange(len(fill_r))])
        respondent = np.concatenate([respondent, fill_r])
        question = np.concatenate([question, fill_q])
        answer = np.concatenate([answer, np.full(len(fill_r), -1, dtype=answer.dtype)])  # no answer: teacher only
    spoken = rng.random(len(answer)) < words_share
    spoken[val] = False  # validation (early stopping) scores the answers by letter
    spoken[answer < 0] = False  # a teacher-only cell has no answer to say
    return _Examples(respondent, question, answer, train, val, spoken, baselines)


def _teacher_only_cells(teacher_cells: np.ndarray, answers: np.ndarray, rng: np.random.Generator,
                        n: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``n`` random cells of ``teacher_cells`` without an answer, as ``(respondent, question)`` arrays."""
    cells = np.asarray(teacher_cells, dtype=bool)
    if cells.shape != answers.shape:
        raise DataError(f"teacher cells of shape {cells.shape}", expected=f"shape {answers.shape}")
    fill_r, fill_q = np.nonzero(cells & (answers == MISSING))
    pick = rng.permutation(len(fill_r))[:n]
    return fill_r[pick], fill_q[pick]


# ------------------------------------------------------------------ the loss
class _SoftPromptLoss:
    """The loss of the soft prompt on rows of the examples: letters (with the teacher) and replies in words.

    Preparing it computes the questions' prompts once (they are the same
    for every persona) and the teacher's targets.
    """

    def __init__(self, llm, soft_prompt, embeddings: np.ndarray, questions, examples: _Examples, *,
                 teacher: np.ndarray | None, teacher_weight: float, system: str | None) -> None:
        self.llm, self.examples, self.teacher_weight = llm, examples, teacher_weight
        self.spm = soft_prompt.to(llm.device).train()
        placement = self.spm.config.placement
        encoded = encode_questions(llm.tokenizer, questions, system)
        self.prompts = Prompts.for_questions(llm, encoded, placement)
        if not self.spm.embedding_scaled:  # a fresh SPM; a resumed one keeps its input scale
            self.spm.set_embedding_scale(embeddings[np.unique(examples.respondent[examples.train])])
        self.x = torch.as_tensor(embeddings, device=llm.device)
        self.y = torch.as_tensor(examples.answer, device=llm.device)
        self.soft = None if teacher is None else _teacher_targets(teacher, examples, len(encoded.letter_ids),
                                                                  llm.device)
        self.free = self.replies = None
        if examples.spoken.any():
            self.free = Prompts.for_questions(
                llm, encode_questions(llm.tokenizer, questions, system, lettered=False), placement)
            self.replies = reply_ids(llm.tokenizer, questions)
        # Without every prompt cached, a batch pays for each distinct question it asks: ask few per batch.
        self.grouped = not (self.prompts.fully_cached and (self.free is None or self.free.fully_cached))
        self.val = examples.val
        if self.grouped:
            self.val = self.val[np.argsort(examples.question[self.val], kind="stable")]  # the loss is order-free
        self.n_val = len(self.val)

    def __call__(self, rows: np.ndarray, training: bool = True) -> tuple[torch.Tensor, int, int]:
        """Mean loss over ``rows``, and letter hits and letter examples among them."""
        ex, kind = self.examples, self.spm.config.kind
        letters, words = rows[~ex.spoken[rows]], rows[ex.spoken[rows]]
        loss, hits = 0.0, 0
        if len(letters):
            logits = letter_logits(self.llm, self.prompts, ex.question[letters],
                                   self.spm(self.x[ex.respondent[letters]]), kind=kind)
            hard = F.cross_entropy(logits, self.y[letters], reduction="sum", ignore_index=-1)
            if self.soft is not None and training:
                log_p = torch.log_softmax(logits, dim=-1).clamp_min(-1e4)  # -inf past the options
                distilled = -(self.soft[letters] * log_p).sum(-1)
                # cells without an answer learn from the teacher alone
                weight = torch.where(self.y[letters] >= 0, self.teacher_weight, 1.0)
                hard = (1 - self.teacher_weight) * hard + (weight * distilled).sum()
            loss = loss + hard
            hits = int((logits.argmax(-1) == self.y[letters]).sum())
        if len(words):
            loss = loss + len(words) * reply_loss(
                self.llm, self.free, [self.replies[q][a] for q, a in zip(ex.question[words], ex.answer[words])],
                ex.question[words], self.spm(self.x[ex.respondent[words]]), kind=kind)
        return loss / len(rows), hits, len(letters)

    def validate(self, batch_size: int, cancel) -> tuple[float, float]:
        """Validation loss and letter accuracy; raises :class:`_Cancelled` between batches."""
        if self.n_val == 0:
            return math.nan, math.nan
        self.spm.eval()
        total_loss, hits, asked = 0.0, 0, 0
        with torch.no_grad():
            for start in range(0, self.n_val, batch_size):
                _stop_if_cancelled(cancel)
                rows = self.val[start:start + batch_size]
                loss, batch_hits, batch_asked = self(rows, training=False)
                total_loss += loss.item() * len(rows)
                hits, asked = hits + batch_hits, asked + batch_asked
        self.spm.train()
        return total_loss / self.n_val, hits / asked if asked else math.nan

    def epoch_order(self, rng: np.random.Generator, rows: np.ndarray, batch_size: int) -> np.ndarray:
        """A new epoch's order of the training ``rows``: shuffled, in runs of one question when grouped."""
        if self.grouped:
            return grouped_order(rng, rows, self.examples.question, batch_size // 2)
        return rng.permutation(rows)


def _teacher_targets(teacher: np.ndarray, examples: _Examples, n_letters: int, device) -> torch.Tensor:
    """The teacher's distribution over each example's option letters, ``(n_examples, n_letters)``, summing to 1."""
    soft = np.zeros((len(examples.answer), n_letters), dtype=np.float32)
    width = min(n_letters, teacher.shape[2])
    soft[:, :width] = teacher[examples.respondent, examples.question, :width]
    return torch.as_tensor(soft / soft.sum(axis=1, keepdims=True).clip(1e-12), device=device)


# ------------------------------------------------------------------ the loop
def _optimize(loss: _SoftPromptLoss, train: np.ndarray, result: TrainingResult, rng: np.random.Generator, *,
              total: int, batch_size: int, lr: float, weight_decay: float, schedule: str, eval_every: int | None,
              patience: int, progress, cancel, checkpoint) -> None:
    """``total`` AdamW steps on the ``train`` examples, validated every ``eval_every``; fills ``result``.

    The soft prompt ends with its best validated weights, also after a
    cancel or an early stop, and is saved in ``checkpoint`` (if any).
    """
    spm, steps_per_epoch = loss.spm, math.ceil(len(train) / batch_size)
    optimizer = torch.optim.AdamW(spm.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, learning_rate_factor(schedule, total))
    eval_every = eval_every or max(1, total // 10)
    best, running, step_seconds = _BestWeights(spm, checkpoint, cancel), [], 0.0
    try:  # a cancel raises _Cancelled: before a step, between validation batches, before a checkpoint
        result.best_val_loss, result.val_accuracy = loss.validate(batch_size, cancel)
        if not math.isnan(result.best_val_loss):
            best.keep()
        started = time.perf_counter()
        for step in range(total):
            _stop_if_cancelled(cancel)
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
                info.update(_validation_check(loss, result, best, running, started, batch_size, cancel))
            if progress is not None:
                progress(step + 1, total, info)
            if loss.n_val and best.bad_checks >= patience:
                result.stopped = "early_stopping"
                break
    except _Cancelled:
        result.stopped = "cancelled"
    best.restore()


def _validation_check(loss: _SoftPromptLoss, result: TrainingResult, best: "_BestWeights", running: list,
                      started: float, batch_size: int, cancel) -> dict:
    """Validate, record the check in ``result.history`` and keep the weights when they are the best yet.

    ``running``: the training losses since the last check (emptied).
    Returns the check's ``val_loss`` and ``val_accuracy``.
    """
    val_loss, val_accuracy = loss.validate(batch_size, cancel)
    result.history.append({"step": result.steps, "train_loss": float(np.mean(running)), "val_loss": val_loss,
                           "val_accuracy": val_accuracy, "seconds": time.perf_counter() - started})
    running.clear()
    if loss.n_val and val_loss < result.best_val_loss:
        result.best_val_loss, result.val_accuracy = val_loss, val_accuracy
        best.improved()
    elif loss.n_val:
        best.bad_checks += 1
    return {"val_loss": val_loss, "val_accuracy": val_accuracy}


class _BestWeights:
    """The soft prompt's best validated weights so far, saved in ``checkpoint`` (if any) at each improvement."""

    def __init__(self, spm, checkpoint, cancel) -> None:
        self.spm, self.checkpoint, self.cancel = spm, checkpoint, cancel
        self.state, self.bad_checks = None, 0  # the weights, and the validation checks since they were kept

    def keep(self) -> None:
        self.state = copy.deepcopy(self.spm.state_dict())

    def improved(self) -> None:
        self.bad_checks = 0
        self.keep()
        if self.checkpoint is not None:
            _stop_if_cancelled(self.cancel)  # the best weights stay in memory for the end
            self.spm.save_pretrained(self.checkpoint)

    def restore(self) -> None:
        """Put the best weights back (also after a cancel), save them in ``checkpoint``, leave training mode."""
        if self.state is not None:
            self.spm.load_state_dict(self.state)
        if self.checkpoint is not None:
            self.spm.save_pretrained(self.checkpoint)
        self.spm.eval()


def grouped_order(rng: np.random.Generator, rows: np.ndarray, question: np.ndarray, run: int) -> np.ndarray:
    """A shuffled order of ``rows`` in runs of ``run`` examples of one question (mostly), the runs shuffled.

    A batch of ``2 * run`` examples then asks about two questions instead
    of one per example: with hundreds of questions whose prompts cannot all
    be cached, a step computes two prompts instead of thirty-two (see
    :class:`~persona_engine.steer.injection.Prompts`). Every example still
    comes once per epoch, its respondents and questions in random order.
    """
    rows = rng.permutation(rows)
    rank = rng.permutation(int(question.max()) + 1 if len(question) else 1)
    rows = rows[np.argsort(rank[question[rows]], kind="stable")]  # each question's examples together
    runs = [rows[i:i + max(run, 1)] for i in range(0, len(rows), max(run, 1))]
    return np.concatenate([runs[i] for i in rng.permutation(len(runs))]) if runs else rows


def reply_loss(llm, free: Prompts, replies: Sequence[Sequence[int]], question_index: np.ndarray,
               soft_prompt: torch.Tensor | None, *, kind: str = PREFIX_TUNING) -> torch.Tensor:
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


class _Cancelled(Exception):
    """Raised inside :func:`train_soft_prompt` when its ``cancel`` is set."""


def _cancelled(cancel) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel())


def _stop_if_cancelled(cancel) -> None:
    if _cancelled(cancel):
        raise _Cancelled


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
                              progress=lambda step, total, info: stamps.append(time.perf_counter()))
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
