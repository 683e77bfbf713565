"""A soft prompt's training inputs rearranged so that it learns what a new question asks of it.

A soft prompt trained on a study's answers sees every answer it is taught
through a respondent vector fitted on that very answer, and every question
with its options in the study's one order. A question nobody was asked
differs on both counts: the vector knows nothing of it, and its options
may come in any order. Two rearrangements of the inputs of
:func:`~persona_engine.steer.training.train_soft_prompt` (so the training
loop itself is unchanged) make training look like that:

* :func:`question_dropout`: each answer is taught from the respondent's
  vector folded in *without* the answer's question (with the collaborative
  filter's question vectors frozen, as for a new respondent). The questions
  are dealt into groups; each group contributes one copy of every
  respondent, placed without the group's questions and teaching only them.
  Every answer is still taught once, and the teacher's distribution becomes
  the filter's prediction of an answer it did not see.
* :func:`shuffled_orders`: each answer is taught with its question's
  options in one of their orders (every order for up to 3 options, a
  sample of them beyond), so that a letter carries no stance by itself and
  only the options' words tell the soft prompt which one a persona picks
  (the fixed order is what Dominguez-Olmedo et al., 2023, found to fake
  alignment).

Both take and return :class:`TrainingInputs`; :func:`rearranged` applies
those that a run's :class:`~persona_engine.steer.settings.SteeringSettings`
ask for (``question_dropout``, ``train_shuffled_options``), question dropout
first, since it needs the study's own questions.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace

import numpy as np

from persona_engine.errors import DataError
from persona_engine.opinion_data import MISSING, Question

MAX_GROUPS = 12
"""Most question groups :func:`question_dropout` folds the respondents in without (one fold-in each)."""
MAX_ORDERS = 6
"""Most option orders :func:`shuffled_orders` teaches a question in (every order of up to 3 options)."""
MAX_CELLS = 40_000_000
"""Most cells (rows x questions) a rearrangement may make: its matrices are dense, and a study of
thousands of respondents and hundreds of questions would not fit in memory."""


@dataclass
class TrainingInputs:
    """What :func:`~persona_engine.steer.training.train_soft_prompt` learns from: its ``embeddings``,
    ``questions``, ``answers`` and ``teacher``, and the ``unanswered`` cells (its ``teacher_cells``).

    ``embeddings`` ``(rows, dim)``; ``answers`` ``(rows, len(questions))``, ``MISSING`` where not
    taught; ``teacher`` ``(rows, len(questions), options)`` or ``None``; ``unanswered`` bool like
    ``answers``: cells without an answer that the teacher alone may teach.
    """

    embeddings: np.ndarray
    questions: list[Question]
    answers: np.ndarray
    teacher: np.ndarray | None
    unanswered: np.ndarray

    @classmethod
    def of(cls, embedder, embeddings: np.ndarray, questions, answers: np.ndarray, *,
           teacher: bool = True, unanswered: np.ndarray | None = None) -> TrainingInputs:
        """The plain inputs: ``embeddings`` of the ``answers``' rows, ``embedder``'s predictions as teacher.

        ``teacher``: whether there is one (``False`` when the loss has no teacher's share);
        ``unanswered``: the cells the teacher alone may teach (default: every cell without an answer).
        """
        width = max(q.n_options for q in questions)
        taught = embedder.predict_proba(embeddings)[..., :width].astype(np.float32) if teacher else None
        answers = np.asarray(answers)
        return cls(np.asarray(embeddings, dtype=np.float32), list(questions), answers, taught,
                   answers == MISSING if unanswered is None else np.asarray(unanswered, dtype=bool))


def rearranged(inputs: TrainingInputs, embedder, settings, rng: np.random.Generator) -> TrainingInputs:
    """``inputs`` rearranged as ``settings`` (:class:`~persona_engine.steer.settings.SteeringSettings`) ask:
    :func:`question_dropout` (with ``embedder``, the filter fitted on ``inputs.answers``) if
    ``question_dropout``, then :func:`shuffled_orders` if ``train_shuffled_options``."""
    if settings.question_dropout:
        inputs = question_dropout(inputs, embedder, rng)
    if settings.train_shuffled_options:
        inputs = shuffled_orders(inputs, rng)
    return inputs


def question_groups(n_questions: int, rng: np.random.Generator, max_groups: int = MAX_GROUPS) -> list[np.ndarray]:
    """The questions ``0..n_questions-1`` dealt at random into ``min(n_questions, max_groups)`` groups."""
    return [np.sort(g) for g in np.array_split(rng.permutation(n_questions), min(n_questions, max_groups))]


def question_dropout(inputs: TrainingInputs, embedder, rng: np.random.Generator, *,
                     max_groups: int = MAX_GROUPS) -> TrainingInputs:
    """Each answer taught from the respondent's vector folded in without its question (module docstring).

    ``embedder``: the collaborative filter fitted on ``inputs.answers`` (its questions in that order);
    its ``transform`` places the respondents and its ``predict_proba`` gives the teacher. Returns
    ``len(groups) * rows`` rows: group ``g``'s copy of respondent ``r`` is row ``g * rows + r``.
    """
    answers, width = inputs.answers, inputs.teacher.shape[-1] if inputs.teacher is not None else None
    groups = question_groups(answers.shape[1], rng, max_groups)
    _check_size(len(groups) * answers.size, "question dropout")
    embeddings, taught, teachers, unanswered = [], [], [], []
    for group in groups:
        without = answers.copy()
        without[:, group] = MISSING
        placed = np.asarray(embedder.transform(without), dtype=np.float32)
        only = np.full(answers.shape, MISSING, dtype=answers.dtype)
        only[:, group] = answers[:, group]
        cells = np.zeros(answers.shape, dtype=bool)
        cells[:, group] = inputs.unanswered[:, group]
        embeddings.append(placed)
        taught.append(only)
        unanswered.append(cells)
        if width is not None:
            teachers.append(embedder.predict_proba(placed)[..., :width].astype(np.float32))
    return TrainingInputs(np.concatenate(embeddings), inputs.questions, np.concatenate(taught),
                          np.concatenate(teachers) if teachers else None, np.concatenate(unanswered))


def option_orders(n_options: int, rng: np.random.Generator, max_orders: int = MAX_ORDERS) -> list[tuple[int, ...]]:
    """Orders of ``n_options`` options (``order[k]``: the original option shown ``k``-th), the study's first.

    Every order when there are at most ``max_orders`` of them; otherwise the study's and
    ``max_orders - 1`` distinct random others.
    """
    identity = tuple(range(n_options))
    if math.factorial(n_options) <= max_orders:
        return [identity] + [p for p in itertools.permutations(range(n_options)) if p != identity]
    orders = [identity]
    while len(orders) < max_orders:
        order = tuple(int(k) for k in rng.permutation(n_options))
        if order not in orders:
            orders.append(order)
    return orders


def shuffled_orders(inputs: TrainingInputs, rng: np.random.Generator, *,
                    max_orders: int = MAX_ORDERS) -> TrainingInputs:
    """Each cell taught with its question's options in one random order of its own (module docstring).

    The questions become one variant per order (same id and text, options reordered, after
    :func:`option_orders`); each cell of ``inputs`` moves to one variant of its question, drawn at
    random, with its answer, teacher distribution and ``unanswered`` flag in that variant's order.
    """
    rows = inputs.answers.shape[0]
    variants, source, orders = [], [], []
    for j, question in enumerate(inputs.questions):
        for order in option_orders(question.n_options, rng, max_orders):
            variants.append(question.reordered(order))
            source.append(j)
            orders.append(order)
    _check_size(rows * len(variants), "shuffled option orders")
    source = np.array(source)
    first = np.searchsorted(source, np.arange(len(inputs.questions)))
    count = np.bincount(source, minlength=len(inputs.questions))
    pick = first + (rng.random((rows, len(inputs.questions))) * count).astype(int)  # each cell's variant

    answers = np.full((rows, len(variants)), MISSING, dtype=inputs.answers.dtype)
    unanswered = np.zeros((rows, len(variants)), dtype=bool)
    teacher = None if inputs.teacher is None else np.zeros((rows, len(variants), inputs.teacher.shape[-1]),
                                                           dtype=np.float32)
    r = np.arange(rows)
    for j in range(len(inputs.questions)):
        for v in range(first[j], first[j] + count[j]):
            here = r[pick[:, j] == v]
            order = np.array(orders[v])
            position = np.argsort(order)  # where each original option is shown
            known = inputs.answers[here, j] != MISSING
            answers[here[known], v] = position[inputs.answers[here[known], j]]
            unanswered[here, v] = inputs.unanswered[here, j]
            if teacher is not None:
                teacher[here, v, : len(order)] = inputs.teacher[here, j][:, order]
    return replace(inputs, questions=variants, answers=answers, teacher=teacher, unanswered=unanswered)



def _check_size(cells: int, what: str) -> None:
    if cells > MAX_CELLS:
        raise DataError(f"{what} would make {cells:,} training cells, more than fit in memory",
                        expected=f"at most {MAX_CELLS:,} cells: a smaller study, or training without this option")
