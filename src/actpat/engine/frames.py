"""Scoring results as data frames in the long formats of docs/contracts.md (per sample, per pair, probes)."""

from __future__ import annotations

import numpy as np
import polars as pl

from ..contracts import GRAM_SCHEMA, PROBE_SCHEMA, STATS_SCHEMA
from .scorer import ScoreResult


def stats_frame(res: ScoreResult, model: str) -> pl.DataFrame:
    """Per sample and matrix: Σ A, Σ A² and the count above each threshold."""
    n = len(res.sample_ids)
    M = len(res.weights)
    if n == 0:
        return pl.DataFrame(schema=STATS_SCHEMA)
    layer = np.array([w.layer for w in res.weights], dtype=np.int32)
    matrix = [w.matrix for w in res.weights]
    parts = []
    base = {
        "model": [model] * (n * M),
        "domain": np.repeat(res.sample_groups, M).tolist(),
        "id": np.repeat(res.sample_ids, M).tolist(),
        "layer": np.tile(layer, n),
        "matrix": matrix * n,
    }
    s1 = np.stack(res.s1).reshape(-1)
    s2 = np.stack(res.s2).reshape(-1)
    parts.append(pl.DataFrame({**base, "statistic": "sum", "threshold": None, "value": s1}))
    parts.append(pl.DataFrame({**base, "statistic": "sumsq", "threshold": None, "value": s2}))
    if res.thresholds:
        cnt = np.stack(res.counts)  # [n, M, T]
        for j, t in enumerate(res.thresholds):
            parts.append(pl.DataFrame({**base, "statistic": "count", "threshold": float(t),
                                       "value": cnt[:, :, j].reshape(-1).astype(np.float64)}))
    return pl.concat([p.cast(STATS_SCHEMA) for p in parts])


def probe_frame(res: ScoreResult, model: str) -> pl.DataFrame:
    """Per sample and matrix: A at the matrix's probe weights (a seeded uniform sample of its block)."""
    if not res.probe_index or not res.probes:
        return pl.DataFrame(schema=PROBE_SCHEMA)
    ks = sorted(res.probe_index)
    bounds = np.cumsum([0] + [len(res.probe_index[k]) for k in ks])
    rows = {c: [] for c in PROBE_SCHEMA}
    for sid, grp, vals in zip(res.sample_ids, res.sample_groups, res.probes):
        for j, k in enumerate(ks):
            w = res.weights[k]
            rows["model"].append(model)
            rows["domain"].append(grp)
            rows["id"].append(sid)
            rows["layer"].append(w.layer)
            rows["matrix"].append(w.matrix)
            rows["n_weights"].append(w.weight.numel())
            rows["values"].append(vals[bounds[j]:bounds[j + 1]].astype(np.float32))
    return pl.DataFrame(rows, schema=PROBE_SCHEMA)


def gram_frame(res: ScoreResult, model: str) -> pl.DataFrame:
    """Every pair that shared a pass, per layer, with its LLMDcos."""
    if not res.pairs:
        return pl.DataFrame(schema=GRAM_SCHEMA)
    layer, ia, ga, ib, gb, dot, na, nb = zip(*res.pairs)
    df = pl.DataFrame({"model": model, "layer": layer, "id_a": ia, "domain_a": ga, "id_b": ib, "domain_b": gb,
                       "dot": dot, "norm2_a": na, "norm2_b": nb})
    df = df.with_columns((pl.col("dot") / (pl.col("norm2_a") * pl.col("norm2_b")).sqrt()).alias("llmdcos"))
    return df.cast(GRAM_SCHEMA).sort(["id_a", "id_b", "layer"])
