"""Labelled survey files: SPSS ``.sav``/``.zsav``/``.por``, Stata ``.dta``, SAS ``.sas7bdat``/``.xpt``.

Read with ``pyreadstat``; the file's own metadata is its codebook, by these
rules (a codebook given with the file overrides any of them, see
:func:`labelled_table`):

* **questions** are the variables with value labels on at least two answer
  codes, except the id, demographics (named as for wide tables: ``age``,
  ``sex``, ``partyid``, ...) and SPSS *scale* variables with unlabelled values
  (an age with only ``89 = "89 or older"`` labelled);
* **options** are the labelled answer codes in code order, plus any unlabelled
  code seen in the data (named by its number, e.g. the 1 to 9 of a 0-10 scale
  whose ends are labelled);
* **missing answers**: SPSS user-missing values and ranges, Stata's ``.a`` to
  ``.z`` and SAS's ``.A`` to ``.Z`` and ``._`` (written ``".d"`` in a
  codebook), and every code whose label reads as a non-answer
  (:data:`NON_ANSWER_LABEL`: Refused, Don't know, No answer, IAP, Skipped on
  web, Not applicable, ...);
* **question text** is the variable label;
* **ordinal**: SPSS measure *ordinal* or *nominal* decides; without a measure
  (Stata, SAS, SPSS *unknown*) the options are a scale in code order;
* the **weight** is the first unlabelled numeric variable whose name or
  label says "weight"; the **id** is found by name as for wide tables; every
  other variable is **metadata**, its codes shown by their labels.

Nothing is unpickled; pyreadstat parses the bytes in memory.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from persona_engine.errors import DataError
from persona_engine.ingest.codebook import Codebook, MetadataSpec, QuestionSpec
from persona_engine.ingest.files import InputFile
from persona_engine.ingest.options import answer_key
from persona_engine.ingest.tables import DEMOGRAPHIC_NAMES, ID_NAMES, id_texts
from persona_engine.ingest.written_codebook import laid_over

LABELLED_SUFFIXES = {".sav": "spss", ".zsav": "spss", ".por": "spss", ".dta": "stata",
                     ".sas7bdat": "sas", ".xpt": "sas"}
"""File suffix -> the ``source.format`` of the data read from it."""
SAS_CATALOG_SUFFIX = ".sas7bcat"
KIND_NAMES = {"spss": "SPSS", "stata": "Stata", "sas": "SAS"}
A_KIND = {"spss": "an SPSS", "stata": "a Stata", "sas": "a SAS"}
NON_ANSWER_LABEL = re.compile(
    r"^(refused|refusal|don'?t know|do not know|dk|no answer|na|iap|inapplicable|"
    r"not applicable|skipped on web|skipped|not asked|no response)\b")
"""A value label that means "no answer", matched against the label case-folded,
with a leading code (``-8.``) and the apostrophe's spelling normalised."""
WEIGHT_LABEL = re.compile(r"\bweight", re.IGNORECASE)


@dataclass(frozen=True)
class LabelledTable:
    """A labelled file as a table of codes and the codebook its labels imply.

    ``table`` has one column per variable; lettered Stata/SAS missing values
    are written ``".d"``, and the missing codes of metadata columns are blank.
    """

    table: pd.DataFrame
    codebook: Codebook


def labelled_table(file: InputFile, catalog: InputFile | None = None, *,
                   codebook: Codebook | None = None) -> LabelledTable:
    """Read ``file`` and infer its codebook; ``codebook`` (the user's) is laid over it.

    A question's ``missing`` in ``codebook`` replaces the file's missing codes
    for it (its options are then the other labelled codes); ``options`` replace
    the file's options, codes and missing codes altogether.
    """
    kind = LABELLED_SUFFIXES[file.suffix]
    table, meta = _read(file, catalog, kind)
    labels = {c: _keyed_labels(v) for c, v in (meta.variable_value_labels or {}).items()}
    measures = meta.variable_measure or {}
    texts = {c: t for c, t in (meta.column_names_to_labels or {}).items() if t}
    declared = _declared_missing(table, meta, labels)
    user = codebook or Codebook()
    id_column = user.id_column or _id_column(table)
    weight_column = user.weight_column or _weight_column(table, labels, texts, exclude={id_column})

    questions, metadata = {}, {}
    for column in table.columns:
        if column in (id_column, weight_column):
            continue
        spec = user.questions.get(column)
        chosen = spec.missing if spec is not None and spec.missing else None
        missing = chosen if chosen is not None else _missing_codes(
            labels.get(column, {}), declared.get(column, ()))
        question = _question(column, table[column], labels.get(column, {}), missing,
                             measures.get(column), texts.get(column))
        if question is not None:
            questions[column] = question
        else:
            table[column] = _blanked(table[column], missing)
            answer_labels = {_code_text(k): v for k, v in labels.get(column, {}).items()
                             if answer_key(k) not in {answer_key(m) for m in missing}}
            metadata[column] = MetadataSpec(column, texts.get(column), answer_labels)
    inferred = Codebook(questions, metadata, id_column, weight_column,
                        name=(meta.file_label or "").strip() or None, file=file.display)
    book = laid_over(inferred, codebook) if codebook is not None else inferred
    if not book.questions:
        raise _no_questions(file.display, kind, bool(labels))
    return LabelledTable(table, book)


# ----------------------------------------------------------------- reading
def _read(file: InputFile, catalog: InputFile | None, kind: str):
    try:
        import pyreadstat
    except ImportError:  # pragma: no cover - a dependency, but say what to do if it is missing
        raise DataError(f"reading {KIND_NAMES[kind]} files needs the pyreadstat package",
                        file=file.display, expected="pip install pyreadstat") from None
    readers = {".sav": pyreadstat.read_sav, ".zsav": pyreadstat.read_sav,
               ".por": pyreadstat.read_por, ".dta": pyreadstat.read_dta,
               ".sas7bdat": pyreadstat.read_sas7bdat, ".xpt": pyreadstat.read_xport}
    options = {"user_missing": True} if file.suffix not in (".por", ".xpt") else {}
    if catalog is not None and file.suffix == ".sas7bdat":
        options["catalog_file"] = io.BytesIO(catalog.read_bytes())
    data = file.read_bytes()
    try:
        table, meta = readers[file.suffix](io.BytesIO(data), **options)
    except Exception as error:  # pyreadstat raises several types for a damaged file
        reason = " ".join(str(error).split()) or type(error).__name__
        raise DataError(f"could not be read as {A_KIND[kind]} file ({reason})",
                        file=file.display,
                        expected=f"{A_KIND[kind]} file saved by {_makers(kind)}, not "
                                 "renamed or cut short") from None
    if table.empty:
        raise DataError("the file has no respondents (no rows)" if len(table.columns) else
                        "the file has no variables", file=file.display)
    table.columns = [str(c) for c in table.columns]
    types = meta.readstat_variable_types or {}
    for column in table.columns:
        if types.get(column) != "string" and table[column].dtype == object:
            table[column] = table[column].map(_lettered)  # Stata .d, SAS .A
    return table, meta


def _makers(kind: str) -> str:
    return {"spss": "SPSS or PSPP", "stata": "Stata", "sas": "SAS"}[kind]


def _lettered(value):
    """Stata's ``.d`` arrives from pyreadstat as ``"d"``; keep the dot so it reads as missing."""
    return f".{value}" if isinstance(value, str) and len(value) == 1 else value


def _keyed_labels(labels: dict) -> dict:
    return {_lettered(k): str(v).strip() for k, v in labels.items()}


def _declared_missing(table: pd.DataFrame, meta, labels: dict) -> dict[str, tuple]:
    """Each column's declared missing codes: SPSS values and ranges, lettered Stata/SAS values."""
    declared: dict[str, list] = {}
    for column, ranges in (meta.missing_ranges or {}).items():
        seen = [*labels.get(column, {}), *pd.unique(table[column].dropna())]
        codes = []
        for bounds in ranges:
            low, high = bounds["lo"], bounds["hi"]
            if low == high:
                codes.append(low)
            else:  # a range holds every code seen or labelled between its ends
                codes.extend(v for v in seen if isinstance(v, (int, float)) and low <= v <= high)
        declared[column] = codes
    for column in table.columns:
        lettered = [v for v in [*labels.get(column, {}), *pd.unique(table[column].dropna())]
                    if isinstance(v, str) and re.fullmatch(r"\.[a-zA-Z_]", v)]
        if lettered:
            declared.setdefault(column, []).extend(lettered)
    return {c: tuple(dict.fromkeys(_plain_code(v) for v in codes)) for c, codes in declared.items()}


def _missing_codes(labels: dict, declared: tuple) -> tuple:
    by_label = [code for code, label in labels.items() if is_non_answer(label)]
    return tuple(dict.fromkeys([*declared, *map(_plain_code, by_label)]))


def is_non_answer(label: str) -> bool:
    """Whether a value label means "no answer" (:data:`NON_ANSWER_LABEL`)."""
    text = str(label).casefold().replace("\u2019", "'").strip()
    text = re.sub(r"^[-\d.]+\s*[.:)=-]?\s*", "", text)  # "-8. Don't know", "9 = Refused"
    return bool(NON_ANSWER_LABEL.match(text))


# ------------------------------------------------------------------ roles
def _question(column: str, values: pd.Series, labels: dict, missing: tuple, measure: str | None,
              text: str | None) -> QuestionSpec | None:
    if _plain(column) in DEMOGRAPHIC_NAMES | ID_NAMES:
        return None
    non_answers = {answer_key(m) for m in missing}
    labelled = {answer_key(code): label for code, label in labels.items()
                if answer_key(code) not in non_answers and answer_key(code) is not None}
    if len(labelled) < 2:
        return None
    seen = {answer_key(v): v for v in pd.unique(values.dropna())}
    unlabelled = {k: v for k, v in seen.items()
                  if k is not None and k not in labelled and k not in non_answers}
    if unlabelled and measure == "scale":
        return None  # a measurement with a few labelled values, not a closed question
    keys = sorted({*labelled, *unlabelled}, key=lambda k: (k[0] != "n", k[1]))
    codes = [_plain_code(k[1]) for k in keys]
    options = _unique_options([labelled.get(k) or str(c) for k, c in zip(keys, codes)], codes)
    ordinal = {"ordinal": True, "nominal": False}.get(measure or "")
    return QuestionSpec(column, text, tuple(options), tuple(codes), ordinal, None, tuple(missing))


def _unique_options(options: list[str], codes: list) -> list[str]:
    """Two codes labelled alike stay two options: the code is added to tell them apart."""
    counts = pd.Series([o.casefold() for o in options]).value_counts()
    return [f"{o} ({c})" if counts[o.casefold()] > 1 else o for o, c in zip(options, codes)]


def _id_column(table: pd.DataFrame) -> str | None:
    for column in table.columns:
        if _plain(column) in ID_NAMES and table[column].notna().all():
            text = id_texts(table[column])
            if (text != "").all() and text.is_unique:
                return column
    return None


def _weight_column(table: pd.DataFrame, labels: dict, texts: dict, exclude: set) -> str | None:
    for column in table.columns:
        if column in exclude or labels.get(column) or not pd.api.types.is_numeric_dtype(table[column]):
            continue
        if "weight" in _plain(column) or WEIGHT_LABEL.search(texts.get(column, "")):
            return column
    return None


def _blanked(values: pd.Series, missing: tuple) -> pd.Series:
    if not missing:
        return values
    drop = {answer_key(m) for m in missing}
    return values.astype(object).where([answer_key(v) not in drop for v in values], None)


def _no_questions(where: str, kind: str, labelled: bool) -> DataError:
    if not labelled:
        return DataError("no variable has value labels, so the questions cannot be told from "
                         "the other columns", file=where,
                         expected=f"{A_KIND[kind]} file whose closed questions carry value "
                                  "labels, or a codebook listing the questions (--codebook)")
    return DataError("no variable reads as a question: the labelled ones are all the id, "
                     "demographics, or scale measures", file=where,
                     expected="value labels on the questions' answer codes, or a codebook "
                              "listing the questions (--codebook)")


# ------------------------------------------------------------------- codes
def _plain(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", str(name).strip().casefold())


def _plain_code(value):
    """A code as a codebook writes it: ``1.0`` -> ``1``, ``".d"`` stays text."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def _code_text(value) -> str:
    return str(_plain_code(value))


__all__ = ["LABELLED_SUFFIXES", "SAS_CATALOG_SUFFIX", "LabelledTable", "labelled_table",
           "is_non_answer"]
