"""Calibration sets: ``n`` token sequences of ``seq_len`` tokens, as Wanda and the paper build them.

* Text domains (Wanda's and the paper's C4 loader, paper.md §5.3): each sequence is a random
  window of ``seq_len`` tokens from a distinct document at least that long; documents are
  visited in a seeded order, the window start is seeded (``text_windows``).
* Task domains (the paper's ``get_*_calibration``): a sequence starts at an example, is
  extended with the next examples joined by ``"\\n###\\n"`` until it has ``seq_len`` tokens,
  and is cut there; the next sequence starts at the next unused example.  MMLU and PIQA
  examples carry their gold label (``Answer:A``), as the paper's builders append it.  The seed
  fixes the example order (``build_calibration``).  Examples come from a calibration split
  (hub) or from the rows above the evaluation rows of the domain table (``usable_rows``).

Running out of documents or examples is an error naming the keys to change, unless
``prune.calibration.allow_reuse`` lets sequences reuse them (counted in the record).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

log = logging.getLogger(__name__)

SEPARATOR = "\n###\n"
APPEND_LABEL = ("mmlu", "piqa")  # the paper's builders append the answer for these formats


class CalibrationError(ValueError):
    pass


def adds_bos(tokenizer) -> bool:
    """Whether the tokenizer puts a BOS token in front of plain text by default."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    ids = tokenizer("a")["input_ids"]
    return len(ids) > 0 and ids[0] == bos


def example_texts(table, n_rows: int | None = None) -> list[str]:
    """The calibration strings of a domain table (polars DataFrame), top ``n_rows`` rows."""
    if "text" not in table.columns:
        raise CalibrationError("domain table has no 'text' column (see docs/contracts.md)")
    rows = table if n_rows is None else table.head(n_rows)
    out = []
    has_label = {"task", "labels", "answer"} <= set(rows.columns)
    for r in rows.iter_rows(named=True):
        text = r["text"]
        if text is None or not str(text).strip():
            raise CalibrationError(f"row {r.get('id')!r}: empty 'text'")
        if has_label and r["task"] in APPEND_LABEL and r["labels"] is not None and r["answer"] is not None:
            text = text + r["labels"][int(r["answer"])]
        out.append(text)
    return out


def usable_rows(n_rows: int, reserved_bottom: int, table_path: str | Path = "") -> int:
    n = n_rows - reserved_bottom
    if n <= 0:
        raise CalibrationError(f"{table_path}: {n_rows} rows, all {reserved_bottom} reserved for evaluation; "
                               "raise data.pool or lower evaluation.zeroshot.questions")
    return n


REUSE_HINT = ("lower prune.calibration.sequences or prune.calibration.seq_len, choose another "
              "prune.calibration.domain, or set prune.calibration.allow_reuse: true")


def text_windows(
    texts: Sequence[str],
    tokenizer,
    *,
    n_sequences: int,
    seq_len: int,
    seed: int,
    allow_reuse: bool = False,
) -> tuple[torch.Tensor, dict]:
    """Token ids [n_sequences, seq_len]: a seeded random window of each of ``n`` distinct documents.

    BOS (when the tokenizer adds one) starts every window and counts towards ``seq_len``.
    Documents shorter than the window are skipped; documents are tokenized only until enough
    long ones are found.  With ``allow_reuse`` the long documents are visited again (a new
    random window each time) when there are fewer than ``n``.
    """
    if not texts:
        raise CalibrationError("no calibration documents")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(texts))
    bos = [tokenizer.bos_token_id] if adds_bos(tokenizer) else []
    need = seq_len - len(bos)
    long_docs: list[tuple[int, list[int]]] = []
    for j in order:
        ids = tokenizer(texts[int(j)], add_special_tokens=False)["input_ids"]
        if len(ids) >= need:
            long_docs.append((int(j), ids))
            if len(long_docs) == n_sequences:
                break
    if not long_docs:
        raise CalibrationError(f"none of the {len(texts)} calibration documents has {seq_len} tokens; {REUSE_HINT}")
    if len(long_docs) < n_sequences and not allow_reuse:
        raise CalibrationError(f"only {len(long_docs)} of the {len(texts)} calibration documents have {seq_len} "
                               f"tokens, fewer than the {n_sequences} sequences asked (one document each); "
                               + REUSE_HINT)
    seqs, used = [], []
    for k in range(n_sequences):
        j, ids = long_docs[k % len(long_docs)]
        start = int(rng.integers(0, len(ids) - need + 1))
        seqs.append(bos + ids[start:start + need])
        used.append([j, start])
    reused = max(0, n_sequences - len(long_docs))
    if reused:
        log.warning("calibration: %d documents of %d tokens for %d sequences; %d reused (allow_reuse)",
                    len(long_docs), seq_len, n_sequences, reused)
    record = {"seed": seed, "kind": "document windows", "windows": used, "n_documents": len(texts),
              "reused": reused, "bos": bool(bos)}
    return torch.tensor(seqs, dtype=torch.long), record


def build_calibration(
    texts: Sequence[str],
    tokenizer,
    *,
    n_sequences: int,
    seq_len: int,
    seed: int,
    allow_reuse: bool = False,
) -> tuple[torch.Tensor, dict]:
    """Token ids [n_sequences, seq_len] and a record of which examples each sequence used.

    BOS is put at the start of every sequence when the tokenizer adds one by default.  When
    the examples run out, that is an error unless ``allow_reuse``: then the order wraps around,
    which is logged and counted in the record (``reused``).
    """
    if not texts:
        raise CalibrationError("no calibration examples")
    order = np.random.default_rng(seed).permutation(len(texts))
    bos = [tokenizer.bos_token_id] if adds_bos(tokenizer) else []
    lengths = [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]
    sep_len = len(tokenizer(SEPARATOR, add_special_tokens=False)["input_ids"])
    seqs, used = [], []
    pos = 0
    for _ in range(n_sequences):
        parts: list[int] = []
        n_tok = len(bos)
        while True:
            if len(parts) >= len(texts) * 4:
                raise CalibrationError(f"cannot fill {seq_len} tokens from {len(texts)} examples")
            parts.append(int(order[pos % len(order)]))
            pos += 1
            n_tok += lengths[parts[-1]] + (sep_len if len(parts) > 1 else 0)
            if n_tok < seq_len:
                continue
            ids = bos + tokenizer(SEPARATOR.join(texts[j] for j in parts), add_special_tokens=False)["input_ids"]
            if len(ids) >= seq_len:  # BPE merges across the joins can make the estimate short
                break
        seqs.append(ids[:seq_len])
        used.append(parts)
    reused = max(0, pos - len(texts))
    if reused and not allow_reuse:
        raise CalibrationError(f"{len(texts)} examples are not enough for {n_sequences} x {seq_len} tokens without "
                               f"reusing {reused} of them; " + REUSE_HINT + " (or raise data.pool)")
    if reused:
        log.warning("calibration: %d examples were not enough for %d x %d tokens; %d reused (wrapped around)",
                    len(texts), n_sequences, seq_len, reused)
    record = {"seed": seed, "kind": "concatenated examples", "examples": used, "n_examples": len(texts),
              "reused": reused, "bos": bool(bos)}
    return torch.tensor(seqs, dtype=torch.long), record
