"""Folders that are written whole or not at all, and the files inside them.

A study, and the steering model saved inside it, is a folder of JSON, parquet
and safetensors files (never pickle: folders are shared between people).
:func:`write_folder_atomically` writes such a folder beside its destination
and swaps it into place, so a write killed half-way never corrupts what was
there (:func:`copy_folder_atomically` copies a folder that way);
:func:`recover_interrupted_swap` finishes a swap a crash interrupted.
The other functions read and write the files, turning damaged or missing
files into a :class:`~persona_engine.errors.DataError` that names them.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from safetensors.numpy import load_file, save_file

from persona_engine.errors import DataError


def write_folder_atomically(path: Path, write: Callable[[Path], None], *, marker: str, kind: str) -> None:
    """Write a folder with ``write(tmp)`` beside ``path``, then swap it into place.

    ``marker`` is the file that identifies a folder of this ``kind`` (a study's
    manifest, a soft prompt's config): any other non-empty folder is refused.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not (path / marker).is_file() and any(path.iterdir()):
        raise DataError(
            f"folder exists and is not a {kind}; refusing to overwrite it",
            file=path, expected=f"a new folder name or an existing {kind}",
        )
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    try:
        write(tmp)
        _fsync_tree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        # Two renames: a crash between them leaves the old study as .NAME.old-*,
        # which Study.load puts back (see recover_interrupted_swap).
        old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(path, old)
        os.rename(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, path)


def copy_folder_atomically(source: Path, path: Path, *, marker: str, kind: str) -> None:
    """Copy the folder ``source`` to ``path`` with :func:`write_folder_atomically`.

    The copies get new modification times (caches keyed on them see a new folder).
    """
    write_folder_atomically(
        path, lambda tmp: shutil.copytree(source, tmp, dirs_exist_ok=True, copy_function=shutil.copy),
        marker=marker, kind=kind)


def recover_interrupted_swap(path: Path, marker: str) -> None:
    """Put back the old ``path`` if a crash came between :func:`write_folder_atomically`'s two renames."""
    if path.exists():
        return
    leftovers = sorted(path.parent.glob(f".{path.name}.old-*")) if path.parent.exists() else []
    if leftovers and (leftovers[-1] / marker).is_file():
        os.rename(leftovers[-1], path)


def _fsync_tree(folder: Path) -> None:
    """Flush every file to disk and give the folder ordinary permissions.

    mkdtemp and safetensors create owner-only files; a study is meant to be shared.
    """
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for item in folder.rglob("*"):
        item.chmod((0o777 if item.is_dir() else 0o666) & ~umask)
        if item.is_file():
            with open(item, "rb") as handle:
                os.fsync(handle.fileno())


def save_component(folder: Path, config: dict, arrays: dict[str, np.ndarray]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "config.json", to_jsonable(config))
    save_arrays(folder / "model.safetensors", arrays)


def load_component(folder: Path) -> tuple[dict, dict[str, np.ndarray]]:
    return read_json(folder / "config.json"), load_arrays(folder / "model.safetensors")


def load_arrays(file: Path) -> dict[str, np.ndarray]:
    if not file.is_file():
        raise DataError("file is missing from the study folder", file=file)
    try:
        return load_file(str(file))
    except Exception as error:  # safetensors raises its own types for damaged files
        raise DataError(f"cannot read arrays ({error})", file=file) from None


def read_table(file: Path) -> pd.DataFrame:
    if not file.is_file():
        raise DataError("file is missing from the study folder", file=file)
    try:
        return pd.read_parquet(file)
    except Exception as error:  # pyarrow raises several types for damaged files
        raise DataError(f"cannot read table ({error})", file=file) from None


def write_json(file: Path, value) -> None:
    file.write_text(json.dumps(to_jsonable(value), indent=2, ensure_ascii=False), encoding="utf-8")


def read_json(file: Path):
    if not file.is_file():
        raise DataError("file is missing from the study folder", file=file)
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"not valid JSON ({error})", file=file) from None


def to_jsonable(value):
    """``value`` with numpy scalars and arrays, tuples and paths made JSON-able.

    NaN and infinity (e.g. a training run without validation) become null,
    which strict JSON readers accept.
    """
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def save_arrays(file: Path, arrays: dict[str, np.ndarray]) -> None:
    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(file))
