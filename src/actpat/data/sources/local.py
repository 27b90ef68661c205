"""``local``: a JSONL/JSON/CSV/Parquet file in a hub dataset's format (``path``); strict UTF-8."""

from __future__ import annotations

from .base import Pair, Record, Source, SourceData, register
from .files import read_local_rows
from .rows import pairs_from_rows, row_key, text_documents


def read_local(spec: dict, assets_root=None) -> SourceData:
    rows = read_local_rows(spec["path"])
    recs = [Record(row_key(spec["format"], r, i), r, f"file:{spec['path']}#{i}") for i, r in enumerate(rows)]
    return text_documents(spec, recs) if spec["format"] == "text" else SourceData(recs)


def read_local_pairs(spec: dict, assets_root=None) -> list[Pair]:
    return pairs_from_rows(read_local_rows(spec["path"]), spec.get("format", "pairs"), f"file:{spec['path']}#",
                           f"file:{spec['path']}")


register(Source("local", "a JSONL/JSON/CSV/Parquet file in the hub dataset's format (path)", read=read_local,
                read_pairs=read_local_pairs))
