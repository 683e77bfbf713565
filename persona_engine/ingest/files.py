"""Getting the user's files into memory safely: paths, uploads and zips.

Everything the ingest stage reads goes through here, so the safety rules live
in one place:

* the user's files are only ever opened read-only (``"rb"``);
* a file's size is checked against ``max_bytes`` *before* it is read;
* zip archives are read member by member in memory, never extracted to disk;
  members with absolute or ``..`` paths are refused, and the total size read
  out of an archive is capped, so a zip bomb stops at ``max_bytes``;
* tables are parsed with pandas' CSV, Parquet (pyarrow) and Excel (openpyxl)
  readers, and SPSS, Stata and SAS files with pyreadstat, only. Nothing is
  ever unpickled.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable

import numpy as np
import pandas as pd

from persona_engine.errors import DataError

DEFAULT_MAX_BYTES = 500_000_000
"""Largest file (or total read out of one zip) accepted: 500 MB."""

TABLE_SUFFIXES = {".csv": "CSV", ".tsv": "TSV", ".tab": "TSV", ".txt": "CSV",
                  ".parquet": "Parquet", ".pq": "Parquet", ".xlsx": "XLSX"}
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
MAX_FOLDER_FILES = 2000
MAX_FOLDER_DEPTH = 4
MAX_ZIP_MEMBERS = 2000


@dataclass(frozen=True)
class InputFile:
    """One file offered to the ingest stage, not yet read.

    ``name`` is its path relative to what the user gave (a folder, a zip or an
    upload), in POSIX form; ``display`` is how error messages name it.
    """

    name: str
    display: str
    size: int | None
    load: Callable[[], bytes]

    @property
    def basename(self) -> str:
        return PurePosixPath(self.name).name

    @property
    def folder(self) -> str:
        return str(PurePosixPath(self.name).parent)

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix.lower()

    def read_bytes(self) -> bytes:
        return self.load()


# ------------------------------------------------------------------ collecting
def collect_inputs(source, name: str | None = None,
                   max_bytes: int = DEFAULT_MAX_BYTES) -> list[InputFile]:
    """List the files in ``source``, expanding a zip archive into its members.

    ``source`` is a path to a file or folder, raw bytes, a file-like object
    (e.g. a Streamlit upload, whose ``.name`` is used), or a list of uploads
    (e.g. ``participants-votes.csv`` and ``comments.csv`` chosen together).
    """
    if isinstance(source, (list, tuple)):
        files = []
        for item in source:
            files.extend(collect_inputs(item, None, max_bytes))
        if not files:
            raise DataError("no files were given", expected="at least one data file")
        return files
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            return _folder_files(path, max_bytes)
        if not path.exists():
            raise DataError("no such file or folder", file=path)
        file = _disk_file(path, path.name, max_bytes)
    else:
        file = _upload_file(source, name, max_bytes)
    if file.suffix == ".zip" or _looks_like_zip(file):
        return zip_members(file, max_bytes)
    return [file]


def _disk_file(path: Path, relative: str, max_bytes: int) -> InputFile:
    try:
        size = path.stat().st_size
    except OSError as error:
        raise DataError(f"cannot be read ({error.strerror})", file=path) from None
    _check_size(size, path, max_bytes)

    def load() -> bytes:
        try:
            with open(path, "rb") as handle:  # read-only: the user's files are never modified
                data = handle.read(max_bytes + 1)
        except OSError as error:
            raise DataError(f"cannot be read ({error.strerror})", file=path) from None
        _check_size(len(data), path, max_bytes)  # it may have grown since stat()
        return data

    return InputFile(relative, str(path), size, load)


def _folder_files(folder: Path, max_bytes: int) -> list[InputFile]:
    files = []
    for root, dirs, names in os.walk(folder):
        depth = len(Path(root).relative_to(folder).parts)
        dirs[:] = [] if depth >= MAX_FOLDER_DEPTH else sorted(
            d for d in dirs if not d.startswith((".", "__")))
        for file_name in sorted(names):
            if file_name.startswith((".", "~$")):
                continue  # hidden files and Excel lock files
            path = Path(root) / file_name
            relative = path.relative_to(folder).as_posix()
            if len(files) >= MAX_FOLDER_FILES:
                raise DataError(f"holds more than {MAX_FOLDER_FILES} files", file=folder,
                                expected="the folder of one survey or Polis export")
            files.append(_lazy_disk_file(path, relative, max_bytes))
    if not files:
        raise DataError("the folder is empty", file=folder,
                        expected="a data file such as a CSV, TSV, Parquet or XLSX table")
    return files


def _lazy_disk_file(path: Path, relative: str, max_bytes: int) -> InputFile:
    # Files in a folder that detection never picks (a README, a PDF) are not
    # size-checked or read at all; the check happens when one is loaded.
    def load() -> bytes:
        return _disk_file(path, relative, max_bytes).read_bytes()

    try:
        size = path.stat().st_size
    except OSError:
        size = None
    return InputFile(relative, str(path), size, load)


def _upload_file(source, name: str | None, max_bytes: int) -> InputFile:
    name = name or getattr(source, "name", None)
    if not name:
        raise DataError("an uploaded file needs a name (e.g. name='answers.csv') "
                        "so that its format can be recognised")
    name = PurePosixPath(str(name).replace("\\", "/")).name
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        _check_size(len(data), name, max_bytes)
        return InputFile(name, name, len(data), lambda: data)
    if not hasattr(source, "read"):
        raise DataError(f"cannot read a {type(source).__name__} as a data file",
                        expected="a path, bytes or an uploaded file")
    size = getattr(source, "size", None)
    if size is None and hasattr(source, "seek") and hasattr(source, "tell"):
        position = source.tell()
        size = source.seek(0, io.SEEK_END) - position
        source.seek(position)
    if size is not None:
        _check_size(size, name, max_bytes)
    # getvalue() (BytesIO, Streamlit's UploadedFile) reads from the start even
    # if the upload was read before, e.g. on a previous run of the app.
    data = source.getvalue() if hasattr(source, "getvalue") else source.read(max_bytes + 1)
    if isinstance(data, str):
        data = data.encode("utf-8")
    _check_size(len(data), name, max_bytes)
    return InputFile(name, name, len(data), lambda: data)


def _check_size(size: int, where, max_bytes: int) -> None:
    if size > max_bytes:
        raise DataError(f"the file is {_human_size(size)}, over the limit of "
                        f"{_human_size(max_bytes)}", file=where,
                        expected="a smaller file, or a larger max_bytes")


def _human_size(n_bytes: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:,.1f} {unit}"
    return f"{n_bytes} bytes"


def _looks_like_zip(file: InputFile) -> bool:
    # An upload renamed without .zip is still recognised, but .xlsx (itself a
    # zip) is a table, not an archive of tables.
    return file.suffix not in TABLE_SUFFIXES and bool(file.size) \
        and file.read_bytes()[:4] == b"PK\x03\x04"


# ------------------------------------------------------------------------- zip
def zip_members(archive: InputFile, max_bytes: int) -> list[InputFile]:
    """The files inside a zip archive, each read in memory on demand.

    Directory entries, hidden files and macOS ``__MACOSX`` resource forks are
    skipped. A member whose path is absolute or climbs out with ``..`` makes
    the whole archive refused: a well-formed export never has one.
    """
    data = archive.read_bytes()
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise DataError(f"is not a readable zip archive ({error})", file=archive.display) from None
    if len(infos) > MAX_ZIP_MEMBERS:
        raise DataError(f"holds {len(infos)} files", file=archive.display,
                        expected=f"at most {MAX_ZIP_MEMBERS} files")
    budget = {"left": max_bytes}
    members = []
    for info in infos:
        path = PurePosixPath(info.filename.replace("\\", "/"))
        if path.is_absolute() or ".." in path.parts or re.match(r"^[A-Za-z]:", info.filename):
            raise DataError(f"holds a file with an unsafe path '{info.filename}'",
                            file=archive.display, expected="paths inside the archive")
        if info.is_dir() or any(p.startswith((".", "__MACOSX")) for p in path.parts):
            continue
        if info.flag_bits & 0x1:
            raise DataError(f"'{info.filename}' is encrypted", file=archive.display,
                            expected="a zip without a password")
        display = f"{archive.display}/{path.as_posix()}"
        members.append(InputFile(path.as_posix(), display, info.file_size,
                                 _member_loader(zf, info, display, budget, max_bytes)))
    if not members:
        raise DataError("the zip archive is empty", file=archive.display,
                        expected="a zip of a folder with data files")
    return members


def _member_loader(zf: zipfile.ZipFile, info: zipfile.ZipInfo, display: str,
                   budget: dict, max_bytes: int) -> Callable[[], bytes]:
    cache: list[bytes] = []

    def load() -> bytes:
        if cache:
            return cache[0]
        # Sizes are checked when a member is needed, so that a large file the
        # data set does not use (a PDF report) does not block the archive.
        _check_size(info.file_size, display, max_bytes)
        limit = min(budget["left"], max_bytes)
        try:
            with zf.open(info) as handle:
                data = handle.read(limit + 1)  # never trust the header's size alone
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, zlib.error) as error:
            raise DataError(f"cannot be unpacked ({error})", file=display) from None
        if len(data) > limit:
            raise DataError("unpacks to more than the size limit", file=display,
                            expected="a zip whose contents are under the size limit")
        budget["left"] -= len(data)
        cache.append(data)
        return data

    return load


# ------------------------------------------------------------------------ text
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
    _check_size(unpacked, where, max_bytes)


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
