"""Bootstrap intervals of the findings' measured quantities (rules: ``actpat.analysis.uncertainty``).

What is resampled, with replacement, seeded:

* Finding 1 (density above γ, top-k share, F1b): the **samples of each domain**.  The score store holds
  only the mean Ā(w) over samples, so resampling needs per-sample values: the scoring jobs keep A(s, w)
  at a seeded uniform random subset of every block's weights (``scoring.probe_per_layer``; the
  ``.probe.parquet`` tables).  Each replicate recomputes Ā on that subset from the resampled samples,
  and the statistic from it; replicates are then shifted by (exact value from the full store - value
  on the subset from all samples), so the interval sits around the exact number and measures the
  sampling of inputs, not of weights.
* Findings 2-3 (LLMDcos): the **sample pairs of each domain pair** (cell), from the same pair tables as
  the analyses.  A pair contributes its mean over the window's layers; cell values are means over pairs.

Replicate b of every domain / cell is drawn independently, and statistics that combine domains (a
minimum, a mean over cells, a Spearman over cells) are computed within replicate b.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from .uncertainty import resample_counts, resample_indices

CHUNK = 100  # replicates per matrix product: keeps [CHUNK, weights on probe] in memory


# ----------------------------------------------------------------------------- Finding 1


def probe_matrix(probe: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[samples, probes] A, the layer of each probe column and its weight (weights it stands for)."""
    if probe.height == 0:
        raise ValueError("the probe table is empty: set scoring.probe_per_layer > 0 to get Finding 1's intervals")
    probe = probe.sort("id", "layer", "matrix")
    ids = probe["id"].unique(maintain_order=True).to_list()
    first = probe.filter(pl.col("id") == ids[0])
    lengths = first["values"].list.len().to_numpy()
    layer = np.repeat(first["layer"].to_numpy(), lengths)
    weight = np.repeat(first["n_weights"].to_numpy() / lengths, lengths)
    rows = []
    for sid in ids:
        part = probe.filter(pl.col("id") == sid)
        if not np.array_equal(part["values"].list.len().to_numpy(), lengths):
            raise ValueError(f"probe table: sample {sid} has another probe layout; its shards were scored differently")
        rows.append(np.concatenate(part["values"].to_list()))
    return np.asarray(rows, dtype=np.float64), layer, weight


def _layer_share(mask: np.ndarray, layer: np.ndarray, weight: np.ndarray, n_layers: int) -> np.ndarray:
    """[R, probes] booleans -> [R, layers] weighted fraction per layer."""
    onehot = np.zeros((layer.size, n_layers))
    onehot[np.arange(layer.size), layer] = weight
    return (mask.astype(np.float64) @ onehot)


def density_replicates(P: np.ndarray, layer: np.ndarray, weight: np.ndarray, gamma: float, top_k: float | None,
                       n_boot: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-layer density above γ and top-k share: the all-samples value on the probes ([layers]) and
    ``n_boot`` replicates ([n_boot, layers])."""
    n, L = P.shape[0], int(layer.max()) + 1
    per_layer = _layer_share(np.ones((1, layer.size), bool), layer, weight, L)[0]
    counts = np.vstack([np.ones((1, n)), resample_counts(n, n_boot, rng)])  # row 0: all samples once
    above, share = [], []
    for c in range(0, counts.shape[0], CHUNK):
        abar = counts[c:c + CHUNK] @ P / n  # [R, probes]
        above.append(_layer_share(abar > gamma, layer, weight, L) / per_layer)
        if top_k is not None:  # cut at the weighted (1 - k%) quantile, as the store's model-wide k-th largest
            srt = np.argsort(-abar, axis=1)
            cum = np.cumsum(weight[srt], axis=1)
            k = np.argmax(cum >= weight.sum() * top_k / 100.0, axis=1)
            cut = np.take_along_axis(abar, srt[np.arange(len(k)), k][:, None], 1)
            top = _layer_share(abar >= cut, layer, weight, L)
            share.append(top / top.sum(1, keepdims=True))
    out = {"above": np.vstack(above)}
    if share:
        out["top_k_share"] = np.vstack(share)
    return {k: (v[0], v[1:]) for k, v in out.items()}


def window_mean(per_layer: np.ndarray, win: tuple[int, int]) -> np.ndarray:
    return per_layer[..., win[0]:win[1] + 1].mean(-1)


# ----------------------------------------------------------------------------- Findings 2-3


def pair_windows(pairs: pl.DataFrame, windows: dict[str, tuple[int, int]]) -> pl.DataFrame:
    """One row per sample pair: its cell (domain_a <= domain_b), kind, and its mean LLMDcos per window
    (plus layer 2, 0-indexed 1)."""
    aggs = [pl.col("llmdcos").filter(pl.col("layer").is_between(lo, hi)).mean().alias(name)
            for name, (lo, hi) in windows.items()]
    aggs.append(pl.col("llmdcos").filter(pl.col("layer") == 1).mean().alias("layer2"))
    return (pairs.drop_nulls("llmdcos").group_by("domain_a", "domain_b", "id_a", "id_b").agg(aggs)
            .sort("domain_a", "domain_b", "id_a", "id_b"))


def cell_replicates(per_pair: pl.DataFrame, columns: list[str], n_boot: int,
                    rng: np.random.Generator) -> dict[tuple[str, str], dict[str, tuple[float, np.ndarray]]]:
    """Per cell and column: the mean over its pairs and ``n_boot`` resampled means."""
    out = {}
    for (a, b), g in per_pair.group_by("domain_a", "domain_b", maintain_order=True):
        idx = resample_indices(g.height, n_boot, rng)
        out[(a, b)] = {}
        for c in columns:
            v = g[c].to_numpy().astype(np.float64)
            out[(a, b)][c] = (float(np.nanmean(v)), np.nanmean(v[idx], axis=1))
    return out


def spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row of ``x`` [R, n] with ``y`` [n] (average ranks for ties)."""
    from scipy.stats import rankdata

    rx = rankdata(x, axis=1)
    ry = rankdata(y)
    rx = rx - rx.mean(1, keepdims=True)
    ry = ry - ry.mean()
    den = np.sqrt((rx * rx).sum(1) * (ry * ry).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx @ ry) / den, np.nan)
