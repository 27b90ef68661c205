"""One model's evaluation: perplexity plus zero-shot accuracy per task (both scorers), timed."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Mapping

import polars as pl
from torch import nn

from .perplexity import context_limit, load_text, make_windows, perplexity
from .zeroshot import evaluate_task, select_questions

log = logging.getLogger(__name__)


def evaluate_model(
    model: nn.Module,
    tokenizer,
    *,
    ppl_text: str | Path | None,
    ppl_hub: dict | None = None,
    ppl_seq_len: int = 512,
    ppl_max_windows: int | None = 16,
    ppl_bos: str = "auto",
    zeroshot_tables: Mapping[str, str | Path] | None = None,
    questions: int = 32,
    mmlu_shots: int = 5,
    progress: bool = True,
) -> dict:
    """Perplexity and zero-shot results as a JSON-ready dict (see docs/contracts.md)."""
    out: dict = {"timings_s": {}}
    t0 = time.perf_counter()
    text, source = load_text(ppl_text, ppl_hub)
    limit = context_limit(model)
    seq_len = min(ppl_seq_len, limit) if limit else ppl_seq_len
    if seq_len < ppl_seq_len:
        log.info("perplexity windows capped at the model's %d positions (configured %d)", seq_len, ppl_seq_len)
    windows = make_windows(tokenizer, text, seq_len, ppl_max_windows, ppl_bos)
    ppl = perplexity(model, windows, progress=progress)
    ppl.update(source=source, bos=ppl_bos)
    out["perplexity"] = ppl
    out["timings_s"]["perplexity"] = time.perf_counter() - t0
    log.info("perplexity %s (mean NLL %.4f) over %d windows x %d tokens (%s)", ppl["perplexity"], ppl["mean_nll"],
             ppl["windows"], seq_len, source)

    out["zeroshot"] = {}
    for domain, path in (zeroshot_tables or {}).items():
        t1 = time.perf_counter()
        table = pl.read_parquet(path)
        task = table["task"][0] if "task" in table.columns and table.height else None
        shots = mmlu_shots if task == "mmlu" else 0
        qs, shot_rows = select_questions(table, questions, shots, where=str(path))
        res = evaluate_task(model, tokenizer, qs, shot_rows, progress=progress)
        res["task"] = task
        out["zeroshot"][domain] = res
        out["timings_s"][f"zeroshot:{domain}"] = time.perf_counter() - t1
        log.info("%s (%s, %d questions, %d shots): paper %.3f  acc %.3f  acc_norm %.3f  (chance %.3f)", domain, task,
                 res["n"], shots, res["paper_acc"], res["acc"], res["acc_norm"], res["chance"])
    out["timings_s"]["total"] = time.perf_counter() - t0
    return out
