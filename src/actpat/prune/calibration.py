"""Calibration sets: domain examples concatenated into fixed-length token sequences.

Follows the paper's calibration builders (paper.md §5.3, ``get_*_calibration``): a sequence
starts at an example, is extended with the next examples joined by ``"\\n###\\n"`` until it
has ``seq_len`` tokens, and is cut there; the next sequence starts at the next unused example.
MMLU and PIQA examples carry their gold label (``Answer:A``), as the paper's MMLU/PIQA
builders append it.  The seed only fixes the example order (a seeded permutation), so each
seed gives a different calibration set from the same rows.

Rows come from the top of a domain table; rows reserved for evaluation at the bottom
(zero-shot questions, few-shot prefix) are excluded by the caller (``usable_rows``).
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


def build_calibration(
    texts: Sequence[str],
    tokenizer,
    *,
    n_sequences: int,
    seq_len: int,
    seed: int,
) -> tuple[torch.Tensor, dict]:
    """Token ids [n_sequences, seq_len] and a record of which examples each sequence used.

    BOS is put at the start of every sequence when the tokenizer adds one by default.  When
    the examples run out the order wraps around (examples are reused); that is logged and
    counted in the record (``reused``).
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
    if reused:
        log.warning("calibration: %d examples were not enough for %d x %d tokens; %d reused (wrapped around)",
                    len(texts), n_sequences, seq_len, reused)
    record = {"seed": seed, "examples": used, "n_examples": len(texts), "reused": reused, "bos": bool(bos)}
    return torch.tensor(seqs, dtype=torch.long), record
