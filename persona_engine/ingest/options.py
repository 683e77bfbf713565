"""How the answers written in a file become option indices.

A cell is matched to an option by its *answer key*: numbers by value (so
``1``, ``1.0`` and ``" 1 "`` are the same answer) and text by its trimmed,
case-folded form (so ``"Agree"`` and ``"agree "`` are too). Blank cells are
missing. Both a codebook's options and the options observed in a column
without one are matched this way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from persona_engine.errors import DataError
from persona_engine.ingest.scales import scale_order
from persona_engine.opinion_data import MISSING, Question, options_in_natural_order

MAX_AUTO_OPTIONS = 12
"""Without a codebook, a column with more distinct answers than this is metadata."""

AnswerKey = tuple  # ("n", float) for numbers, ("t", casefolded text) for text


def answer_key(value) -> AnswerKey | None:
    """The key a cell is matched by, or ``None`` for a missing cell."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (bool, np.bool_)):
        return ("t", str(bool(value)).casefold())
    if isinstance(value, (int, float, np.integer, np.floating)):
        number = float(value)
        return None if math.isnan(number) else ("n", number)
    text = str(value).strip()
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        return ("t", text.casefold())
    return ("n", number) if math.isfinite(number) else ("t", text.casefold())


def answer_label(key: AnswerKey, spelling) -> str:
    """How an observed answer is shown as an option: ``1.0`` becomes ``"1"``."""
    if key[0] == "n":
        number = key[1]
        return str(int(number)) if number.is_integer() else repr(number)
    return str(spelling).strip()


@dataclass(frozen=True)
class ColumnValues:
    """The distinct answers of one column, factorized once.

    ``codes[i]`` is the position in ``keys`` of row ``i``'s answer, ``-1`` if
    the cell is blank; ``spellings`` holds the most common way each key is
    written and ``counts`` how often it occurs.
    """

    codes: np.ndarray
    keys: tuple
    spellings: tuple
    counts: np.ndarray

    @classmethod
    def of(cls, values: Sequence) -> "ColumnValues":
        raw_codes, uniques = pd.factorize(pd.Series(list(values), dtype=object),
                                          use_na_sentinel=True)
        raw_counts = np.bincount(raw_codes[raw_codes >= 0], minlength=len(uniques))
        keys: list = []
        spellings: list = []
        best: list[int] = []
        position: dict = {}
        remap = np.full(len(uniques) + 1, -1, dtype=np.int64)
        for u, value in enumerate(uniques):
            key = answer_key(value)
            if key is None:
                continue
            if key not in position:
                position[key] = len(keys)
                keys.append(key)
                spellings.append(value)
                best.append(0)
            k = position[key]
            if raw_counts[u] > best[k]:  # the most common spelling names the option
                best[k], spellings[k] = raw_counts[u], value
            remap[u] = k
        codes = remap[raw_codes]  # raw -1 (NaN) indexes remap[-1], which is -1
        counts = np.bincount(codes[codes >= 0], minlength=len(keys))
        return cls(codes, tuple(keys), tuple(spellings), counts)

    @property
    def n_distinct(self) -> int:
        return len(self.keys)

    @property
    def numeric(self) -> bool:
        return self.n_distinct > 0 and all(k[0] == "n" for k in self.keys)

    @property
    def whole_numbers(self) -> bool:
        return self.numeric and all(float(k[1]).is_integer() for k in self.keys)

    def without(self, non_answers: Sequence) -> "ColumnValues":
        """The same column with the answers in ``non_answers`` turned blank."""
        drop = {answer_key(v) for v in non_answers}
        keep = [k for k, key in enumerate(self.keys) if key not in drop]
        if len(keep) == self.n_distinct:
            return self
        remap = np.full(self.n_distinct + 1, -1, dtype=np.int64)
        remap[keep] = np.arange(len(keep))
        return ColumnValues(remap[self.codes], tuple(self.keys[k] for k in keep),
                            tuple(self.spellings[k] for k in keep), self.counts[keep])

    def example(self, index: int = 0) -> str:
        return str(self.spellings[index]).strip()

    def first_row(self, key_index: int) -> int:
        """Spreadsheet row (header = 1) of the first cell holding ``keys[key_index]``."""
        return int(np.flatnonzero(self.codes == key_index)[0]) + 2


def looks_like_free_text(column: ColumnValues) -> str | None:
    """An example value if the column reads like typed-in text, else ``None``.

    Free text has many distinct, mostly non-numeric answers that are long or
    rarely repeated; a closed question's answers repeat.
    """
    text = [i for i, k in enumerate(column.keys) if k[0] == "t"]
    if len(text) <= MAX_AUTO_OPTIONS:
        return None
    lengths = [len(str(column.spellings[i])) for i in text]
    rarely_repeated = len(text) >= 0.5 * column.counts[text].sum()
    if np.mean(lengths) >= 20 or rarely_repeated:
        longest = max(text, key=lambda i: len(str(column.spellings[i])))
        return column.example(longest)[:80]
    return None


def observed_question(question_id: str, column: ColumnValues, text: str | None = None,
                      ordinal: bool | None = None) -> tuple[Question, np.ndarray]:
    """A question whose options are the answers seen in its column.

    Numbers are sorted by value and the question is ordinal with those values
    as ``option_values``. Text that is one known response scale ("Strongly
    agree" ... "Strongly disagree", see :mod:`~persona_engine.ingest.scales`)
    is put in scale order and is ordinal; other text is sorted alphabetically
    and nominal, because the alphabet is no scale. Returns the question and
    its answers as option indices, shape ``(n_rows,)``.
    """
    labels = [answer_label(k, s) for k, s in zip(column.keys, column.spellings)]
    scale = None if column.numeric else scale_order(labels)
    order = scale or options_in_natural_order(labels)
    by_label = {label: i for i, label in enumerate(labels)}
    index_of_key = np.array([order.index(label) for label in labels] + [MISSING])
    if column.numeric:
        values = tuple(column.keys[by_label[label]][1] for label in order)
        question = Question(question_id, text or question_id, tuple(order),
                            ordinal=True if ordinal is None else ordinal, option_values=values)
    else:
        question = Question(question_id, text or question_id, tuple(order),
                            ordinal=(scale is not None) if ordinal is None else ordinal)
    return question, index_of_key[column.codes].astype(np.int16)


def coded_answers(column: ColumnValues, codes: Sequence, missing: Sequence, *,
                  file: str, column_name: str, options: Sequence[str]) -> np.ndarray:
    """Answers as option indices, shape ``(n_rows,)``, given each option's code.

    ``codes[k]`` is how option ``k`` is written in the file; answers equal to
    one of ``missing`` (e.g. ``"Refused"``, ``9``) become :data:`MISSING`.
    Any other value raises :class:`DataError` naming its row and column.
    """
    wanted = {answer_key(c): k for k, c in enumerate(codes)}
    non_answers = {answer_key(m) for m in missing}
    index_of_key = np.full(column.n_distinct + 1, MISSING, dtype=np.int16)
    for k, key in enumerate(column.keys):
        if key in wanted:
            index_of_key[k] = wanted[key]
        elif key not in non_answers:
            shown = ", ".join(f"{c!s} ({o})" if str(c) != str(o) else str(c)
                              for c, o in zip(codes, options))
            raise DataError(f"answer '{column.example(k)}' is not one of the question's codes",
                            file=file, row=column.first_row(k), column=column_name,
                            expected=f"one of {shown}"
                            + (f", or a non-answer ({', '.join(map(str, missing))})"
                               if missing else ", or a blank cell"))
    return index_of_key[column.codes]
