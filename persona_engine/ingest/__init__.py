"""Ingest: read survey answers in any supported format into :class:`OpinionData`.

Supported inputs, recognised from their files (see :mod:`.detect`):

* a Polis conversation export (:mod:`.polis`),
* a wide table, one row per respondent (:mod:`.tables`),
* a long table, one row per answer (:mod:`.tables`),
* a Pew American Trends Panel wave in the OpinionQA layout (:mod:`.pew`),

each as a file, a folder, a zip of a folder, or uploaded bytes. Tables may be
CSV, TSV, Parquet or XLSX. A codebook (:mod:`.codebook`) says what the
columns of a wide or long table mean. Every problem with the input is raised
as :class:`~persona_engine.errors.DataError`.

Example::

    from persona_engine.ingest import read_opinions
    data = read_opinions("sample_data/gss_spending")        # uses its codebook.json
    data = read_opinions("sample_data/polis/brexit-consensus")
    data = read_opinions(uploaded.getvalue(), name=uploaded.name)   # Streamlit
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path, PurePath

from persona_engine.errors import DataError
from persona_engine.ingest.codebook import Codebook, MetadataSpec, QuestionSpec, read_codebook
from persona_engine.ingest.detect import FORMATS, detect
from persona_engine.ingest.files import DEFAULT_MAX_BYTES, collect_inputs, read_table
from persona_engine.ingest.options import MAX_AUTO_OPTIONS
from persona_engine.ingest.pew import read_pew
from persona_engine.ingest.polis import read_polis
from persona_engine.ingest.tables import read_long, read_wide
from persona_engine.opinion_data import OpinionData

__all__ = ["read_opinions", "read_codebook", "Codebook", "QuestionSpec", "MetadataSpec",
           "FORMATS", "DEFAULT_MAX_BYTES", "MAX_AUTO_OPTIONS"]


def read_opinions(
    source,
    *,
    name: str | None = None,
    format: str | None = None,
    codebook=None,
    id_column: str | None = None,
    respondent_column: str = "respondent_id",
    question_column: str = "question_id",
    answer_column: str = "answer",
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> OpinionData:
    """Read survey answers from a path, upload or list of uploads.

    Parameters
    ----------
    source:
        A path to a file or folder (``str`` or ``Path``), raw ``bytes``, a
        file-like object such as a Streamlit ``UploadedFile``, or a list of
        those (e.g. a Polis export's files uploaded together). A ``.zip`` is
        read as the folder it holds.
    name:
        The file name of ``source`` when it is bytes or a file-like object
        without a ``.name`` (its extension tells the format).
    format:
        ``"polis"``, ``"wide"``, ``"long"`` or ``"pew"``; ``None`` (or
        ``"auto"``) to detect.
    codebook:
        A codebook for a wide or long table: a path or upload of a ``.json``
        or ``.csv`` codebook, a ``dict`` in the JSON form, or a
        :class:`Codebook`. ``None`` uses a ``codebook.json`` or
        ``codebook.csv`` found next to the table, if any.
    id_column:
        The respondent id column of a wide table (default: detected).
    respondent_column, question_column, answer_column:
        Column names of a long table.
    max_bytes:
        Largest file accepted, checked before reading (default 500 MB).

    Returns
    -------
    OpinionData
        ``source.format`` is the format read; ``source.files`` the files read.
    """
    where = _describe(source, name)
    format = None if format == "auto" else format
    files = collect_inputs(source, name, max_bytes)
    found = detect(files, where, format)
    if found.format in ("polis", "pew"):
        if codebook is not None:
            raise DataError(f"a codebook applies to wide and long tables, not to a {found.format} "
                            "export", file=where, expected="no codebook for this data")
        reader = read_polis if found.format == "polis" else read_pew
        return reader(*found.files.values(), max_bytes=max_bytes)

    table_file = found.files["table"]
    table = read_table(table_file, max_bytes)
    book = None
    used = [table_file.display]
    if codebook is not None:
        book = read_codebook(codebook)
        used.append(book.file)
    elif found.codebook is not None:
        book = read_codebook(found.codebook.read_bytes(), name=found.codebook.basename)
        book = replace(book, file=found.codebook.display)
        used.append(found.codebook.display)
    is_long = {respondent_column, question_column, answer_column} <= set(table.columns)
    if format == "long" or (format is None and is_long):
        return read_long(table, table_file.display, codebook=book,
                         respondent_column=respondent_column, question_column=question_column,
                         answer_column=answer_column, files=tuple(used))
    return read_wide(table, table_file.display, codebook=book, id_column=id_column,
                     files=tuple(used))


def _describe(source, name: str | None) -> str:
    """How error messages name the whole input."""
    if isinstance(source, (str, PurePath)):
        return str(Path(source))
    if isinstance(source, (list, tuple)):
        names = [str(getattr(s, "name", s if isinstance(s, (str, PurePath)) else "upload"))
                 for s in source]
        return ", ".join(names[:4]) + (" ..." if len(names) > 4 else "")
    return str(name or getattr(source, "name", None) or "upload")
