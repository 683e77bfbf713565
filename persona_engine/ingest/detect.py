"""Recognising which format a set of files is in.

* a folder with ``participants-votes.csv`` and ``comments.csv`` is a Polis
  export;
* a folder with ``responses.csv`` and ``info.csv`` is a Pew wave;
* a labelled SPSS, Stata or SAS file (``.sav``, ``.zsav``, ``.por``, ``.dta``,
  ``.sas7bdat`` with an optional ``.sas7bcat`` catalog, ``.xpt``) is read with
  its labels (:mod:`.labelled`);
* otherwise the one table (CSV, TSV, Parquet or XLSX) is read as a Qualtrics
  export if it has Qualtrics' header rows (:mod:`.qualtrics`), as a long
  table if it has the respondent, question and answer columns, else as a wide
  table. A file named ``codebook.json`` or ``codebook.csv`` next to it is its
  codebook.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from persona_engine.errors import DataError
from persona_engine.ingest import pew, polis
from persona_engine.ingest.files import TABLE_SUFFIXES, InputFile
from persona_engine.ingest.labelled import LABELLED_SUFFIXES, SAS_CATALOG_SUFFIX

FORMATS = ("polis", "wide", "long", "pew", "labelled", "qualtrics")
"""Values of ``format=``; ``"labelled"`` covers SPSS, Stata and SAS files, whose
``source.format`` is ``"spss"``, ``"stata"`` or ``"sas"``."""
CODEBOOK_NAMES = {"codebook.json", "codebook.csv"}


@dataclass
class Detected:
    """The format found and the files it needs, by role.

    Roles: ``votes``, ``comments``, ``summary`` (Polis); ``responses``,
    ``info``, ``metadata`` (Pew); ``table`` (wide, long or Qualtrics, which is
    decided once the table's columns are known, so ``format`` is ``"table"``
    then); ``table`` and an optional SAS ``catalog`` (``format`` ``"labelled"``).
    """

    format: str
    files: dict[str, InputFile] = field(default_factory=dict)
    codebook: InputFile | None = None


def detect(files: list[InputFile], where: str, format: str | None = None) -> Detected:
    """Pick the format and files to read among ``files``."""
    if format is not None and format not in FORMATS:
        raise DataError(f"unknown format '{format}'", expected=f"one of {', '.join(FORMATS)}")
    folders: dict[str, dict[str, InputFile]] = defaultdict(dict)
    for file in files:
        folders[file.folder][file.basename.casefold()] = file
    polis_folders = {f: m for f, m in folders.items()
                     if polis.VOTES_FILE in m and polis.COMMENTS_FILE in m}
    pew_folders = {f: m for f, m in folders.items()
                   if pew.RESPONSES_FILE in m and pew.INFO_FILE in m}

    if format in (None, "polis") and polis_folders and not (format is None and pew_folders):
        members = _only_one(polis_folders, "Polis exports", where)
        return Detected("polis", {"votes": members[polis.VOTES_FILE],
                                  "comments": members[polis.COMMENTS_FILE],
                                  **_optional(members, "summary", polis.SUMMARY_FILE)})
    if format in (None, "pew") and pew_folders and not (format is None and polis_folders):
        members = _only_one(pew_folders, "Pew wave folders", where)
        return Detected("pew", {"responses": members[pew.RESPONSES_FILE],
                                "info": members[pew.INFO_FILE],
                                **_optional(members, "metadata", pew.METADATA_FILE)})
    if format is None and polis_folders and pew_folders:
        raise DataError("holds both a Polis export and a Pew wave", file=where,
                        expected="one data set; pass the folder you mean")
    if format in ("polis", "pew"):
        needed = ("participants-votes.csv and comments.csv" if format == "polis"
                  else "responses.csv and info.csv")
        raise DataError(f"is not a {format} folder: no folder holds {needed}", file=where,
                        expected=_listing(files))

    tables = [f for f in files if (f.suffix in TABLE_SUFFIXES or f.suffix in LABELLED_SUFFIXES)
              and f.basename.casefold() not in CODEBOOK_NAMES]
    if len(files) > 1:  # in a folder, a .txt is more likely notes than data
        tables = [f for f in tables if f.suffix != ".txt"] or tables
    if not tables:
        if len(files) == 1:
            return Detected("table", {"table": files[0]})  # read_table names the bad type
        raise DataError("holds no recognisable survey data", file=where,
                        expected="a Polis export, a Pew wave folder, one CSV, TSV, Parquet or "
                                 f"XLSX table, or one SPSS, Stata or SAS file; {_listing(files)}")
    if len(tables) > 1:
        names = ", ".join(t.name for t in tables[:8])
        raise DataError(f"holds {len(tables)} tables ({names})", file=where,
                        expected="one table; pass the file you mean")
    table = tables[0]
    codebooks = [f for f in files if f.basename.casefold() in CODEBOOK_NAMES]
    near = [f for f in codebooks if f.folder == table.folder] or codebooks
    if len(near) > 1:
        raise DataError(f"holds {len(near)} codebooks ({', '.join(f.name for f in near)})",
                        file=where, expected="one codebook; pass it with codebook=")
    labelled = table.suffix in LABELLED_SUFFIXES
    if format == "labelled" and not labelled:
        raise DataError("is not an SPSS, Stata or SAS file", file=table.display,
                        expected=f"one of {', '.join(LABELLED_SUFFIXES)}")
    if not labelled:
        return Detected("table", {"table": table}, near[0] if near else None)
    catalogs = [f for f in files if f.suffix == SAS_CATALOG_SUFFIX and f.folder == table.folder]
    extra = {"catalog": catalogs[0]} if table.suffix == ".sas7bdat" and catalogs else {}
    return Detected("labelled", {"table": table, **extra}, near[0] if near else None)


def _only_one(candidates: dict[str, dict], what: str, where: str) -> dict[str, InputFile]:
    if len(candidates) > 1:
        names = ", ".join(sorted(f if f != "." else "(top folder)" for f in candidates))
        raise DataError(f"holds {len(candidates)} {what} ({names})", file=where,
                        expected="one data set; pass the folder you mean")
    return next(iter(candidates.values()))


def _optional(members: dict[str, InputFile], role: str, file_name: str) -> dict[str, InputFile]:
    return {role: members[file_name]} if file_name in members else {}


def _listing(files: list[InputFile]) -> str:
    names = [PurePosixPath(f.name).as_posix() for f in files[:6]]
    more = f" and {len(files) - 6} more" if len(files) > 6 else ""
    return f"found {', '.join(names)}{more}"
