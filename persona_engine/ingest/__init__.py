"""Ingest: read survey answers in any supported format into :class:`OpinionData`.

Supported inputs, recognised from their files (see :mod:`.detect`):

* a Polis conversation export (:mod:`.polis`),
* a wide table, one row per respondent (:mod:`.tables`),
* a long table, one row per answer (:mod:`.tables`),
* a Pew American Trends Panel wave in the OpinionQA layout (:mod:`.pew`),
* a labelled SPSS, Stata or SAS file (:mod:`.labelled`),
* a Qualtrics export, CSV or XLSX (:mod:`.qualtrics`),

each as a file, a folder, a zip of a folder, or uploaded bytes. Tables may be
CSV, TSV, Parquet or XLSX. A codebook (:mod:`.codebook`) says what the
columns of a wide or long table mean; labelled files and Qualtrics exports
carry their own, which a codebook given with them overrides, and
:func:`infer_codebook` writes out the one a reading used. Every problem with
the input is raised as :class:`~persona_engine.errors.DataError`.

Example::

    from persona_engine.ingest import read_opinions
    data = read_opinions("sample_data/gss_spending")        # uses its codebook.json
    data = read_opinions("sample_data/polis/brexit-consensus")
    data = read_opinions(uploaded.getvalue(), name=uploaded.name)   # Streamlit
    data = read_opinions("gss.sav")                          # labels are the codebook
    book = infer_codebook("gss.sav")                         # ... which this writes out
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path, PurePath

import pandas as pd

from persona_engine.errors import DataError
from persona_engine.ingest.codebook import Codebook, MetadataSpec, QuestionSpec, read_codebook
from persona_engine.ingest.detect import FORMATS, detect
from persona_engine.ingest.files import DEFAULT_MAX_BYTES, collect_inputs
from persona_engine.ingest.labelled import LABELLED_SUFFIXES, labelled_table
from persona_engine.ingest.options import MAX_AUTO_OPTIONS
from persona_engine.ingest.pew import read_pew
from persona_engine.ingest.polis import missing_comments, read_polis
from persona_engine.ingest.qualtrics import looks_like_qualtrics, qualtrics_table
from persona_engine.ingest.table_files import read_table
from persona_engine.ingest.tables import read_long, read_wide
from persona_engine.ingest.written_codebook import codebook_json, codebook_text, written_codebook
from persona_engine.opinion_data import OpinionData

__all__ = ["read_opinions", "infer_codebook", "codebook_json", "codebook_text", "read_codebook", "Codebook",
           "QuestionSpec", "MetadataSpec", "FORMATS", "DEFAULT_MAX_BYTES", "MAX_AUTO_OPTIONS"]


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
        ``"polis"``, ``"wide"``, ``"long"``, ``"pew"``, ``"labelled"`` (SPSS,
        Stata, SAS) or ``"qualtrics"``; ``None`` (or ``"auto"``) to detect.
    codebook:
        A codebook for a table: a path or upload of a ``.json`` or ``.csv``
        codebook, a ``dict`` in the JSON form, or a :class:`Codebook`.
        ``None`` uses a ``codebook.json`` or ``codebook.csv`` found next to
        the table, if any. For a labelled file or a Qualtrics export it is
        laid over the codebook the file carries.
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
    return _read(source, name=name, format=format, codebook=codebook, id_column=id_column,
                 respondent_column=respondent_column, question_column=question_column,
                 answer_column=answer_column, max_bytes=max_bytes)[0]


def infer_codebook(source, **options) -> Codebook:
    """The codebook :func:`read_opinions` used (or inferred) to read ``source``.

    Takes the same arguments as :func:`read_opinions`. Reading ``source`` again
    with the result (``codebook=``) gives the same :class:`OpinionData`;
    :func:`codebook_json` turns it into the JSON form to save and edit. Polis
    exports and Pew waves have no codebook, which is an error.
    """
    data, table, book = _read(source, **options)
    if table is None and data.source.format != "long":
        raise DataError(f"a {data.source.format} export has no codebook: codebooks describe "
                        "tables, labelled files and Qualtrics exports",
                        file=_describe(source, options.get("name")),
                        expected="a wide or long table, an SPSS, Stata or SAS file, or a "
                                 "Qualtrics export")
    return written_codebook(data, table, book)


def _read(source, *, name=None, format=None, codebook=None, id_column=None,
          respondent_column="respondent_id", question_column="question_id",
          answer_column="answer", max_bytes=DEFAULT_MAX_BYTES
          ) -> tuple[OpinionData, pd.DataFrame | None, Codebook | None]:
    """The answers, the wide table they were read from (``None`` otherwise), and the codebook used."""
    where = _describe(source, name)
    format = None if format == "auto" else format
    files = collect_inputs(source, name, max_bytes)
    found = detect(files, where, format)
    if found.format in ("polis", "pew"):
        if codebook is not None:
            raise DataError(f"a codebook applies to tables and labelled files, not to a "
                            f"{found.format} export", file=where,
                            expected="no codebook for this data")
        reader = read_polis if found.format == "polis" else read_pew
        return reader(*found.files.values(), max_bytes=max_bytes), None, None

    table_file = found.files["table"]
    book = None
    used = [table_file.display]
    if codebook is not None:
        book = read_codebook(codebook)
        used.append(book.file)
    elif found.codebook is not None:
        book = read_codebook(found.codebook.read_bytes(), name=found.codebook.basename)
        book = replace(book, file=found.codebook.display)
        used.append(found.codebook.display)
    if found.format == "labelled":
        labelled = labelled_table(table_file, found.files.get("catalog"), codebook=book)
        data = read_wide(labelled.table, table_file.display, codebook=labelled.codebook,
                         id_column=id_column, files=tuple(used))
        data.source = replace(data.source, format=LABELLED_SUFFIXES[table_file.suffix])
        return data, labelled.table, labelled.codebook

    table = read_table(table_file, max_bytes)
    if format == "qualtrics" or (format is None and looks_like_qualtrics(table)):
        export = qualtrics_table(table, table_file.display, codebook=book)
        try:
            data = read_wide(export.table, table_file.display, codebook=export.codebook,
                             id_column=id_column, files=tuple(used))
        except DataError as error:  # rows of the answers, counted below the three header rows
            if error.row is None or not 2 <= error.row < len(export.file_rows) + 2:
                raise
            raise DataError(error.message, file=error.file, row=int(export.file_rows[error.row - 2]),
                            column=error.column, expected=error.expected) from None
        data.source = replace(data.source, format="qualtrics")
        return data, export.table, export.codebook
    is_long = {respondent_column, question_column, answer_column} <= set(table.columns)
    if format == "long" or (format is None and is_long):
        return read_long(table, table_file.display, codebook=book,
                         respondent_column=respondent_column, question_column=question_column,
                         answer_column=answer_column, files=tuple(used)), None, book
    if format is None and (error := missing_comments([table_file.display])) is not None:
        raise error  # Polis's per-participant counts would be read as questions, its statements without text
    return read_wide(table, table_file.display, codebook=book, id_column=id_column,
                     files=tuple(used)), table, book


def _describe(source, name: str | None) -> str:
    """How error messages name the whole input."""
    if isinstance(source, (str, PurePath)):
        return str(Path(source))
    if isinstance(source, (list, tuple)):
        names = [str(getattr(s, "name", s if isinstance(s, (str, PurePath)) else "upload"))
                 for s in source]
        return ", ".join(names[:4]) + (" ..." if len(names) > 4 else "")
    return str(name or getattr(source, "name", None) or "upload")
