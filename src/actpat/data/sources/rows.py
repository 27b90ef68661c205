"""Rows in hub formats to records: ids, text documents, and the sentence-pair shapes."""

from __future__ import annotations

import collections

from .base import DataError, Pair, Record, SourceData, pair_text, parse_score

# Pair-set formats -> the column triples (text a, text b, score) each accepts.
PAIR_SHAPES = {
    "stsb": [("sentence1", "sentence2", "score"), ("text1", "text2", "label")],
    "sick": [("sentence_A", "sentence_B", "relatedness_score")],
    "pairs": [("text_a", "text_b", "score")],
}


def row_key(fmt: str | None, rec: dict, i: int) -> str:
    if rec.get("id") not in (None, ""):
        return str(rec["id"])
    if fmt == "humaneval" and rec.get("task_id") not in (None, ""):
        return str(rec["task_id"])
    return str(i)


def text_documents(spec: dict, recs: list[Record]) -> SourceData:
    """Text sources: each record's ``text_field`` (default ``text``) is a document."""
    col = spec.get("text_field") or "text"
    counts = collections.Counter()
    out = []
    for r in recs:
        if col not in r.fields or r.fields[col] is None:
            raise DataError(f"{r.source}: missing column {col!r}; format 'text' expects raw text in column "
                            f"{col!r} (set text_field to use another column)")
        out.append(Record(r.key, {"text": str(r.fields[col])}, r.source))
    return SourceData(out, counts)


def pairs_from_rows(rows: list[dict], fmt: str, prefix: str, where: str) -> list[Pair]:
    """Pairs from hub-format rows: ``fmt`` picks the accepted shapes (``pairs`` accepts all)."""
    shapes = [s for f in ("stsb", "sick", "pairs") for s in PAIR_SHAPES[f]] if fmt == "pairs" else PAIR_SHAPES[fmt]
    if not rows:
        raise DataError(f"{where}: no rows")
    cols = set(rows[0])
    shape = next((s for s in shapes if set(s) <= cols), None)
    if shape is None:
        want = " or ".join("/".join(s) for s in shapes)
        raise DataError(f"{where}: missing columns; format {fmt!r} expects {want}; the file has {sorted(cols)}")
    a, b, sc = shape
    out = []
    for i, r in enumerate(rows):
        w = f"{prefix}{i}"
        for c in shape:
            if c not in r:
                raise DataError(f"{w}: missing column {c!r}")
        key = str(r["id"]) if r.get("id") not in (None, "") else str(i)
        out.append(Pair(key, pair_text(r[a], w, a), pair_text(r[b], w, b), parse_score(r[sc], w, sc), f"{prefix}{i}"))
    return out
