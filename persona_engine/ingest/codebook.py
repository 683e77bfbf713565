"""Codebooks: what the columns of a wide or long table mean.

A codebook is written by hand, as JSON or as a CSV with one row per column
(the two forms are documented with examples in README, section "Codebooks").
It names the questions (wording, options in scale order, how each option is
written in the data file, ordinal or not, numeric values) and gives every
other column a role: ``id``, ``weight``, ``metadata`` (with optional value
labels, e.g. partyid 0 -> "Strong Democrat") or ``ignore``.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from persona_engine.errors import DataError
from persona_engine.ingest.files import collect_inputs
from persona_engine.ingest.table_files import csv_rows, decode_text
from persona_engine.ingest.options import (ColumnValues, answer_key, answer_label,
                                           coded_answers, looks_like_free_text,
                                           observed_question)
from persona_engine.opinion_data import Question

SCALE_KEYS = {"options", "codes", "ordinal", "values", "missing"}
QUESTION_KEYS = SCALE_KEYS | {"text", "scale"}
METADATA_KEYS = {"text", "labels"}
TOP_KEYS = {"name", "id", "weight", "missing", "scales", "questions", "metadata", "ignore"}
CSV_ROLES = ("question", "metadata", "id", "weight", "ignore")
CSV_LIST_SEPARATOR = "|"


@dataclass(frozen=True)
class QuestionSpec:
    """What a codebook says about one question; ``None`` means 'from the data'."""

    id: str
    text: str | None = None
    options: tuple[str, ...] | None = None
    codes: tuple | None = None
    ordinal: bool | None = None
    values: tuple[float, ...] | None = None
    missing: tuple = ()


@dataclass(frozen=True)
class MetadataSpec:
    """A metadata column, with optional labels for its codes (``{code: label}``)."""

    column: str
    text: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Codebook:
    """A parsed, validated codebook. ``file`` names it in error messages."""

    questions: Mapping[str, QuestionSpec] = field(default_factory=dict)
    metadata: Mapping[str, MetadataSpec] = field(default_factory=dict)
    id_column: str | None = None
    weight_column: str | None = None
    ignore: tuple[str, ...] = ()
    missing: tuple = ()
    name: str | None = None
    file: str = "codebook"

    def declared_columns(self) -> list[str]:
        """Every column the codebook names, in the order it names them."""
        named = [self.id_column, self.weight_column, *self.questions, *self.metadata, *self.ignore]
        return [c for c in dict.fromkeys(named) if c]

    def check_columns(self, columns: Sequence[str], data_file: str) -> None:
        """Raise :class:`DataError` if the codebook names a column the data lacks."""
        present = set(columns)
        for column in self.declared_columns():
            if column not in present:
                close = difflib.get_close_matches(column, list(columns), n=3)
                hint = f"did you mean {', '.join(repr(c) for c in close)}?" if close else \
                    f"columns of {data_file}: {', '.join(list(columns)[:12])}"
                raise DataError(f"names a column '{column}' that {data_file} does not have",
                                file=self.file, column=column, expected=hint)


# ---------------------------------------------------------------------- reading
def read_codebook(source, name: str | None = None) -> Codebook:
    """Read a codebook from a JSON or CSV file, an upload, or a parsed dict.

    ``source`` is a path, bytes or file-like with ``name`` ending in ``.json``
    or ``.csv``, a ``dict`` in the JSON form, or a :class:`Codebook`.
    """
    if isinstance(source, Codebook):
        return source
    if isinstance(source, Mapping):
        return _from_mapping(source, name or "codebook")
    files = collect_inputs(source, name)
    if len(files) != 1:
        raise DataError(f"a codebook is one file, but {len(files)} were found",
                        file=files[0].display, expected="a .json or .csv codebook file")
    file = files[0]
    text = decode_text(file.read_bytes(), file.display)
    if file.suffix == ".json":
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as error:
            raise DataError(f"is not valid JSON: {error.msg} at line {error.lineno}, "
                            f"column {error.colno}", file=file.display) from None
        if not isinstance(parsed, dict):
            raise DataError("must hold a JSON object ({...})", file=file.display)
        return _from_mapping(parsed, file.display)
    if file.suffix in (".csv", ".tsv"):
        return _from_csv(text, file.display, "\t" if file.suffix == ".tsv" else ",")
    raise DataError(f"unknown codebook type '{file.suffix}'", file=file.display,
                    expected="a .json or .csv codebook")


def _from_mapping(raw: Mapping[str, Any], where: str) -> Codebook:
    _no_unknown_keys(raw, TOP_KEYS, where, "the codebook")
    scales = raw.get("scales") or {}
    if not isinstance(scales, Mapping):
        raise DataError("'scales' must map scale names to {options, codes, ...}", file=where)
    for scale_name, scale in scales.items():
        _no_unknown_keys(scale, SCALE_KEYS, where, f"scale '{scale_name}'")
    questions = {}
    raw_questions = raw.get("questions") or {}
    if not isinstance(raw_questions, Mapping):
        raise DataError("'questions' must map question ids to their description", file=where)
    for qid, entry in raw_questions.items():
        if isinstance(entry, str):
            entry = {"text": entry}
        _no_unknown_keys(entry, QUESTION_KEYS, where, f"question '{qid}'")
        entry = dict(entry)
        if "scale" in entry:
            scale_name = entry.pop("scale")
            if not isinstance(scale_name, str) or scale_name not in scales:
                raise DataError(f"question uses scale '{scale_name}', which 'scales' does not define",
                                file=where, column=str(qid),
                                expected=f"one of {', '.join(map(str, scales)) or '(no scales)'}")
            entry = {**scales[scale_name], **entry}
        questions[str(qid)] = _question_spec(str(qid), entry, where)
    metadata = {}
    raw_metadata = raw.get("metadata") or {}
    if isinstance(raw_metadata, list):
        raw_metadata = {column: {} for column in _scalars(raw_metadata, "'metadata'", where)}
    if not isinstance(raw_metadata, Mapping):
        raise DataError("'metadata' must list column names or map them to {text, labels}",
                        file=where)
    for column, entry in raw_metadata.items():
        entry = {"text": entry} if isinstance(entry, str) else entry
        _no_unknown_keys(entry, METADATA_KEYS, where, f"metadata column '{column}'")
        _text(entry, where, str(column))
        labels = entry.get("labels") or {}
        if not isinstance(labels, Mapping):
            raise DataError("'labels' must map codes to labels, e.g. {\"0\": \"Strong Democrat\"}",
                            file=where, column=str(column))
        metadata[str(column)] = MetadataSpec(str(column), entry.get("text"),
                                             {str(k): str(v) for k, v in labels.items()})
    ignore = _scalars(raw.get("ignore"), "'ignore'", where, single=True) or []
    missing = _scalars(raw.get("missing"), "'missing'", where, single=True) or []
    return _validated(Codebook(questions, metadata, _optional_str(raw, "id", where),
                               _optional_str(raw, "weight", where), tuple(map(str, ignore)),
                               tuple(missing), _optional_str(raw, "name", where), where))


def _from_csv(text: str, where: str, sep: str) -> Codebook:
    reader = csv.DictReader(io.StringIO(text), delimiter=sep)
    rows = list(csv_rows(reader, where))
    for number, raw_row in enumerate(rows, start=2):
        if None in raw_row:  # csv.DictReader files the surplus cells of a long row under None
            raise DataError(f"row {number} has {len(raw_row) - 1 + len(raw_row[None])} cells but the header "
                            f"names {len(raw_row) - 1}", file=where, row=number,
                            expected="one cell per header column (quote cells that contain the separator)")
    header = [h.strip().casefold() for h in (rows[0].keys() if rows else [])]
    if "column" not in header:
        raise DataError("the codebook CSV needs a 'column' column", file=where, row=1,
                        expected="a header like column,role,text,options,codes,ordinal,values,"
                                 "missing,labels")
    questions, metadata, ignore = {}, {}, []
    id_column = weight_column = None
    for number, raw_row in enumerate(rows, start=2):
        row = {(k or "").strip().casefold(): (v or "").strip() for k, v in raw_row.items()}
        column = row.get("column", "")
        if not column:
            continue
        role = (row.get("role") or "question").casefold()
        if role not in CSV_ROLES:
            raise DataError(f"unknown role '{role}'", file=where, row=number, column="role",
                            expected=", ".join(CSV_ROLES))
        if role == "question":
            entry = {"text": row.get("text") or None, "options": _split(row.get("options")),
                     "codes": _split(row.get("codes")), "values": _split(row.get("values")),
                     "missing": _split(row.get("missing")) or (),
                     "ordinal": _flag(row.get("ordinal"), where, number)}
            try:
                questions[column] = _question_spec(column, entry, where)
            except DataError as error:
                raise DataError(error.message, file=where, row=number, column=error.column,
                                expected=error.expected) from None
        elif role == "metadata":
            labels = {}
            for pair in _split(row.get("labels")) or ():
                code, sep_found, label = pair.partition("=")
                if not sep_found:
                    raise DataError(f"label '{pair}' has no '='", file=where, row=number,
                                    column="labels", expected="code=label|code=label")
                labels[code.strip()] = label.strip()
            metadata[column] = MetadataSpec(column, row.get("text") or None, labels)
        elif role == "id":
            id_column = column
        elif role == "weight":
            weight_column = column
        else:
            ignore.append(column)
    return _validated(Codebook(questions, metadata, id_column, weight_column, tuple(ignore),
                               (), None, where))


def _question_spec(qid: str, entry: Mapping[str, Any], where: str) -> QuestionSpec:
    options = _scalars(entry.get("options"), "'options'", where, qid)
    codes = _scalars(entry.get("codes"), "'codes'", where, qid)
    values = _scalars(entry.get("values"), "'values'", where, qid)
    ordinal = entry.get("ordinal")
    if options is not None:
        options = tuple(str(o).strip() for o in options)
        if len(set(o.casefold() for o in options)) < 2:
            raise DataError(f"question has {len(set(options))} distinct option(s)", file=where,
                            column=qid, expected="at least 2 answer options")
    for label, given in (("codes", codes), ("values", values)):
        if given is None:
            continue
        if options is None:
            raise DataError(f"gives '{label}' but no 'options'", file=where, column=qid,
                            expected="'options' listing the answer labels in scale order")
        if len(given) != len(options):
            raise DataError(f"has {len(given)} {label} for {len(options)} options", file=where,
                            column=qid, expected=f"one entry in '{label}' per option")
    if codes is not None:
        keys = [answer_key(c) for c in codes]
        if None in keys or len(set(keys)) != len(keys):
            raise DataError("'codes' has a blank or repeated code", file=where, column=qid,
                            expected="a different, non-blank code for every option")
    if values is not None:
        try:
            values = tuple(float(v) for v in values)
        except (TypeError, ValueError):
            raise DataError(f"'values' must be numbers, got {list(values)}", file=where,
                            column=qid) from None
    if ordinal is not None and not isinstance(ordinal, bool):
        raise DataError(f"'ordinal' must be true or false, got {ordinal!r}", file=where, column=qid)
    missing = _scalars(entry.get("missing"), "'missing'", where, qid, single=True) or ()
    return QuestionSpec(qid, _text(entry, where, qid), options,
                        None if codes is None else tuple(codes), ordinal, values, tuple(missing))


def _validated(book: Codebook) -> Codebook:
    roles: dict[str, str] = {}
    for role, columns in (("question", book.questions), ("metadata", book.metadata),
                          ("ignore", book.ignore), ("id", [book.id_column] if book.id_column else []),
                          ("weight", [book.weight_column] if book.weight_column else [])):
        for column in columns:
            if column in roles and roles[column] != role:
                raise DataError(f"is listed both as {roles[column]} and as {role}",
                                file=book.file, column=column, expected="one role per column")
            roles[column] = role
    return book


def _no_unknown_keys(entry, allowed: set, where: str, what: str) -> None:
    if not isinstance(entry, Mapping):
        raise DataError(f"{what} must be an object {{...}}, got {entry!r}", file=where)
    unknown = sorted(str(k) for k in entry if k not in allowed and not str(k).startswith("_"))
    if unknown:
        raise DataError(f"{what} has unknown key(s) {', '.join(repr(k) for k in unknown)}",
                        file=where, expected=f"keys among {', '.join(sorted(allowed))}")


def _optional_str(raw: Mapping[str, Any], key: str, where: str) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, (str, int, float)):
        raise DataError(f"'{key}' must be a column name, got {value!r}", file=where)
    return None if value in (None, "") else str(value)


def _text(entry: Mapping[str, Any], where: str, column: str) -> str | None:
    """The entry's ``text``: a string or absent."""
    text = entry.get("text")
    if text is not None and not isinstance(text, str):
        raise DataError(f"'text' must be a string, got {text!r}", file=where, column=column)
    return text


def _scalars(value, what: str, where: str, column: str | None = None,
             single: bool = False) -> list | None:
    """``value`` as a list of strings or numbers; ``None`` if absent.

    ``single`` also accepts one bare value. Anything else (an object, a
    nested list, a bare number where a list belongs) is a :class:`DataError`
    rather than a ``TypeError`` further on.
    """
    if value is None or (isinstance(value, (str, list, tuple, dict)) and not value):
        return None  # "", [] and {} mean none, as an omitted key does
    if single and isinstance(value, (str, int, float)):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float)) for v in value):
        return list(value)
    raise DataError(f"{what} must be a list of strings or numbers, got {value!r}", file=where,
                    column=column, expected=f'e.g. {what}: ["Agree", "Disagree"]')


def _split(cell: str | None) -> list[str] | None:
    if not cell:
        return None
    return [part.strip() for part in cell.split(CSV_LIST_SEPARATOR)]


def _flag(cell: str | None, where: str, row: int) -> bool | None:
    if not cell:
        return None
    text = cell.casefold()
    if text in ("yes", "true", "1", "y"):
        return True
    if text in ("no", "false", "0", "n"):
        return False
    raise DataError(f"'{cell}' is not yes or no", file=where, row=row, column="ordinal",
                    expected="yes, no, or blank")


# --------------------------------------------------------------------- applying
def specified_question(spec: QuestionSpec, values: Sequence, *, file: str,
                       missing: Sequence = ()) -> tuple[Question, np.ndarray]:
    """Build a question from its codebook entry and its column of answers.

    Returns the question and its answers as option indices, shape
    ``(n_rows,)``. ``missing`` adds the codebook's global non-answer codes.
    """
    non_answers = tuple(spec.missing) + tuple(missing)
    column = ColumnValues.of(values)
    if spec.options is None:
        column = column.without(non_answers)
        example = looks_like_free_text(column)
        if example is not None:
            raise DataError(f"question '{spec.id}' has free-text answers (e.g. '{example}')",
                            file=file, column=spec.id,
                            expected="closed answers; in a codebook, list free text under "
                                     "metadata or ignore")
        if column.n_distinct < 2:
            raise DataError(f"question has {column.n_distinct} distinct answer(s) in the data",
                            file=file, column=spec.id,
                            expected="at least 2 answer options (give them in the codebook)")
        return observed_question(spec.id, column, spec.text, spec.ordinal)
    codes = spec.codes if spec.codes is not None else spec.options
    answers = coded_answers(column, codes, non_answers, file=file, column_name=spec.id,
                            options=spec.options)
    question = Question(spec.id, spec.text or spec.id, spec.options,
                        ordinal=True if spec.ordinal is None else spec.ordinal,
                        option_values=spec.values)
    return question, answers


def metadata_column(values: Sequence, labels: Mapping[str, str] | None = None) -> pd.Series:
    """One metadata column: labelled text, numbers, or text, in that preference.

    With ``labels``, codes are replaced by their labels (``1.0`` matches the
    label for ``"1"``) and unlabelled codes keep their written form.
    """
    column = ColumnValues.of(values)
    if labels:
        by_key = {answer_key(code): label for code, label in labels.items()}
        names = [by_key.get(k, answer_label(k, s)) for k, s in zip(column.keys, column.spellings)]
        return pd.Series(np.array(names + [None], dtype=object)[column.codes], dtype=object)
    if column.numeric:
        numbers = np.array([k[1] for k in column.keys] + [np.nan])[column.codes]
        if column.whole_numbers and (column.codes >= 0).all():
            return pd.Series(numbers.astype(np.int64))
        return pd.Series(numbers)
    spellings = [str(s).strip() for s in column.spellings]
    return pd.Series(np.array(spellings + [None], dtype=object)[column.codes], dtype=object)
