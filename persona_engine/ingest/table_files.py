"""Reading one file's bytes as a table: text decoding, CSV and TSV, Parquet and XLSX.

Tables are parsed with pandas' CSV, Parquet (pyarrow) and Excel (openpyxl)
readers only (SPSS, Stata and SAS files are :mod:`persona_engine.ingest.labelled`'s);
nothing is ever unpickled. Every way a file can fail to be a flat table of
text (empty, binary, corrupt, ragged rows, nested cells, duplicate column
names) is raised as :class:`~persona_engine.errors.DataError` naming the file,
and where it can the row and column.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import zipfile

import numpy as np
import pandas as pd

from persona_engine.errors import DataError
from persona_engine.ingest.files import DEFAULT_MAX_BYTES, TABLE_SUFFIXES, InputFile, check_size

ENCODINGS = ("utf-8", "utf-8-sig", "latin-1")
CONTROL_BYTES = bytes([*range(0x00, 0x09), 0x0B, *range(0x0E, 0x20), 0x7F])
CP1252_UNDEFINED_BYTES = bytes([0x81, 0x8D, 0x8F, 0x90, 0x9D])
BINARY_SAMPLE_BYTES = 65_536
# Only blank cells and the usual spellings of "not available" are missing.
# pandas' default list also holds "None", which is a real Pew answer option.
MISSING_TEXTS = ["", "NA", "N/A", "n/a", "NaN", "nan", "#N/A", "NULL", "null"]
UNSUPPORTED_HINTS = {
    ".xls": "; save the workbook as .xlsx or CSV",
    ".rds": "; in R, write.csv() or arrow::write_parquet() the data frame",
    ".pkl": "; pickle files are never read because loading one can run code; "
            "save the table as Parquet or CSV",
    ".pickle": "; pickle files are never read because loading one can run code; "
               "save the table as Parquet or CSV",
}


def _newlines(text: str) -> str:
    """Windows (``\\r\\n``) and classic Mac (``\\r``) line endings as ``\\n``, which the csv module needs."""
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def csv_rows(reader, where: str):
    """The rows of a ``csv`` module ``reader``; its errors (a cell over the csv module's
    size limit, a stray quote) as :class:`DataError` naming the line."""
    try:
        yield from reader
    except csv.Error as error:
        raise DataError(f"cannot be read as a table of text ({error})", file=where,
                        row=reader.line_num or None,
                        expected="cells under 128 KiB and quotes that open and close") from None


def decode_text(data: bytes, where: str) -> str:
    """Decode a text file, trying UTF-8, UTF-8 with BOM, then Latin-1, with ``\\n`` line endings.

    A file that starts with a UTF-16 byte-order mark is read as UTF-16. Bytes
    that no text table holds (see :func:`looks_binary`) are refused rather
    than decoded as Latin-1, which would accept any bytes at all; Latin-1
    text written by Windows (cp1252) is read as before.
    """
    if not data.strip():
        raise DataError("the file is empty", file=where, expected="a header row and data rows")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:  # Excel's "Unicode Text" export; its NUL bytes are not binary
            return _newlines(data.decode("utf-16").removeprefix("\ufeff"))
        except UnicodeDecodeError:
            pass
    sample = data[:BINARY_SAMPLE_BYTES]
    if looks_binary(sample):
        raise _not_text(where)
    for encoding in ENCODINGS:
        # Bytes cp1252 leaves undefined are common in UTF-8 (Cyrillic letters),
        # so they count against a file only once it is known not to be UTF-8.
        if encoding == "latin-1" and looks_binary(sample, CONTROL_BYTES + CP1252_UNDEFINED_BYTES):
            raise _not_text(where)
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        return _newlines(text.removeprefix("\ufeff"))  # a BOM decoded as plain UTF-8
    raise AssertionError("latin-1 decodes any bytes")  # pragma: no cover


def _not_text(where: str) -> DataError:
    return DataError("looks like a binary file, not a text table", file=where,
                     expected="a CSV or TSV text file (UTF-8 or Latin-1), or a Parquet, XLSX or "
                              "zip file named with its own extension")


def looks_binary(sample: bytes, odd_bytes: bytes = CONTROL_BYTES) -> bool:
    """Whether ``sample`` (the start of a file) holds bytes no text table has.

    ``odd_bytes`` are those: by default NUL and the other control characters
    but tab, line breaks and form feed. Text has none of them; images,
    archives and compressed data are about one byte in eight. A stray one (a
    trailing Ctrl-Z) is allowed, a NUL never.
    """
    if b"\x00" in sample:
        return True
    odd = len(sample) - len(sample.translate(None, delete=odd_bytes))
    return odd > max(2, len(sample) // 100)


def read_table(file: InputFile, max_bytes: int = DEFAULT_MAX_BYTES) -> pd.DataFrame:
    """Read a CSV, TSV, Parquet or XLSX file into a DataFrame.

    CSV and TSV cells are kept as text (``str``, missing cells NaN) so that
    answer codes like ``1`` and ``1.0`` are compared by the ingest stage, not
    guessed by pandas. Raises :class:`DataError` for empty, binary, corrupt or
    unsupported files and for duplicate column names.
    """
    kind = TABLE_SUFFIXES.get(file.suffix)
    if kind is None:
        hint = UNSUPPORTED_HINTS.get(file.suffix, "")
        raise DataError(f"unknown file type '{file.suffix or file.basename}'{hint}",
                        file=file.display,
                        expected="CSV, TSV, Parquet, XLSX, an SPSS, Stata or SAS file, or a zip "
                                 "of a folder of them")
    data = file.read_bytes()
    if kind == "Parquet":
        table = _read_binary(data, file.display, kind, _read_parquet)
        _check_flat(table, file.display)
    elif kind == "XLSX":
        _check_xlsx_unpacked_size(data, file.display, max_bytes)
        table = _read_binary(data, file.display, kind, lambda b: pd.read_excel(
            b, engine="openpyxl", dtype=object, keep_default_na=False, na_values=MISSING_TEXTS))
    else:
        table = _read_delimited(decode_text(data, file.display), file)
    if table.empty:
        raise DataError("the table has no rows" if len(table.columns) else "the table is empty",
                        file=file.display, expected="a header row followed by data rows")
    table.columns = [str(c).strip() for c in table.columns]
    _check_unique_columns(list(table.columns), file.display, blank_too=True)  # " " and "\xa0" are both ""
    return table


def _check_xlsx_unpacked_size(data: bytes, where: str, max_bytes: int) -> None:
    # An .xlsx is itself a zip; openpyxl would unpack a bomb without asking.
    try:
        unpacked = sum(i.file_size for i in zipfile.ZipFile(io.BytesIO(data)).infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        raise DataError("could not be read as XLSX (not a valid workbook)", file=where,
                        expected="an Excel .xlsx workbook") from None
    check_size(unpacked, where, max_bytes)


def _read_binary(data: bytes, where: str, kind: str, reader) -> pd.DataFrame:
    if not data:
        raise DataError("the file is empty", file=where)
    try:
        table = reader(io.BytesIO(data))
    except Exception as error:  # pyarrow and openpyxl raise many types for corrupt files
        raise DataError(f"could not be read as {kind} ({type(error).__name__}: {error})",
                        file=where, expected=f"a valid {kind} file") from None
    _check_unique_columns([str(c) for c in table.columns], where)
    return table


def _read_parquet(buffer: io.BytesIO) -> pd.DataFrame:
    import pyarrow.parquet as pq

    table = pq.read_table(buffer)
    # pandas decodes text lazily, so invalid UTF-8 would fail far from here; check it all now.
    table.validate(full=True)
    return table.to_pandas()  # what pd.read_parquet does, without reading the file again


def _check_flat(table: pd.DataFrame, where: str) -> None:
    """Refuse Parquet columns of lists, structs or maps: an answer is one value per cell."""
    for position, column in enumerate(table.columns, start=1):
        if table[column].dtype != object:
            continue
        nested = table[column].map(lambda v: isinstance(v, (dict, list, tuple, set, np.ndarray)))
        if nested.any():
            row = int(np.argmax(nested.to_numpy())) + 2
            raise DataError("holds lists or records, not one answer per cell", file=where,
                            row=row, column=str(column),
                            expected="a flat table: one plain value (text or number) per cell")


def _read_delimited(text: str, file: InputFile) -> pd.DataFrame:
    first_line = text.split("\n", 1)[0]
    if file.suffix in (".tsv", ".tab"):
        sep = "\t"
    else:  # a comma unless the header clearly uses semicolons or tabs
        sep = max([",", ";", "\t"], key=first_line.count)
    header = next(csv_rows(csv.reader(io.StringIO(first_line), delimiter=sep), file.display), [])
    _check_unique_columns([h.strip() for h in header], file.display)
    try:
        table = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False,
                            na_values=MISSING_TEXTS, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise DataError("the file is empty", file=file.display) from None
    except pd.errors.ParserError as error:
        raise _long_row_error(text, sep, len(header), file.display) or _parser_error(
            error, sep, file.display) from None
    # pandas reads the surplus leading cells of a first row that is longer
    # than the header as row names, silently; only R's write.table layout (every
    # row one cell longer: unlabelled row names) means that.
    if not isinstance(table.index, pd.RangeIndex) and not _has_row_names(text, sep, len(header), file.display):
        raise _long_row_error(text, sep, len(header), file.display) or DataError(
            "rows do not line up with the header", file=file.display, row=2,
            expected=f"the same number of '{sep}'-separated cells on every row")
    return table


def _row_widths(text: str, sep: str, where: str):
    """``(row, line, n_cells)`` for each non-blank row after the header.

    ``row`` counts as a spreadsheet does (the header is row 1, blank lines
    count); ``line`` is the line of the file the row starts on, which is later
    than ``row`` once a quoted cell above holds a line break.
    """
    reader = csv.reader(io.StringIO(text), delimiter=sep, skipinitialspace=True)
    rows = csv_rows(reader, where)
    next(rows, None)
    line = reader.line_num
    for row, cells in enumerate(rows, start=2):
        if cells:
            yield row, line + 1, len(cells)
        line = reader.line_num


def _long_row_error(text: str, sep: str, width: int, where: str) -> DataError | None:
    """The first row with more cells than the header's ``width``, as an error; ``None`` if none has.

    Only called once pandas has failed, so large valid files are parsed once.
    """
    for row, line, n_cells in _row_widths(text, sep, where):
        if n_cells > width:
            at = "" if line == row else f" (it starts on line {line} of the file)"
            return DataError(f"has {n_cells} cells but the header (row 1) has {width}{at}",
                             file=where, row=row,
                             expected=f"at most {width} '{sep}'-separated cells on every row; "
                                      f"a cell that contains '{sep}' must be in double quotes")
    return None


def _has_row_names(text: str, sep: str, width: int, where: str) -> bool:
    return all(n_cells == width + 1 for _, _, n_cells in _row_widths(text, sep, where))


def _parser_error(error: Exception, sep: str, where: str) -> DataError:
    line = re.search(r"line (\d+)", str(error))
    reason = " ".join(str(error).split())
    return DataError(f"rows do not line up with the header ({reason})", file=where,
                     row=int(line.group(1)) if line else None,
                     expected=f"the same number of '{sep}'-separated cells on every row")


def _check_unique_columns(columns: list[str], where: str, *, blank_too: bool = False) -> None:
    """Refuse a header that names a column twice; blank names only with ``blank_too`` (pandas
    names blank CSV headers "Unnamed: N", so they only collide once spaces are stripped)."""
    seen: dict[str, int] = {}
    for position, column in enumerate(columns, start=1):
        if column in seen and (column or blank_too):
            what = "the column name appears twice" if column else "two columns have no name"
            raise DataError(f"{what} (columns {seen[column]} and {position})",
                            file=where, row=1, column=column or None, expected="unique column names")
        seen[column] = position
