"""Writing codebooks out: the one a reading used, for the user to edit and give back.

* :func:`written_codebook` is the codebook a reading of a table implied (its
  questions with their options in order, the id, weight, metadata and ignored
  columns), so that reading the same file with it gives the same
  :class:`OpinionData`;
* :func:`codebook_json` is that codebook in the JSON form
  :func:`~persona_engine.ingest.codebook.read_codebook` reads (questions that
  share options, codes and missing codes share a scale), and
  :func:`codebook_text` the same as text to save;
* :func:`laid_over` puts the user's codebook over the one a labelled file or a
  Qualtrics export carries, so that a few edits need not repeat the rest.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
import numpy as np
import pandas as pd

from persona_engine.ingest.codebook import Codebook, MetadataSpec, QuestionSpec
from persona_engine.ingest.tables import id_texts
from persona_engine.opinion_data import OpinionData


def laid_over(base: Codebook, user: Codebook) -> Codebook:
    """``user``'s entries replace ``base``'s for every column ``user`` names.

    A question entry with ``options`` replaces the base entry's options,
    codes, values and missing codes; one without keeps them and replaces only
    the keys it gives (``text``, ``ordinal``, ``missing``). A column ``user``
    gives another role (metadata, ignore, id, weight) is no longer a question.
    """
    roles = {user.id_column, user.weight_column, *user.metadata, *user.ignore} - {None}
    named = roles | set(user.questions)
    questions = {c: s for c, s in base.questions.items() if c not in roles}
    for column, spec in user.questions.items():
        questions[column] = _merged(base.questions.get(column), spec)
    metadata = {c: s for c, s in base.metadata.items() if c not in named}
    for column, spec in user.metadata.items():
        old = base.metadata.get(column)
        metadata[column] = MetadataSpec(column, spec.text or (old.text if old else None),
                                        spec.labels or (old.labels if old else {}))
    ignore = [c for c in base.ignore if c not in named] + list(user.ignore)
    keep = (lambda column: column if column not in named else None)
    return Codebook(questions, metadata, user.id_column or keep(base.id_column),
                    user.weight_column or keep(base.weight_column), tuple(dict.fromkeys(ignore)),
                    tuple(dict.fromkeys([*base.missing, *user.missing])), user.name or base.name,
                    user.file)


def _merged(base: QuestionSpec | None, user: QuestionSpec) -> QuestionSpec:
    if base is None:
        return user
    ordinal = user.ordinal if user.ordinal is not None else base.ordinal
    if user.options is not None:
        return replace(user, text=user.text or base.text, ordinal=ordinal)
    return replace(base, text=user.text or base.text, ordinal=ordinal,
                   missing=user.missing or base.missing)


def written_codebook(data: OpinionData, table: pd.DataFrame | None,
                     book: Codebook | None = None) -> Codebook:
    """The codebook that reads ``table`` as ``data`` was read from it.

    ``table`` is the wide table read, or ``None`` for a long table (whose
    respondent, question and answer columns need no entry).
    ``book`` is the codebook the reading used, if any: its codes, missing
    codes, labels and ignored columns are kept; the rest comes from ``data``.
    Of the columns that are neither questions nor metadata, the one holding
    ``data.weights`` is the weight, the one holding the respondent ids the id,
    and the others are ignored.
    """
    book = book or Codebook()
    questions = {}
    for question in data.questions:
        spec = book.questions.get(question.id)
        coded = spec is not None and spec.options is not None and spec.codes is not None
        questions[question.id] = QuestionSpec(
            question.id, question.text if question.text != question.id else None,
            question.options, spec.codes if coded else None, question.ordinal,
            question.option_values, spec.missing if spec is not None else ())
    metadata = {}
    for column in data.metadata.columns:
        spec = book.metadata.get(column)
        metadata[column] = MetadataSpec(column, spec.text if spec else None,
                                        dict(spec.labels) if spec else {})
    id_column, weight_column, ignore = book.id_column, book.weight_column, []
    for column in (table.columns if table is not None else ()):
        if column in questions or column in metadata or column in (id_column, weight_column):
            continue
        if weight_column is None and _holds_weights(table[column], data.weights):
            weight_column = column
        elif id_column is None and (id_texts(table[column]).to_numpy(dtype=object)
                                    == data.respondent_ids).all():
            id_column = column
        else:
            ignore.append(column)
    return Codebook(questions, metadata, id_column, weight_column, tuple(ignore), book.missing,
                    data.source.name, book.file)


def _holds_weights(values: pd.Series, weights: np.ndarray | None) -> bool:
    if weights is None:
        return False
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    return bool(np.array_equal(numbers, weights))


def codebook_json(book: Codebook) -> dict:
    """``book`` in the documented JSON form (see README, "Codebooks")."""
    result: dict = {}
    if book.name:
        result["name"] = book.name
    if book.id_column:
        result["id"] = book.id_column
    if book.weight_column:
        result["weight"] = book.weight_column
    if book.missing:
        result["missing"] = [_json_value(m) for m in book.missing]
    entries = {qid: _scale_entry(spec) for qid, spec in book.questions.items()}
    shapes = pd.Series([repr(e) for e in entries.values()], dtype=object)
    shared = {shape for shape, n in shapes.value_counts().items() if n > 1}
    scales: dict[str, dict] = {}
    name_of: dict[str, str] = {}
    questions = {}
    for (qid, entry), shape in zip(entries.items(), shapes):
        spec = book.questions[qid]
        head = {"text": spec.text} if spec.text else {}
        if shape in shared:
            if shape not in name_of:
                name_of[shape] = _scale_name(entry, scales)
                scales[name_of[shape]] = entry
            questions[qid] = {**head, "scale": name_of[shape]}
        else:
            questions[qid] = {**head, **entry}
    if scales:
        result["scales"] = scales
    result["questions"] = questions
    result["metadata"] = {
        column: {**({"text": spec.text} if spec.text else {}),
                 **({"labels": dict(spec.labels)} if spec.labels else {})}
        for column, spec in book.metadata.items()}
    if book.ignore:
        result["ignore"] = list(book.ignore)
    return result


def codebook_text(book: Codebook) -> str:
    """:func:`codebook_json` as indented JSON text, each list of options or codes on one line."""
    text = json.dumps(codebook_json(book), indent=2, ensure_ascii=False)
    # json.dumps puts one element per line and writes ",\n" only between elements, never in one
    one_line = re.sub(r"\[\n\s*([^\[\]{}]*?)\n\s*\]",
                      lambda m: "[" + ", ".join(p.strip() for p in m.group(1).split(",\n")) + "]", text)
    return one_line + "\n"


def _scale_entry(spec: QuestionSpec) -> dict:
    entry: dict = {}
    if spec.options is not None:
        entry["options"] = list(spec.options)
    if spec.codes is not None:
        entry["codes"] = [_json_value(c) for c in spec.codes]
    if spec.ordinal is not None:
        entry["ordinal"] = spec.ordinal
    if spec.values is not None:
        entry["values"] = [_json_value(v) for v in spec.values]
    if spec.missing:
        entry["missing"] = [_json_value(m) for m in spec.missing]
    return entry


def _scale_name(entry: dict, taken: dict) -> str:
    options = entry.get("options") or ["answers"]
    base = f"{options[0]} … {options[-1]}" if len(options) > 1 else str(options[0])
    name, n = base, 2
    while name in taken:
        name, n = f"{base} ({n})", n + 1
    return name


def _json_value(value):
    """Numbers as JSON numbers (whole ones without ``.0``), text as text."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return int(value) if float(value).is_integer() else float(value)
    return str(value)
