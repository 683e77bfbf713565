"""The one in-memory form of a study's opinions: who answered which option.

Every input format (Polis export, wide or long table, Pew wave) is read into
:class:`OpinionData`; every later stage (embedding, cohorts, map, steering,
evaluation) reads only this.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from persona_engine.errors import DataError

MISSING = -1
"""Code for 'no answer' in :attr:`OpinionData.answers` (unseen, skipped or a non-answer)."""


@dataclass(frozen=True)
class Question:
    """One question (or Polis statement) and its answer options.

    Attributes
    ----------
    id:
        Stable identifier: the column name, Polis comment id or Pew key.
    text:
        The wording shown to respondents (falls back to ``id``).
    options:
        Answer labels in their natural order (for ordinal questions, from one
        end of the scale to the other).
    ordinal:
        Whether ``options`` form an ordered scale.
    option_values:
        Optional numeric value of each option on its scale (e.g. Polis
        disagree -1, pass 0, agree 1); ``None`` means evenly spaced.
    """

    id: str
    text: str
    options: tuple[str, ...]
    ordinal: bool = True
    option_values: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", tuple(str(o) for o in self.options))
        if self.option_values is not None:
            values = tuple(float(v) for v in self.option_values)
            if len(values) != len(self.options):
                raise DataError(
                    f"{len(values)} option values for {len(self.options)} options",
                    column=self.id,
                    expected="one value per option",
                )
            object.__setattr__(self, "option_values", values)

    @property
    def n_options(self) -> int:
        return len(self.options)

    def reordered(self, order) -> Question:
        """This question with its options shown in ``order`` (``order[k]``: the option shown ``k``-th)."""
        values = self.option_values
        return Question(self.id, self.text, tuple(self.options[k] for k in order), self.ordinal,
                        None if values is None else tuple(values[k] for k in order))

    def scaled_values(self) -> np.ndarray:
        """Each option's position on [0, 1], shape ``(n_options,)``.

        Uses ``option_values`` when given, else even spacing. This is the
        paper's scaling of answers for its MSE matrix factorization.
        """
        values = (
            np.asarray(self.option_values, dtype=np.float64)
            if self.option_values is not None
            else np.arange(self.n_options, dtype=np.float64)
        )
        span = values.max() - values.min()
        if span == 0:
            return np.zeros(self.n_options)
        return (values - values.min()) / span


@dataclass(frozen=True)
class Source:
    """Where the opinions came from."""

    name: str
    format: str
    files: tuple[str, ...] = ()
    weight_column: str | None = None
    """The column the survey weights were read from, if any."""


@dataclass
class OpinionData:
    """Respondents' answers to questions, as option indices.

    Attributes
    ----------
    respondent_ids:
        Shape ``(n_respondents,)``, unique strings.
    questions:
        ``n_questions`` :class:`Question` objects, in column order of ``answers``.
    answers:
        Shape ``(n_respondents, n_questions)``, ``int16``: the index of the
        chosen option in ``questions[j].options``, or :data:`MISSING` (-1).
        Missing answers are never imputed.
    metadata:
        One row per respondent (index = ``respondent_ids``), one column per
        attribute that is not a question (party, age, Polis group, ...).
    weights:
        Shape ``(n_respondents,)`` survey weights, or ``None``.
    source:
        The format and files this was read from.
    """

    respondent_ids: np.ndarray
    questions: tuple[Question, ...]
    answers: np.ndarray
    metadata: pd.DataFrame = field(default_factory=pd.DataFrame)
    weights: np.ndarray | None = None
    source: Source = field(default_factory=lambda: Source(name="unnamed", format="memory"))

    def __post_init__(self) -> None:
        self.respondent_ids = np.asarray([str(r) for r in self.respondent_ids], dtype=object)
        self.questions = tuple(self.questions)
        self.answers = np.asarray(self.answers, dtype=np.int16)
        if self.metadata is None or self.metadata.empty and len(self.metadata.columns) == 0:
            self.metadata = pd.DataFrame(index=pd.Index(self.respondent_ids, name="respondent_id"))
        else:
            self.metadata = self.metadata.copy()
            self.metadata.index = pd.Index(self.respondent_ids, name="respondent_id")
        if self.weights is not None:
            self.weights = np.asarray(self.weights, dtype=np.float64)
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise :class:`DataError` if the parts do not fit together."""
        n, q = len(self.respondent_ids), len(self.questions)
        where = self.source.files[0] if self.source.files else self.source.name
        if n == 0:
            raise DataError("no respondents", file=where, expected="at least one respondent row")
        if q == 0:
            raise DataError("no questions", file=where, expected="at least one question column")
        if self.answers.shape != (n, q):
            raise DataError(
                f"answer matrix has shape {self.answers.shape} for {n} respondents and {q} questions"
            )
        ids = pd.Index(self.respondent_ids)
        if ids.has_duplicates:
            dup = ids[ids.duplicated()][0]
            raise DataError(f"respondent id '{dup}' appears more than once", file=where,
                            expected="one row per respondent")
        qids = pd.Index([qq.id for qq in self.questions])
        if qids.has_duplicates:
            raise DataError(f"question id '{qids[qids.duplicated()][0]}' appears more than once",
                            file=where)
        for j, question in enumerate(self.questions):
            if question.n_options < 2:
                raise DataError(
                    f"question has {question.n_options} option(s)",
                    file=where, column=question.id, expected="at least 2 answer options",
                )
            col = self.answers[:, j]
            bad = (col < MISSING) | (col >= question.n_options)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise DataError(
                    f"answer code {int(col[i])} is outside the question's {question.n_options} options",
                    file=where, column=question.id, row=i + 2,
                )
        if self.weights is not None and self.weights.shape != (n,):
            raise DataError(f"weights have shape {self.weights.shape} for {n} respondents")

    # -------------------------------------------------------------- properties
    @property
    def n_respondents(self) -> int:
        return len(self.respondent_ids)

    @property
    def n_questions(self) -> int:
        return len(self.questions)

    @property
    def question_ids(self) -> list[str]:
        return [q.id for q in self.questions]

    @property
    def n_options(self) -> np.ndarray:
        """Shape ``(n_questions,)``: how many options each question has."""
        return np.array([q.n_options for q in self.questions], dtype=np.int64)

    @property
    def observed(self) -> np.ndarray:
        """Shape ``(n_respondents, n_questions)`` bool: which answers are known."""
        return self.answers != MISSING

    @property
    def fill(self) -> float:
        """Share of respondent × question cells with an answer."""
        return float(self.observed.mean())

    # ------------------------------------------------------------- selections
    def question_index(self, question_id: str) -> int:
        try:
            return self.question_ids.index(str(question_id))
        except ValueError:
            raise DataError(f"no question with id '{question_id}'",
                            expected=f"one of {', '.join(self.question_ids[:8])}...") from None

    def respondent_index(self, respondent_id: str) -> int:
        hits = np.flatnonzero(self.respondent_ids == str(respondent_id))
        if len(hits) == 0:
            raise DataError(f"no respondent with id '{respondent_id}'")
        return int(hits[0])

    def subset(
        self,
        respondents: Sequence[int] | np.ndarray | None = None,
        questions: Sequence[int] | np.ndarray | None = None,
    ) -> "OpinionData":
        """A copy restricted to some respondents and/or questions (by position or mask)."""
        r = np.arange(self.n_respondents) if respondents is None else np.asarray(respondents)
        c = np.arange(self.n_questions) if questions is None else np.asarray(questions)
        if r.dtype == bool:
            r = np.flatnonzero(r)
        if c.dtype == bool:
            c = np.flatnonzero(c)
        return replace(
            self,
            respondent_ids=self.respondent_ids[r],
            questions=tuple(self.questions[j] for j in c),
            answers=self.answers[np.ix_(r, c)],
            metadata=self.metadata.iloc[r],
            weights=None if self.weights is None else self.weights[r],
        )

    def with_answers(self, answers: np.ndarray) -> "OpinionData":
        """The same respondents and questions with another answer matrix (e.g. a training split)."""
        return replace(self, answers=answers)

    # ---------------------------------------------------------------- views
    def answer_labels(self, respondent: int) -> dict[str, str]:
        """``{question_id: option label}`` for one respondent's known answers."""
        row = self.answers[respondent]
        return {
            q.id: q.options[a] for q, a in zip(self.questions, row) if a != MISSING
        }

    def to_long(self) -> pd.DataFrame:
        """Known answers as a long table: respondent_id, question_id, option, answer."""
        rows, cols = np.nonzero(self.observed)
        codes = self.answers[rows, cols]
        return pd.DataFrame(
            {
                "respondent_id": self.respondent_ids[rows],
                "question_id": [self.questions[j].id for j in cols],
                "option": codes.astype(np.int64),
                "answer": [self.questions[j].options[a] for j, a in zip(cols, codes)],
            }
        )

    def answer_counts(self, rows: np.ndarray | None = None) -> list[np.ndarray]:
        """Per question, counts of each option among ``rows`` (all respondents by default)."""
        answers = self.answers if rows is None else self.answers[rows]
        return [
            np.bincount(answers[:, j][answers[:, j] != MISSING], minlength=q.n_options)
            for j, q in enumerate(self.questions)
        ]

    def summary(self) -> dict:
        """Small dict describing the data, for manifests and the CLI."""
        per_respondent = self.observed.sum(axis=1)
        return {
            "name": self.source.name,
            "format": self.source.format,
            "respondents": self.n_respondents,
            "questions": self.n_questions,
            "answers": int(self.observed.sum()),
            "fill": round(self.fill, 4),
            "median_answers_per_respondent": float(np.median(per_respondent)),
            "metadata_columns": list(map(str, self.metadata.columns)),
            "weighted": self.weights is not None,
        }

    def __repr__(self) -> str:
        return (
            f"OpinionData(name={self.source.name!r}, format={self.source.format!r}, "
            f"respondents={self.n_respondents}, questions={self.n_questions}, fill={self.fill:.2f})"
        )


def options_in_natural_order(values: Iterable) -> list:
    """Sort observed answer values the way a person would list them.

    Numbers sort numerically (including numeric strings like "10" after "9");
    anything else keeps a case-insensitive alphabetical order.
    """
    values = list(dict.fromkeys(values))
    numeric = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce")
    if numeric.notna().all():
        return [v for _, v in sorted(zip(numeric.tolist(), values), key=lambda t: t[0])]
    return sorted(values, key=lambda v: str(v).casefold())
