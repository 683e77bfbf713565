"""The examples a soft prompt trains on, drawn from a study's answers.

Each example is one cell of the answer matrix ``(n_respondents,
n_questions)``: a respondent, a question and the option they chose. A run
(:func:`~persona_engine.steer.training.train_soft_prompt`) draws, from one
generator and in this order: the validation split (examples held back for
early stopping), the training subsample (``max_examples``), the cells the
collaborative filter alone teaches when the answers are fewer than that
(teacher fill: cells nobody answered, with the filter's distribution as
their only target), and the share of the training examples taught as a
reply in words instead of by a letter (``words_share``). Nothing here needs
the LLM; every array is of indices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from persona_engine.errors import DataError
from persona_engine.opinion_data import MISSING
from persona_engine.steer.settings import SteeringSettings, validation_size

DEFAULTS = SteeringSettings()
VALIDATION = 0.1
"""Share of the known answers held back for early stopping (at most ``max_val_examples``)."""


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


def example_counts(answers: np.ndarray, *, validation: float = VALIDATION,
                   max_examples: int | None = DEFAULTS.max_examples,
                   max_val_examples: int | None = DEFAULTS.max_val_examples,
                   teacher_cells: np.ndarray | None = None) -> tuple[int, int]:
    """``(n_train, n_val)``: the examples :func:`~persona_engine.steer.training.train_soft_prompt` would train and validate on.

    ``teacher_cells`` as there (with a teacher given).
    """
    known = int((np.asarray(answers) != MISSING).sum())
    n_val = _validation_count(known, validation, max_examples, max_val_examples)
    n_train = known - n_val if max_examples is None else min(known - n_val, max_examples)
    if teacher_cells is not None and max_examples is not None and n_train < max_examples:
        unanswered = int((np.asarray(teacher_cells, dtype=bool) & (np.asarray(answers) == MISSING)).sum())
        n_train += min(unanswered, max_examples - n_train)
    return n_train, n_val


@dataclass
class Examples:
    """A run's examples as index arrays ``(n_examples,)``, and which of them train and validate.

    The ``n_answers`` known answers come first; examples past them are
    cells the teacher alone teaches (``answer`` -1).
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
    n_answers: int
    """How many examples are known answers (the first ones)."""

    @property
    def unvalidated(self) -> np.ndarray:
        """Indices of every known answer not held back for validation: those ``train`` was cut from."""
        return np.setdiff1d(np.arange(self.n_answers), self.val)


def draw_examples(answers: np.ndarray, rng: np.random.Generator, *, validation: float,
                  max_examples: int | None, max_val_examples: int | None, teacher: np.ndarray | None,
                  teacher_cells: np.ndarray | None, words_share: float) -> Examples:
    """The validation split, the training subsample, the teacher's cells and the examples taught in words.

    Drawn from ``rng`` in that order, the split first (see :func:`validation_split`).
    """
    respondent, question, answer = answer_examples(answers)
    n_answers = len(answer)
    val, train = validation_split(n_answers, rng, validation=validation, max_examples=max_examples,
                                  max_val_examples=max_val_examples)
    if max_examples is not None:
        train = train[:max_examples]
    if len(train) == 0:
        raise DataError("no answers to train the soft prompt on", expected="a study with known answers")
    if teacher_cells is not None and teacher is not None and max_examples is not None \
            and len(train) < max_examples:
        fill_r, fill_q = _teacher_only_cells(teacher_cells, answers, rng, max_examples - len(train))
        train = np.concatenate([train, n_answers + np.arange(len(fill_r))])
        respondent = np.concatenate([respondent, fill_r])
        question = np.concatenate([question, fill_q])
        answer = np.concatenate([answer, np.full(len(fill_r), -1, dtype=answer.dtype)])  # no answer: teacher only
    spoken = rng.random(len(answer)) < words_share
    spoken[val] = False  # validation (early stopping) scores the answers by letter
    spoken[answer < 0] = False  # a teacher-only cell has no answer to say
    return Examples(respondent, question, answer, train, val, spoken, n_answers)


def _teacher_only_cells(teacher_cells: np.ndarray, answers: np.ndarray, rng: np.random.Generator,
                        n: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``n`` random cells of ``teacher_cells`` without an answer, as ``(respondent, question)`` arrays."""
    cells = np.asarray(teacher_cells, dtype=bool)
    if cells.shape != answers.shape:
        raise DataError(f"teacher cells of shape {cells.shape}", expected=f"shape {answers.shape}")
    fill_r, fill_q = np.nonzero(cells & (answers == MISSING))
    pick = rng.permutation(len(fill_r))[:n]
    return fill_r[pick], fill_q[pick]


def grouped_order(rng: np.random.Generator, rows: np.ndarray, question: np.ndarray, run: int) -> np.ndarray:
    """A shuffled order of ``rows`` in runs of ``run`` examples of one question (mostly), the runs shuffled.

    A batch of ``2 * run`` examples then asks about two questions instead
    of one per example: with hundreds of questions whose prompts cannot all
    be cached, a step computes two prompts instead of thirty-two (see
    :class:`~persona_engine.steer.prompt_cache.Prompts`). Every example still
    comes once per epoch, its respondents and questions in random order.
    """
    rows = rng.permutation(rows)
    rank = rng.permutation(int(question.max()) + 1 if len(question) else 1)
    rows = rows[np.argsort(rank[question[rows]], kind="stable")]  # each question's examples together
    runs = [rows[i:i + max(run, 1)] for i in range(0, len(rows), max(run, 1))]
    return np.concatenate([runs[i] for i in rng.permutation(len(runs))]) if runs else rows
