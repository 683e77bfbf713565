"""Getting the user's files into memory safely: paths, folders, uploads and zips.

Everything the ingest stage reads goes through here, so the safety rules live
in one place:

* the user's files are only ever opened read-only (``"rb"``);
* a file's size is checked against ``max_bytes`` *before* it is read;
* zip archives are read member by member in memory, never extracted to disk;
  members with absolute or ``..`` paths are refused, and the total size read
  out of an archive is capped, so a zip bomb stops at ``max_bytes``.

What a file's bytes are then read as (CSV, Parquet, XLSX...) is
:mod:`persona_engine.ingest.table_files`; nothing is ever unpickled.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable

from persona_engine.errors import DataError

DEFAULT_MAX_BYTES = 500_000_000
"""Largest file (or total read out of one zip) accepted: 500 MB."""

TABLE_SUFFIXES = {".csv": "CSV", ".tsv": "TSV", ".tab": "TSV", ".txt": "CSV",
                  ".parquet": "Parquet", ".pq": "Parquet", ".xlsx": "XLSX"}
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
    check_size(size, path, max_bytes)

    def load() -> bytes:
        try:
            with open(path, "rb") as handle:  # read-only: the user's files are never modified
                data = handle.read(max_bytes + 1)
        except OSError as error:
            raise DataError(f"cannot be read ({error.strerror})", file=path) from None
        check_size(len(data), path, max_bytes)  # it may have grown since stat()
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
        check_size(len(data), name, max_bytes)
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
        check_size(size, name, max_bytes)
    # getvalue() (BytesIO, Streamlit's UploadedFile) reads from the start even
    # if the upload was read before, e.g. on a previous run of the app.
    data = source.getvalue() if hasattr(source, "getvalue") else source.read(max_bytes + 1)
    if isinstance(data, str):
        data = data.encode("utf-8")
    check_size(len(data), name, max_bytes)
    return InputFile(name, name, len(data), lambda: data)


def check_size(size: int, where, max_bytes: int) -> None:
    """Refuse a file of ``size`` bytes over ``max_bytes``, naming it by ``where``."""
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
        check_size(info.file_size, display, max_bytes)
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
