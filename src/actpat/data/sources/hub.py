"""``hub``: a Hugging Face dataset (``path``, ``name``, ``split``), online the first time.

``format: text``: each row is a document; the ``wikitext`` datasets (one row per line) are
regrouped into articles at their `` = Title = `` headings.  Pair sets: ``format`` stsb, sick
or pairs (``actpat.data.sources.rows.PAIR_SHAPES``).
"""

from __future__ import annotations

import collections
import re

from .base import DataError, Pair, Record, Source, SourceData, register
from .rows import pairs_from_rows, row_key, text_documents


def hub_rows(path: str, name: str | None, split: str, data_files=None) -> list[dict]:
    """``datasets.load_dataset(path, name, split=split)`` as a list of dicts (needs the network
    the first time, then the Hugging Face cache)."""
    import datasets

    kw = {"data_files": data_files} if data_files else {}
    try:
        ds = datasets.load_dataset(path, name, split=split, **kw)
    except Exception as e:  # noqa: BLE001 - re-raised with what to do
        raise DataError(f"could not load hub dataset {path!r} (name {name!r}, split {split!r}): {e}. Hub sources "
                        "need network access the first time (then the Hugging Face cache); offline, use "
                        "source: local with a file in the same format") from e
    return [dict(r) for r in ds]


def hub_prefix(path: str, name: str | None, split: str) -> str:
    return f"hub:{path}{':' + name if name else ''}/{split}#"


_WIKITEXT_TITLE = re.compile(r"^ = [^=].* = $")


def _wikitext_articles(recs: list[Record], prefix: str) -> SourceData:
    """WikiText rows are lines; an article starts at each `` = Title = `` line."""
    counts = collections.Counter()
    arts: list[tuple[int, list[str]]] = []
    for i, r in enumerate(recs):
        line = r.fields["text"]
        if _WIKITEXT_TITLE.match(line.rstrip("\n")) or not arts:
            arts.append((i, []))
        arts[-1][1].append(line)
    out = [Record(f"article{start}", {"text": "".join(lines).strip()}, f"{prefix}{start}") for start, lines in arts]
    counts["wikitext lines regrouped into articles"] += len(recs)
    return SourceData(out, counts)


def read_hub(spec: dict, assets_root=None) -> SourceData:
    name, split = spec.get("name"), spec.get("split", "validation")
    rows = hub_rows(spec["path"], name, split, spec.get("data_files"))
    prefix = hub_prefix(spec["path"], name, split)
    recs = [Record(row_key(spec["format"], r, i), r, f"{prefix}{i}") for i, r in enumerate(rows)]
    if spec["format"] != "text":
        return SourceData(recs)
    docs = text_documents(spec, recs)
    if spec["path"].split("/")[-1].startswith("wikitext"):
        return _wikitext_articles(docs.records, prefix)
    return docs


def read_hub_pairs(spec: dict, assets_root=None) -> list[Pair]:
    name, split = spec.get("name"), spec.get("split", "validation")
    prefix = hub_prefix(spec["path"], name, split)
    return pairs_from_rows(hub_rows(spec["path"], name, split), spec.get("format", "pairs"), prefix,
                           prefix.rstrip("#"))


register(Source("hub", "a Hugging Face dataset (path, name, split), online the first time", read=read_hub,
                read_pairs=read_hub_pairs, keys=("name", "data_files", "calibration_split")))
