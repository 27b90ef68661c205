"""Contents that cannot change silently: full-file SHA-256 manifests of produced directories.

The workflow's fetched assets (``resources/assets/<asset>/``) and converted models
(``resources/models/<model>/``) are Snakemake directory outputs, judged by a timestamp marker,
so a file edited in place inside them would go unnoticed.  Each such directory therefore
carries ``CONTENT.json``: every file's size, mtime and full SHA-256, written when the directory
is made.  Two checks read it:

* ``state(dir)``, at DAG time (rule params): "as written" while every file still has its
  recorded size and mtime (a ``stat`` per file, no reading) or, where one changed, its recorded
  bytes (a touch: that file is hashed); else the digest of what is there now, so the rules
  that read the directory rerun after an in-place change;
* ``verify(dir)``, in the jobs: a file whose size or mtime changed is hashed in full and
  refused, naming it, unless its content is unchanged.  ``full=True`` hashes every file.

Hashing reads at disk speed (about 1 GB/s here, so 13 s for Llama-2-7B's 13 GB), once, when
the directory is written; later checks read only what changed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

MANIFEST = "CONTENT.json"
UNCHANGED = "as written"
_SKIP = {MANIFEST, ".snakemake_timestamp"}


class ContentError(RuntimeError):
    pass


def file_digest(path: str | Path, algo: str = "sha256") -> str:
    """The hex digest of a file's bytes (the one file hash of the package)."""
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: str | Path) -> str:
    return file_digest(path, "sha256")


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.name not in _SKIP)


def tree_sha256(directory: str | Path, skip: tuple[str, ...] = ()) -> str:
    """One SHA-256 over every file's relative path and SHA-256 (sorted), ``skip`` names left out."""
    d = Path(directory)
    h = hashlib.sha256()
    for p in _files(d):
        rel = p.relative_to(d).as_posix()
        if rel not in skip:
            h.update(f"{rel}:{file_sha256(p)}\n".encode())
    return h.hexdigest()


def write_manifest(directory: str | Path) -> dict:
    """Record every file of ``directory`` (call it last, when the directory is complete)."""
    d = Path(directory)
    files = {}
    for p in _files(d):
        st = p.stat()
        files[p.relative_to(d).as_posix()] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns,
                                              "sha256": file_sha256(p)}
    manifest = {"files": files}
    (d / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def read_manifest(directory: str | Path) -> dict | None:
    p = Path(directory) / MANIFEST
    return json.loads(p.read_text()) if p.is_file() else None


def _changed(d: Path, manifest: dict) -> tuple[list[str], list[str], list[str]]:
    """(missing, added, restatted) file names against the manifest, by stat only."""
    rec = manifest["files"]
    now = {p.relative_to(d).as_posix(): p for p in _files(d)}
    missing = sorted(set(rec) - set(now))
    added = sorted(set(now) - set(rec))
    restat = []
    for name in sorted(set(rec) & set(now)):
        st = now[name].stat()
        if (st.st_size, st.st_mtime_ns) != (rec[name]["size"], rec[name]["mtime_ns"]):
            restat.append(name)
    return missing, added, restat


def state(directory: str | Path) -> str | None:
    """DAG-time token of a directory with a manifest: ``UNCHANGED`` or a digest of its files now.

    Also ``UNCHANGED`` while the directory or its manifest does not exist yet: the rule that makes
    it runs first, and the token must not change when it has (that would rerun every reader).
    """
    d = Path(directory)
    manifest = read_manifest(d) if d.is_dir() else None
    if manifest is None:
        return UNCHANGED
    missing, added, restat = _changed(d, manifest)
    if not (missing or added) and all(file_sha256(d / n) == manifest["files"][n]["sha256"] for n in restat):
        return UNCHANGED  # touched or rewritten with the same bytes: nothing to rerun
    return "changed:" + tree_sha256(d)[:16]


def verify(directory: str | Path, *, full: bool = False, what: str = "directory", fix: str = "") -> None:
    """Refuse a directory whose files differ from its manifest, naming the first such file."""
    d = Path(directory)
    manifest = read_manifest(d)
    if manifest is None:
        raise ContentError(f"{d}: no {MANIFEST}; the {what} was not written by this workflow or is incomplete. {fix}")
    missing, added, restat = _changed(d, manifest)
    check = sorted(manifest["files"]) if full else restat
    bad = [f"{n} is missing" for n in missing] + [f"{n} was added" for n in added]
    for name in check:
        if name in missing:
            continue
        if file_sha256(d / name) != manifest["files"][name]["sha256"]:
            bad.append(f"{name} was changed (its SHA-256 differs from the one recorded when it was written)")
    if bad:
        raise ContentError(f"{d}: the {what} differs from its {MANIFEST}: {bad[0]}"
                           + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else "") + f". {fix}".rstrip())


def stat_digest(directory: str | Path) -> str | None:
    """A cheap token for a directory this workflow did not write (a user's local model): names,
    sizes and mtimes of its files.  Changes whenever a file is replaced or edited."""
    d = Path(directory)
    if not d.is_dir():
        return None
    h = hashlib.sha256()
    for p in _files(d):
        st = os.stat(p)
        h.update(f"{p.relative_to(d).as_posix()}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return "stat:" + h.hexdigest()[:16]
