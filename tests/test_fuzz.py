"""Property-based fuzzing of the ingest stage (issue 17).

Hypothesis writes malformed survey files (CSV, TSV, XLSX, Parquet and zips of
them; wide, long, Polis, Pew and Qualtrics shapes; odd encodings, ragged rows,
huge cells, duplicate headers, formulas, repeated ids, junk codebooks) and
hands them over as the CLI does (paths) and as the app does (uploads). The
property: :func:`read_opinions`, and :func:`fit_study` on what it reads, either
succeed or raise :class:`DataError`; nothing else escapes.

``scripts/fuzz_ingest.py`` runs the same properties on many more examples; it
imports the strategies and :func:`attempt` from here.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import tempfile
import types
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from persona_engine.errors import DataError, DataWarning
from persona_engine.ingest import read_opinions
from persona_engine.study import fit_study

FIT_SETTINGS = {"dim": 2, "n_cohorts": 2, "random_state": 0}
"""Small enough that a fit takes about a second."""
SMALL = (80, 30)
"""Largest (respondents, questions) fitted."""

OPTION_SETS = (("agree", "disagree"), ("1", "2", "3"), ("-1", "0", "1"), ("yes", "no", "Yes ", "NO"),
               ("1", "1.0", " 1 ", "2"), ("Strongly agree", "Agree", "Neither", "Disagree"), ("x",))
MISSING_CELLS = ("", "NA", "N/A", "nan", "NULL", "None", " ", "#N/A")
FORMULA_CELLS = ("=1+1", "=SUM(A1:A2)", "+cmd", "-2+3", "@x", '=HYPERLINK("http://x")', "-", "+", "=", "@")
ODD_CELLS = ('"', '""', "a,b", "a;b", "a\tb", "line\nbreak", "\r", "\x00", "\ufeff", "é", "日本", "\u202e",
             "inf", "-inf", "NaN", "1e308", "1e-320", "0x10", "1_000", "True", "false", "９", "٣", "[1, 2]")
COLUMN_NAMES = ("respondent_id", "id", "participant", "QKEY", "weight", "WEIGHT_W1", "age", "party", "q1",
                "q2", "Q3", "", " ", "1", "2", "question_id", "answer", "StartDate", "Status", "ResponseId",
                "comment-id", "=cmd", "é", "日本", "Unnamed: 0", "nan")
TABLE_SUFFIXES = (".csv",) * 8 + (".tsv", ".tsv", ".txt", ".tab", ".CSV") + (".xlsx",) * 4 \
    + (".parquet",) * 4 + (".pq", ".xls", ".json", "")
ENCODINGS = ("utf-8",) * 10 + ("utf-8-sig", "utf-8-sig", "latin-1", "latin-1", "cp1252", "utf-16", "utf-16",
                              "utf-16-le", "utf-32", "double-bom")
FORMATS = (None,) * 30 + ("auto", "wide", "long", "polis", "pew", "qualtrics", "labelled", "bogus")


@dataclass(frozen=True)
class Table:
    """A table before it is written: a header and rows of cells (str, int, float, bool or None)."""

    header: tuple
    rows: tuple


@dataclass(frozen=True)
class Case:
    """One input: its files (relative POSIX path -> bytes), how they are handed over, and ``format=``.

    ``delivery``: ``folder`` / ``file`` (paths), ``upload`` / ``uploads`` (``io.BytesIO`` with a
    ``.name``, as ``app_pages/data.py`` builds them), ``bytes`` (``name=``), ``zip path`` / ``zip upload``.
    """

    files: tuple
    delivery: str
    format: str | None = None

    def save(self, folder: Path) -> None:
        """Write the files under ``folder/files`` and the rest to ``folder/case.json``."""
        for name, content in self.files:
            path = folder / "files" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        (folder / "case.json").write_text(json.dumps(
            {"files": [name for name, _ in self.files], "delivery": self.delivery, "format": self.format}))

    @classmethod
    def load(cls, folder: Path) -> "Case":
        saved = json.loads((folder / "case.json").read_text())
        files = tuple((name, (folder / "files" / name).read_bytes()) for name in saved["files"])
        return cls(files, saved["delivery"], saved["format"])


# ------------------------------------------------------------------- cells
@st.composite
def cells(draw, options, noise: int):
    """A cell: one of ``options`` except, ``noise`` times in 100, something odd."""
    # Hypothesis favours small numbers, so the common case is the low end of every range here.
    if draw(st.integers(0, 99)) < 100 - noise:
        return draw(st.sampled_from(options))
    kind = draw(st.integers(0, 9))
    if kind <= 1:
        return draw(st.sampled_from(MISSING_CELLS + (None,)))
    if kind == 2:
        return draw(st.sampled_from(FORMULA_CELLS))
    if kind <= 4:
        return draw(st.sampled_from(ODD_CELLS))
    if kind == 5:
        return draw(st.text(max_size=12))
    if kind == 6:
        return draw(st.one_of(st.integers(-3, 3), st.floats(allow_nan=True), st.booleans()))
    if kind == 7:  # a huge cell
        return draw(st.sampled_from("x9é,\"\n")) * draw(st.sampled_from((1_000, 70_000, 400_000)))
    return draw(st.sampled_from(COLUMN_NAMES))


@st.composite
def column(draw, n_rows: int, noise: int):
    """One column's cells, shape ``(n_rows,)``, of a kind a survey table has (or should not have)."""
    kind = draw(st.sampled_from(("closed", "closed", "closed", "single", "missing", "free", "numeric",
                                 "ids", "any")))
    if kind == "closed":
        options = draw(st.sampled_from(OPTION_SETS))
    elif kind == "single":
        options = (draw(st.sampled_from(OPTION_SETS))[0], "")
    elif kind == "missing":
        options = MISSING_CELLS + (None,)
    elif kind == "free":
        options = tuple(draw(st.lists(st.text(min_size=1, max_size=30), min_size=1, max_size=20)))
    elif kind == "numeric":
        options = tuple(draw(st.lists(st.one_of(st.floats(-1e6, 1e6), st.integers(-5, 200)),
                                      min_size=1, max_size=20)))
    elif kind == "ids":
        start = draw(st.integers(0, 3))
        repeat = draw(st.booleans())
        return [str((i // 2 if repeat else i) + start) for i in range(n_rows)]
    else:
        return [draw(cells(("",), 100)) for _ in range(n_rows)]
    return [draw(cells(options, noise)) for _ in range(n_rows)]


def noise_levels():
    return st.sampled_from((0, 0, 3, 15, 60))


# ------------------------------------------------------------------ shapes
@st.composite
def wide_tables(draw) -> Table:
    n_rows = draw(st.sampled_from((0, 1, 2))) if draw(st.integers(0, 9)) == 9 else draw(st.integers(3, 30))
    noise = draw(noise_levels())
    names = draw(st.lists(st.one_of(st.sampled_from(COLUMN_NAMES), st.text(max_size=8)),
                          min_size=1, max_size=8, unique=draw(st.integers(0, 3)) < 3))
    if not draw(st.booleans()):
        names = ["respondent_id", *[f"q{j}" for j in range(len(names))]]  # a plausible header
    columns = [draw(column(n_rows, noise)) for _ in names]
    return Table(tuple(names), tuple(zip(*columns)) if n_rows else ())


@st.composite
def long_tables(draw) -> Table:
    noise = draw(noise_levels())
    n_respondents, n_questions = draw(st.integers(1, 14)), draw(st.integers(1, 5))
    options = draw(st.sampled_from(OPTION_SETS))
    rows = []
    for r in range(n_respondents):
        party = draw(st.sampled_from(("red", "blue", None)))
        for q in range(n_questions):
            if draw(st.integers(0, 9)) < 8:
                rows.append((str(r), f"q{q}", draw(cells(options, noise)), party, "1.5"))
    rows += draw(st.lists(st.sampled_from(rows), max_size=2)) if rows and noise else []  # repeated answers
    extras = draw(st.sampled_from((("party", "weight"), ("party", "party"), ("answer", "x"), ("", "age"))))
    return Table(("respondent_id", "question_id", "answer", *extras), tuple(rows))


@st.composite
def polis_exports(draw) -> dict:
    noise = draw(noise_levels())
    n_participants, n_statements = draw(st.integers(1, 25)), draw(st.integers(1, 8))
    statements = [str(s) for s in range(n_statements)]
    if noise:
        statements += draw(st.lists(st.sampled_from(("x", "12", "", "0", "n-votes", "participant")),
                                    max_size=2))
    votes = [[str(p), draw(st.sampled_from(("0", "1", ""))), "0", "3", "1", "2",
              *[draw(cells(("-1", "0", "1", ""), noise)) for _ in statements]]
             for p in range(n_participants)]
    if noise and draw(st.booleans()):
        votes[-1][0] = draw(st.sampled_from(("0", "", "x", "1.0")))  # a repeated or blank participant
    described = draw(st.lists(st.sampled_from(statements), max_size=len(statements) + 1)) \
        if noise else statements
    comments = [["1500282615559", "Mon Jul 17", s, "0", "3", "1",
                 draw(cells(("1", "0", "-1"), noise)), draw(cells(("We should.", "", '"Quoted," text'),
                                                                 noise))]
                for s in described]
    files = {
        "participants-votes.csv": Table(("participant", "group-id", "n-comments", "n-votes", "n-agree",
                                         "n-disagree", *statements), tuple(map(tuple, votes))),
        "comments.csv": Table(("timestamp", "datetime", "comment-id", "author-id", "agrees", "disagrees",
                               "moderated", "comment-body"), tuple(map(tuple, comments))),
    }
    if draw(st.booleans()):
        files["summary.csv"] = Table(("topic", draw(cells(("Brexit",), noise))), (("url", "https://pol.is"),))
    return files


LITERAL_LISTS = ("['Yes', 'No']", "['Yes', 'No', 'Refused']", "[1.0, 2.0]", "[1, 1]", "[]", "[True, 2]",
                 "['a', 1]", "[", "['a'", "{'a': 1}", "1", "", "[" * 200 + "]" * 200, "[" * 5000,
                 "(1, 2)", "[1e400, -1e400]", "['Yes', 'Yes']", "[[1], [2]]")


@st.composite
def pew_waves(draw) -> dict:
    noise = draw(noise_levels())
    n = draw(st.integers(1, 20))
    keys = draw(st.lists(st.sampled_from(("Q1_W1", "Q2_W1", "Q3_W2", "AGE", "QKEY", "")), min_size=1,
                         max_size=3, unique=True))
    responses = [(str(i), *[draw(cells(("Yes", "No", "Refused"), noise)) for _ in keys],
                  draw(cells(("1.2", "0.8"), noise))) for i in range(n)]
    info = [(k, "Do you agree?", draw(st.sampled_from(LITERAL_LISTS)) if noise else "['Yes', 'No', 'Refused']",
             draw(st.sampled_from(LITERAL_LISTS)) if noise else "[1.0, 2.0]") for k in keys]
    files = {"responses.csv": Table(("QKEY", *keys, "WEIGHT_W1"), tuple(responses)),
             "info.csv": Table(("key", "question", "references", "option_ordinal"), tuple(info))}
    if draw(st.booleans()):
        files["metadata.csv"] = Table(("key", "options"), (("AGE", draw(st.sampled_from(LITERAL_LISTS))),))
    return files


IMPORT_IDS = ('{"ImportId":"QID1"}', '{"ImportId":"QID2_TEXT"}', '{"ImportId":"status"}', '{"ImportId":',
              "[]", '{"ImportId": 5}', "null", '{"ImportId":"QID3_DO"}', "{}", '"QID1"')


@st.composite
def qualtrics_exports(draw) -> Table:
    noise = draw(noise_levels())
    questions = draw(st.lists(st.sampled_from(("Q1", "Q2_1", "Q3_TEXT", "Q2_DO", "party", "Q1")),
                              min_size=1, max_size=4))
    header = ("StartDate", "Status", "ResponseId", "DistributionChannel", *questions)
    texts = ("Start Date", "Response Type", "Response ID", "Channel", *["How?"] * len(questions))
    ids = ('{"ImportId":"startDate"}', '{"ImportId":"status"}', '{"ImportId":"_recordId"}',
           '{"ImportId":"distributionChannel"}',
           *[draw(st.sampled_from(IMPORT_IDS)) if noise else f'{{"ImportId":"QID{j}"}}'
             for j in range(len(questions))])
    n = draw(st.integers(0, 20))
    answers = [("2024-03-05", draw(cells(("0", "1", "Survey Preview", "IP Address"), noise)),
                draw(cells((f"R_{i}",), noise)), draw(cells(("anonymous", "preview"), noise)),
                *[draw(cells(("1", "2", "3", "-99"), noise)) for _ in questions]) for i in range(n)]
    return Table(header, (texts, ids, *answers))


@st.composite
def codebooks(draw, columns) -> bytes:
    """A ``codebook.json``: plausible, odd-shaped or not JSON at all."""
    names = list(columns) or ["q0"]
    values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(),
                                    st.sampled_from(names + ["agree", "1"])),
                          lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                  st.dictionaries(st.sampled_from(
                                                      ["options", "codes", "values", "ordinal", "missing",
                                                       "text", "scale", "labels", *names]), inner, max_size=3)),
                          max_leaves=8)
    book = draw(st.dictionaries(st.sampled_from(("name", "id", "weight", "missing", "scales", "questions",
                                                 "metadata", "ignore", "other")), values, max_size=4))
    if draw(st.booleans()):
        book["questions"] = {draw(st.sampled_from(names)): {"options": ["agree", "disagree"],
                                                            "codes": draw(values)}}
    text = json.dumps(book, allow_nan=True)
    return text.encode() if draw(st.integers(0, 9)) < 9 else text[:len(text) // 2].encode()


# -------------------------------------------------------------- file bytes
def cell_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


@st.composite
def text_bytes(draw, table: Table, suffix: str) -> bytes:
    sep = "\t" if suffix in (".tsv", ".tab") else draw(st.sampled_from((",", ",", ";", "\t")))
    newline = draw(st.sampled_from(("\n",) * 6 + ("\r\n", "\r\n", "\r")))
    ragged = draw(st.integers(0, 9)) == 9
    rows = [list(table.header)] + [list(row) for row in table.rows]
    if ragged:
        rows = [row + [""] * draw(st.integers(0, 2)) if i % 2 else row[:max(1, len(row) - 1)]
                for i, row in enumerate(rows)]
    rows = [[cell_text(c) for c in row] for row in rows]
    if draw(st.integers(0, 9)) == 9:  # cells joined without quoting: breaks on commas and quotes
        text = newline.join(sep.join(row) for row in rows)
    else:
        buffer = io.StringIO()
        quoting = draw(st.sampled_from((csv.QUOTE_MINIMAL, csv.QUOTE_ALL)))
        csv.writer(buffer, delimiter=sep, quoting=quoting, lineterminator=newline).writerows(rows)
        text = buffer.getvalue()
    text += draw(st.sampled_from(("", "", newline * 3, "\x1a")))
    encoding = draw(st.sampled_from(ENCODINGS))
    if encoding == "double-bom":
        return b"\xef\xbb\xbf\xef\xbb\xbf" + text.encode()
    return text.encode(encoding, errors="replace")


def xlsx_bytes(table: Table, blank_sheet_first: bool) -> bytes:
    from openpyxl import Workbook
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    book = Workbook()
    if blank_sheet_first:
        book.create_sheet("answers")
    sheet = book.worksheets[-1]

    def writable(value):  # cells starting with "=" stay formulas, as a user's workbook holds them
        if isinstance(value, str):
            return ILLEGAL_CHARACTERS_RE.sub("", value)[:32_000]
        if isinstance(value, float) and not np.isfinite(value):
            return str(value)
        return value

    for row in (table.header, *table.rows):
        sheet.append([writable(v) for v in row])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


PARQUET_TYPES = ("inferred", "inferred", "inferred", "string", "null", "list", "struct", "binary",
                 "timestamp", "dictionary")


@st.composite
def parquet_bytes(draw, table: Table) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = list(zip(*table.rows)) if table.rows else [() for _ in table.header]
    arrays = []
    for values in columns:
        kind = draw(st.sampled_from(PARQUET_TYPES))
        texts = [None if v is None else cell_text(v) for v in values]
        if kind == "inferred":
            try:
                arrays.append(pa.array(list(values)))
                continue
            except (pa.ArrowException, OverflowError, TypeError, ValueError):
                kind = "string"
        arrays.append({
            "string": lambda: pa.array(texts, pa.string()),
            "null": lambda: pa.nulls(len(values)),
            "list": lambda: pa.array([[i, i] for i in range(len(values))], pa.list_(pa.int64())),
            "struct": lambda: pa.array([{"a": t} for t in texts], pa.struct([("a", pa.string())])),
            "binary": lambda: pa.array([None if t is None else t.encode() for t in texts], pa.binary()),
            "timestamp": lambda: pa.array(list(range(len(values))), pa.timestamp("s")),
            "dictionary": lambda: pa.array(texts, pa.string()).dictionary_encode(),
        }[kind]())
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_arrays(arrays, names=[cell_text(h) for h in table.header]), buffer)
    return buffer.getvalue()


@st.composite
def file_bytes(draw, table: Table, suffix: str) -> bytes:
    """``table`` written as ``suffix`` says (or, now and then, as something else)."""
    kind = suffix.lower()
    if draw(st.integers(0, 19)) == 19:
        kind = draw(st.sampled_from((".csv", ".xlsx", ".parquet")))
    if kind == ".xlsx":
        content = xlsx_bytes(table, draw(st.booleans()))
    elif kind in (".parquet", ".pq"):
        content = draw(parquet_bytes(table))
    else:
        content = draw(text_bytes(table, kind))
    return draw(mangled(content))


@st.composite
def mangled(draw, content: bytes) -> bytes:
    """``content``, or (one time in five) damaged: truncated, NUL bytes, a flipped byte, emptied."""
    damage = draw(st.integers(0, 39)) - 35
    if damage < 0 or len(content) < 2:
        return content
    at = draw(st.integers(1, len(content) - 1))
    return (content[:at], content[:at] + b"\x00" + content[at:], content[:at] + bytes([content[at] ^ 0xFF])
            + content[at + 1:], b"", b"\xff\xfe" + content)[damage]


# ------------------------------------------------------------------- cases
@st.composite
def table_files(draw) -> dict:
    """The files of one wide, long or Qualtrics table, maybe with a codebook and junk beside it."""
    table = draw(st.one_of(wide_tables(), long_tables(), qualtrics_exports()))
    suffix = draw(st.sampled_from(TABLE_SUFFIXES))
    name = draw(st.sampled_from(("answers",) * 6 + ("survey data", "participants-votes", "responses", "codebook")))
    files = {name + suffix: draw(file_bytes(table, suffix))}
    if draw(st.integers(0, 5)) == 5:
        files["codebook.json"] = draw(codebooks(table.header))
    if draw(st.integers(0, 7)) == 7:
        files[draw(st.sampled_from(("README.txt", "report.pdf", ".hidden.csv", "~$lock.xlsx", "sub/x.csv")))] \
            = draw(st.binary(max_size=64))
    return files


@st.composite
def export_files(draw) -> dict:
    """The files of a Polis export or a Pew wave, each written as CSV text."""
    tables = draw(st.one_of(polis_exports(), pew_waves()))
    return {name: draw(file_bytes(table, ".csv")) for name, table in tables.items()}


def zipped(files: dict, prefix: str, junk: bool) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(prefix + name, content)
        if junk:
            archive.writestr("__MACOSX/._answers.csv", b"\x00\x05\x16\x07")
            archive.writestr(prefix + "empty/", b"")
    return buffer.getvalue()


@st.composite
def cases(draw, shapes=None) -> Case:
    files = draw(shapes if shapes is not None else st.one_of(table_files(), table_files(), export_files()))
    delivery = draw(st.sampled_from(("folder", "file", "upload", "uploads", "bytes", "zip path",
                                     "zip upload")))
    if delivery.startswith("zip"):
        archive = zipped(files, draw(st.sampled_from(("", "export/", "a/b/"))), draw(st.booleans()))
        files = {draw(st.sampled_from(("export.zip", "export.ZIP", "export"))): draw(mangled(archive))}
    return Case(tuple(files.items()), delivery, draw(st.sampled_from(FORMATS)))


@st.composite
def clean_wide_tables(draw) -> Table:
    """A wide table with an id and closed questions whose answers vary: what a fit needs."""
    n, k = draw(st.integers(8, 40)), draw(st.integers(1, 6))
    options = draw(st.sampled_from(OPTION_SETS[:-1]))
    return Table(("respondent_id", *[f"q{j}" for j in range(k)]),
                 tuple((str(i), *[options[(i * (j + 1) + i // 3) % len(options)] for j in range(k)])
                       for i in range(n)))


@st.composite
def readable_cases(draw) -> Case:
    """Cases that mostly read, so that fitting gets exercised: clean-ish wide, long and Polis tables."""
    if draw(st.integers(0, 3)) == 3:
        tables = draw(polis_exports())
    else:
        tables = {"answers.csv": draw(st.one_of(clean_wide_tables(), wide_tables(), long_tables()))}
    files = {name: plain_csv(table) for name, table in tables.items()}
    return Case(tuple(files.items()), draw(st.sampled_from(("folder", "uploads"))))


def plain_csv(table: Table) -> bytes:
    """``table`` as the CSV a spreadsheet saves: UTF-8, commas, minimal quoting, one ``\\n`` per row."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(
        [cell_text(c) for c in row] for row in (table.header, *table.rows))
    return buffer.getvalue().encode()


# ---------------------------------------------------------------- property
def deliver(case: Case, folder: Path):
    """The ``source`` and options to pass :func:`read_opinions` for ``case``, files written under ``folder``."""
    options = {} if case.format is None else {"format": case.format}
    if case.delivery in ("folder", "file", "zip path"):
        for name, content in case.files:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(content)
        return (folder if case.delivery == "folder" else folder / case.files[0][0]), options
    if case.delivery == "bytes":
        name, content = case.files[0]
        return content, {**options, "name": name}
    uploads = []
    for name, content in case.files:
        upload = io.BytesIO(content)
        upload.name = name
        uploads.append(upload)
    return (uploads if case.delivery == "uploads" else uploads[0]), options


def wants_fit(case: Case, percent: int) -> bool:
    """Whether to fit what ``case`` reads: a fixed ``percent`` of inputs, chosen by their bytes."""
    checksum = zlib.crc32(b"".join(content for _, content in case.files))
    return checksum % 100 < percent


def attempt(case: Case, fit_percent: int = 0) -> str:
    """Read ``case`` (and maybe fit it); return what happened. Any error but :class:`DataError` propagates.

    Returns ``"read refused"``, ``"read"``, ``"fit refused"`` or ``"fitted"``.
    """
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        source, options = deliver(case, Path(folder))
        try:
            data = read_opinions(source, **options)
        except DataError:
            return "read refused"
        if not (data.n_respondents <= SMALL[0] and data.n_questions <= SMALL[1] and wants_fit(case, fit_percent)):
            return "read"
        try:
            fit_study(data, **FIT_SETTINGS)
        except DataError:
            return "fit refused"
        return "fitted"


class _CheapUMAP:
    """Stands in for ``umap.UMAP``: its numba compilation alone takes ~15 s (the script uses the real one)."""

    def __init__(self, n_components=2, **_):
        self.n_components = n_components

    def fit_transform(self, embeddings):
        centred = embeddings - embeddings.mean(axis=0)
        coords = centred[:, :self.n_components]
        return np.pad(coords, ((0, 0), (0, self.n_components - coords.shape[1])))


@pytest.fixture(scope="module")
def cheap_map():
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=_CheapUMAP))
        yield


SUITE = {"deadline": None, "derandomize": True, "database": None,
         "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}


@settings(max_examples=400, **SUITE)
@given(case=cases())
def test_any_input_is_read_or_refused_with_a_data_error(case, cheap_map):
    attempt(case, fit_percent=10)


@settings(max_examples=20, **SUITE)
@given(case=readable_cases())
def test_what_reads_is_fitted_or_refused_with_a_data_error(case, cheap_map):
    attempt(case, fit_percent=100)
