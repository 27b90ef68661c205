"""Atomic file writes: a temporary sibling, then a rename, so an interrupted job never
leaves a file that looks complete."""

from __future__ import annotations

import glob
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def dir_mode() -> int:
    """The mode of a new folder under the umask: mkdtemp makes 0700 folders, which collaborators
    on a shared cluster could not read once renamed into place."""
    return 0o777 & ~_umask()


@contextmanager
def atomic_dir(path: str | Path, clean_stale: bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to ``path``; on success it replaces ``path`` in one rename.

    On any error (or a kill signal turned into an exception) the temporary folder is removed,
    so a folder at ``path`` is always complete.  ``clean_stale`` first removes temporaries
    left by earlier writers of ``path`` that were killed outright (SIGKILL, node failure).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if clean_stale:
        for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, dir_mode())
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_parquet(df, path: str | Path, **options) -> Path:
    """``df.write_parquet`` under a temporary name, then renamed (``options`` go to polars)."""
    with atomic_path(path) as tmp:
        df.write_parquet(tmp, **options)
    return Path(path)


def write_text(text: str, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes(data: bytes, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json(obj, path: str | Path) -> Path:
    return write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n", path)
