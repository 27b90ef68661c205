"""Results of Validations 1-2 (the paper's Tables 1-2) as tables; ``actpat.report.pruning`` shows them.

``collect`` reads the per-run evaluation JSONs into one row per (model, run) with perplexity
and, per zero-shot task, one column per scorer: ``<task>_paper`` (the paper's next-token label
scorer), ``<task>_acc`` and ``<task>_acc_norm`` (lm-eval convention); ``mean_*`` average the
tasks of one scorer (never across scorers).  ``summarise`` gives mean and sample std over
calibration seeds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import polars as pl

from ..analysis.uncertainty import paired_block_bootstrap, paired_item_bootstrap, three_way, wilson
from ..contracts import COMPARISON_SCHEMA

SCORERS = ("paper", "acc", "acc_norm")
SCORER_TITLES = {
    "paper": "paper scorer (last-position logit of the label token; paper.md §5.3)",
    "acc": "lm-eval acc (summed log-likelihood of ' ' + choice after the cloze context)",
    "acc_norm": "lm-eval acc_norm (log-likelihood / choice length in bytes)",
}
METHOD_ORDER = {"dense": 0, "magnitude": 1, "wanda": 2, "sparsegpt": 3, "activation": 4, "wanda_activation": 5}
KEYS = ["model", "method", "allocation", "calibration", "sparsity"]


def allocation_shape(sparsity_parquet: str | Path) -> dict:
    """Per-layer minimum, maximum and Spearman correlation with depth of a run's allocated sparsity."""
    from scipy.stats import spearmanr

    t = pl.read_parquet(sparsity_parquet).sort("layer")["target"].to_numpy()
    rho = float(spearmanr(np.arange(t.size), t).statistic) if np.ptp(t) > 0 else None
    return {"layer_min": float(t.min()), "layer_max": float(t.max()), "depth_spearman": rho}


def collect(paths: Sequence[str | Path], tasks: Sequence[str] | None = None,
            sparsity_paths: Mapping[str, str | Path] | None = None, level: float = 0.95) -> pl.DataFrame:
    """One row per evaluated run; ``sparsity_paths`` (run -> sparsity.parquet) adds the allocation's shape."""
    rows = []
    for p in paths:
        r = json.loads(Path(p).read_text())
        zs = r.get("zeroshot", {})
        names = list(tasks) if tasks is not None else list(zs)
        row = {
            "model": r["model"], "run": r["run"], "method": r["method"], "allocation": allocation_label(r),
            "calibration": r.get("calibration"), "sparsity": float(r.get("sparsity") or 0.0), "seed": r.get("seed"),
            "achieved_sparsity": float(r.get("sparsity_check", {}).get("achieved", 0.0)),
            "perplexity": r["perplexity"]["perplexity"],
        }
        for t in names:
            for s in SCORERS:
                row[f"{t}_{s}"] = zs[t][f"{s}_acc" if s == "paper" else s] if t in zs else None
            # Wilson interval of the paper scorer's accuracy: with 16 questions it spans about +-0.2
            ci = wilson(round(zs[t]["paper_acc"] * zs[t]["n"]), zs[t]["n"], level) if t in zs else None
            row[f"{t}_paper_lo"], row[f"{t}_paper_hi"] = ci or (None, None)
        shape = (allocation_shape(sparsity_paths[r["run"]]) if sparsity_paths and r["run"] in sparsity_paths
                 else {"layer_min": None, "layer_max": None, "depth_spearman": None})
        row.update(shape)
        for s in SCORERS:
            vals = [row[f"{t}_{s}"] for t in names if row[f"{t}_{s}"] is not None]
            row[f"mean_{s}"] = sum(vals) / len(vals) if vals else None
        row["questions_per_task"] = min((zs[t]["n"] for t in names if t in zs), default=None)
        # pooled over the tasks (paper scorer): a mean accuracy's binomial interval
        row["zs_questions"] = sum(zs[t]["n"] for t in names if t in zs) or None
        row["zs_correct"] = sum(round(zs[t]["paper_acc"] * zs[t]["n"]) for t in names if t in zs) or None
        row["job_seconds"] = r.get("timings_s", {}).get("job")
        rows.append(row)
    df = pl.DataFrame(rows, schema_overrides={"allocation": pl.String, "calibration": pl.String, "seed": pl.Int64},
                      infer_schema_length=None)
    return (df.with_columns(pl.col("method").replace_strict(METHOD_ORDER, default=9).alias("_m"))
            .sort(["model", "_m", "allocation", "calibration", "sparsity", "seed"], nulls_last=False)
            .drop("_m"))


COMPARE_TO = "paper"  # every other allocation is compared with the paper's rule


def allocation_label(record: Mapping) -> str | None:
    """The allocation column of the tables: an N:M run's pattern ("2:4") stands in its place
    (the pattern fixes every row's share, so there is no per-layer allocation to name)."""
    return record.get("nm") or record.get("allocation")


def _flat(blocks: Sequence[Sequence[float]]) -> list[float]:
    return [x for window in blocks for x in window]


def block_sizes(ppl: dict) -> list[int]:
    """Predicted tokens in each block of a perplexity record, in the order of its flattened ``block_nll``."""
    per_window, size = ppl["seq_len"] - 1, ppl["block_tokens"]
    one = [min(size, per_window - s) for s in range(0, per_window, size)]
    return one * ppl["windows"]


def _correct(record: dict) -> dict[str, float]:
    """Question id -> 1.0 / 0.0: the paper scorer's answer on every zero-shot question of a run."""
    return {it["id"]: float(it["paper"] == it["answer"]) for t in record.get("zeroshot", {}).values()
            for it in t.get("items", [])}


def _compare(other: dict, base: dict, *, n_boot: int, level: float, seed: int) -> dict | None:
    """One paired comparison of two configurations run with the same calibration seeds (seed -> record;
    the seed is ``None`` for a method without calibration data: one run each, token blocks resampled)."""
    seeds = sorted(set(base) & set(other), key=lambda k: -1 if k is None else k)
    if not seeds or any("block_nll" not in r[k]["perplexity"] for r in (base, other) for k in seeds):
        return None
    res = paired_block_bootstrap([_flat(other[k]["perplexity"]["block_nll"]) for k in seeds],
                                 [_flat(base[k]["perplexity"]["block_nll"]) for k in seeds],
                                 block_sizes(base[seeds[0]]["perplexity"]), n_boot=n_boot, level=level, seed=seed)
    lo, hi = res["interval"]
    row = {"seeds": [k for k in seeds if k is not None], "windows": base[seeds[0]]["perplexity"]["windows"],
           "blocks": res["blocks"], "log_ppl_diff": res["diff"], "lo": lo, "hi": hi, "per_seed": res["per_seed"],
           "ppl_ratio": float(np.exp(res["diff"])), "verdict": three_way((lo, hi)), "n_boot": n_boot, "level": level,
           "questions": None, "acc_diff": None, "acc_lo": None, "acc_hi": None, "acc_verdict": None}
    for k in seeds:  # accuracy: the first shared seed both evaluated zero-shot (the same questions)
        a, b = _correct(base[k]), _correct(other[k])
        items = sorted(set(a) & set(b))
        if items:
            acc = paired_item_bootstrap([a[i] for i in items], [b[i] for i in items], n_boot=n_boot, level=level,
                                        seed=seed)
            row.update(questions=acc["items"], acc_diff=acc["diff"], acc_lo=acc["interval"][0],
                       acc_hi=acc["interval"][1], acc_verdict=three_way(acc["interval"]))
            break
    return row


def _is_pattern(allocation: str | None) -> bool:
    return allocation is not None and ":" in allocation  # "2:4": an N:M run (allocation_label)


def comparisons(paths: Sequence[str | Path], *, calibration: str | None = None, n_boot: int = 1000,
                level: float = 0.95, seed: int = 0) -> pl.DataFrame:
    """Paired comparisons of pruned models, each with the reference it varies from.

    * ``kind`` allocation: every allocation against the paper rule, same method, sparsity and
      calibration domain;
    * ``kind`` calibration: every calibration domain against ``calibration`` (the configured one),
      same method, allocation and sparsity (Validation 2);
    * ``kind`` pattern: every N:M pattern against unstructured uniform pruning at the same sparsity
      (50% for 2:4 and 4:8), same method and calibration domain.

    ``log_ppl_diff`` = log PPL(other) - log PPL(baseline), the mean over the calibration seeds both
    have (a method without calibration data has one run: token blocks only), with the paired
    bootstrap interval over seeds and token blocks (``actpat.analysis.uncertainty``); ``acc_diff`` =
    accuracy(baseline) - accuracy(other), the paper scorer over the zero-shot questions both
    answered (one seed), questions resampled.  Both verdicts are on "the baseline is better" (> 0):
    holds, does not hold (the other is better), or inconclusive.
    """
    runs = [json.loads(Path(p).read_text()) for p in paths]
    by_alloc: dict[tuple, dict[str, dict]] = {}
    by_cal: dict[tuple, dict[str, dict]] = {}
    for r in runs:
        if r.get("method") in (None, "dense"):
            continue
        sp, k = float(r["sparsity"]), r.get("seed")
        a = allocation_label(r)
        by_alloc.setdefault((r["model"], r["method"], r["calibration"], sp), {}).setdefault(a, {})[k] = r
        if k is not None:
            by_cal.setdefault((r["model"], r["method"], a, sp), {}).setdefault(r["calibration"], {})[k] = r
    rows = []
    for kind, groups, ref in (("allocation", by_alloc, COMPARE_TO), ("calibration", by_cal, calibration),
                              ("pattern", by_alloc, "uniform")):
        ordered = sorted(groups.items(), key=lambda kv: tuple("" if x is None else x for x in kv[0]))
        for (model, method, fixed, sp), variants in ordered:
            if ref not in variants:
                continue
            for name, other in sorted(variants.items()):
                if name == ref or (kind != "calibration" and _is_pattern(name) != (kind == "pattern")):
                    continue
                got = _compare(other, variants[ref], n_boot=n_boot, level=level, seed=seed)
                if got is None:
                    continue
                alloc, cal = (fixed, name) if kind == "calibration" else (name, fixed)
                rows.append({"kind": kind, "model": model, "method": method, "calibration": cal, "sparsity": sp,
                             "allocation": alloc, "baseline": ref, **got})
    return pl.DataFrame(rows, schema=COMPARISON_SCHEMA)


def summarise(df: pl.DataFrame) -> pl.DataFrame:
    """Mean and sample std (ddof=1; null for a single seed) over seeds, per configuration."""
    metrics = ["perplexity"] + [c for c in df.columns if c.endswith(tuple(f"_{s}" for s in SCORERS))]
    aggs = [pl.len().alias("seeds"), pl.col("seed").drop_nulls().sort().alias("seed_list"),
            pl.col("perplexity").min().alias("perplexity_min"), pl.col("perplexity").max().alias("perplexity_max"),
            pl.col("layer_min").mean().alias("layer_min"), pl.col("layer_max").mean().alias("layer_max"),
            pl.col("depth_spearman").mean().alias("depth_spearman"),
            pl.col("zs_questions").sum().alias("zs_questions"), pl.col("zs_correct").sum().alias("zs_correct")]
    for c in metrics:
        aggs += [pl.col(c).mean().alias(f"{c}_mean"), pl.col(c).std(ddof=1).alias(f"{c}_std")]
    out = df.group_by(KEYS, maintain_order=True).agg(aggs)
    return out.with_columns(pl.when(pl.col("seeds") > 1).then(pl.col(f"{c}_std")).otherwise(None).alias(f"{c}_std")
                            for c in metrics)
