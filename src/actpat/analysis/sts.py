"""Validation 3: does the similarity of two texts' parameter activations track human similarity?

The paper (§4 V3, code ``llama_sts.py``) scores each sentence pair by the **sum of per-layer
LLMDcos over the 0-indexed layers 20..L-3** and reports Spearman's rho against the human
score.  This module computes that number with its p-value and a paired bootstrap interval,
the same statistic for every single layer (the choice of window is a free parameter of the
paper's code), the other windows the code tried (flagged as post-hoc), and two ordinary
baselines on the same pairs: the cosine of mean-pooled last hidden states and the cosine of
MiniLM sentence embeddings.

Rules for imperfect input (each counted in the table and the log, never silent):
  * a pair the engine did not score (absent from the llmdcos table) leaves every row, baselines
    included, so all rows compare the same pairs;
  * a pair whose measure is undefined (NaN: a zero activation vector in a layer of the
    window, a missing hidden-state cosine) is left out of that row only (``n_excluded``);
  * fewer than 3 usable pairs or a constant column gives NaN statistics and a ``note``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import polars as pl
from scipy import stats

from actpat.analysis.uncertainty import three_way
from actpat.contracts import STS_RESULT_SCHEMA
from actpat.config import paper_sts_window, resolve_window

log = logging.getLogger(__name__)

# The paper's Table 3 (Spearman rho, 256 pairs, layers 20..L-3); other models and data.
PAPER_TABLE3 = [
    {"model": "Llama-7B", "STS-B": 0.30, "SICK": 0.52},
    {"model": "Llama2-7B", "STS-B": 0.66, "SICK": 0.51},
    {"model": "Llama2-13B", "STS-B": 0.43, "SICK": 0.52},
]

# Windows llama_sts.py also printed, as (start for 32 layers, end offset from L, exclusive).
POSTHOC_WINDOWS = [(12, 2), (12, 0), (16, 2), (16, 0), (20, 0)]



# ----------------------------------------------------------------------------- windows


def scaled_start(start_32: int, n_layers: int) -> int:
    """A layer index the paper gives for 32 layers, scaled to ``n_layers`` (as paper_sts_window)."""
    return max(0, min(round(start_32 * n_layers / 32), n_layers - 3))


def posthoc_windows(n_layers: int) -> list[tuple[str, int, int]]:
    """The other windows ``llama_sts.py`` printed, as (code's range, first, last) 0-indexed inclusive.

    [12, L-2), [12, L), [16, L-2), [16, L), [20, L); starts scaled to depth like the main window.
    """
    out = []
    for s, off in POSTHOC_WINDOWS:
        lo, hi = scaled_start(s, n_layers), n_layers - 1 - off
        if lo <= hi:
            out.append((f"[{s}, L{'-' + str(off) if off else ''})", lo, hi))
    return out


# ------------------------------------------------------------------------- statistics


def _nan_result(n: int, n_excluded: int, reason: str) -> dict:
    return {"n": n, "n_excluded": n_excluded, "spearman": np.nan, "spearman_p": np.nan,
            "pearson": np.nan, "pearson_p": np.nan, "note": reason}


def _finite_pairs(x, y) -> tuple[np.ndarray, np.ndarray, int]:
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"correlation needs two 1-d arrays of one length, got shapes {x.shape} and {y.shape}")
    ok = np.isfinite(x) & np.isfinite(y)
    return x[ok], y[ok], int((~ok).sum())


def degenerate_reason(x: np.ndarray, y: np.ndarray, names=("measure", "human score")) -> str | None:
    """Why a correlation of these (finite) arrays is undefined, or None."""
    if len(x) < 3:
        return f"fewer than 3 usable pairs ({len(x)})"
    for v, name in zip((x, y), names):
        if np.all(v == v[0]):
            return f"{name} is constant over all {len(v)} pairs"
    return None


def correlate(x, y, names=("measure", "human score")) -> dict:
    """Spearman rho and Pearson r (with p-values, scipy) over pairs where both are finite.

    Returns a dict ``n, n_excluded, spearman, spearman_p, pearson, pearson_p, note``;
    statistics are NaN and ``note`` says why when the input is degenerate.
    """
    x, y, n_bad = _finite_pairs(x, y)
    reason = degenerate_reason(x, y, names)
    if reason:
        return _nan_result(len(x), n_bad, reason)
    rho = stats.spearmanr(x, y)
    r = stats.pearsonr(x, y)
    return {"n": len(x), "n_excluded": n_bad, "spearman": float(rho.statistic), "spearman_p": float(rho.pvalue),
            "pearson": float(r.statistic), "pearson_p": float(r.pvalue), "note": None}


def bootstrap_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n) indices of pairs drawn with replacement; the same seed and n give the same draws,
    so every measure over the same pairs is resampled identically (paired bootstrap)."""
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def _rowwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a * b).sum(axis=1) / den, np.nan)


def bootstrap_spearman(x, y, n_boot: int, seed: int, level: float = 0.95) -> tuple[float, float, int]:
    """Percentile bootstrap interval of Spearman's rho, resampling pairs.

    Pairs with a non-finite value are dropped first (as in ``correlate``).  Resamples in which
    one side is constant have no rho and are left out; returns (low, high, resamples used).
    """
    x, y, _ = _finite_pairs(x, y)
    if n_boot <= 0 or degenerate_reason(x, y):
        return np.nan, np.nan, 0
    idx = bootstrap_indices(len(x), n_boot, seed)
    # Spearman = Pearson of ranks, ties averaged (as scipy.stats.spearmanr).
    rho = _rowwise_pearson(stats.rankdata(x[idx], axis=1), stats.rankdata(y[idx], axis=1))
    rho = rho[np.isfinite(rho)]
    if len(rho) < 0.5 * n_boot:
        log.warning("bootstrap: only %d of %d resamples had a defined rho; no interval", len(rho), n_boot)
        return np.nan, np.nan, len(rho)
    a = (1 - level) / 2
    lo, hi = np.quantile(rho, [a, 1 - a])
    return float(lo), float(hi), len(rho)


# ---------------------------------------------------------------------- input tables


def check_pairs(pairs: pl.DataFrame, where: str = "pair table") -> pl.DataFrame:
    """The pair table with ids unique and scores finite; errors name the offending rows."""
    missing = {"id", "score"} - set(pairs.columns)
    if missing:
        raise ValueError(f"{where}: missing column(s) {sorted(missing)}; expected id, text_a, text_b, score, source")
    dup = pairs.filter(pl.col("id").is_duplicated())["id"].unique().to_list()
    if dup:
        raise ValueError(f"{where}: duplicate pair id(s) {dup[:5]}")
    pairs = pairs.with_columns(pl.col("score").cast(pl.Float64))
    bad = pairs.filter(~pl.col("score").is_finite() | pl.col("score").is_null())["id"].to_list()
    if bad:
        raise ValueError(f"{where}: score missing or not finite for pair id(s) {bad[:5]}")
    return pairs


def llmdcos_matrix(llm: pl.DataFrame, ids: list[str], where: str = "llmdcos table") -> tuple[np.ndarray, list[str]]:
    """Per-pair, per-layer LLMDcos as an (n_pairs, L) float64 array in the order of ``ids``.

    Layers must be 0..L-1 and every scored pair must have every layer.  Pairs of ``ids`` the
    table lacks get NaN rows (returned in the second value); ids the pair table lacks are an error.
    """
    need = {"id", "layer", "llmdcos"}
    if need - set(llm.columns):
        raise ValueError(f"{where}: missing column(s) {sorted(need - set(llm.columns))}")
    if llm.height == 0:
        raise ValueError(f"{where}: empty; was score_pairs run on this pair set?")
    dup = llm.filter(pl.struct("id", "layer").is_duplicated())
    if dup.height:
        r = dup.row(0, named=True)
        raise ValueError(f"{where}: (id, layer) = ({r['id']!r}, {r['layer']}) appears more than once")
    layers = sorted(llm["layer"].unique().to_list())
    L = len(layers)
    if layers != list(range(L)):
        raise ValueError(f"{where}: layers must be 0..L-1 without gaps; found {layers}")
    bad = llm.filter(pl.col("llmdcos").is_finite() & ((pl.col("llmdcos") < -1e-6) | (pl.col("llmdcos") > 1 + 1e-6)))
    if bad.height:
        r = bad.row(0, named=True)
        raise ValueError(f"{where}: llmdcos {r['llmdcos']} outside [0, 1] at id {r['id']!r}, layer {r['layer']} "
                         f"(a cosine of non-negative vectors)")
    per_id = llm.group_by("id").agg(pl.len().alias("k"))
    short = per_id.filter(pl.col("k") != L)
    if short.height:
        r = short.row(0, named=True)
        raise ValueError(f"{where}: pair {r['id']!r} has {r['k']} layers, expected {L}")
    extra = sorted(set(per_id["id"].to_list()) - set(ids))
    if extra:
        raise ValueError(f"{where}: pair id(s) {extra[:5]} are not in the pair table; the two files come from "
                         f"different pair sets (rerun score_pairs)")
    pos = {i: k for k, i in enumerate(ids)}
    mat = np.full((len(ids), L), np.nan)
    sub = llm.select("id", "layer", pl.col("llmdcos").cast(pl.Float64).fill_null(np.nan))
    rows = np.array([pos[i] for i in sub["id"].to_list()], dtype=np.int64)
    mat[rows, sub["layer"].to_numpy()] = sub["llmdcos"].to_numpy()
    missing = sorted(set(ids) - set(per_id["id"].to_list()))
    return mat, missing


def window_sum(mat: np.ndarray, window: tuple[int, int]) -> np.ndarray:
    """The paper's per-pair score: LLMDcos summed over layers first..last (inclusive).

    NaN when any layer of the window is undefined for that pair (it is then excluded and counted).
    """
    lo, hi = window
    return mat[:, lo:hi + 1].sum(axis=1)


def hidden_vector(hidden: pl.DataFrame, ids: list[str], where: str = "hidden table") -> np.ndarray:
    """``hidden_cos`` aligned to ``ids`` (NaN where absent)."""
    if {"id", "hidden_cos"} - set(hidden.columns):
        raise ValueError(f"{where}: expected columns id, hidden_cos; found {hidden.columns}")
    dup = hidden.filter(pl.col("id").is_duplicated())["id"].unique().to_list()
    if dup:
        raise ValueError(f"{where}: duplicate pair id(s) {dup[:5]}")
    extra = sorted(set(hidden["id"].to_list()) - set(ids))
    if extra:
        raise ValueError(f"{where}: pair id(s) {extra[:5]} are not in the pair table")
    m = dict(zip(hidden["id"].to_list(), hidden["hidden_cos"].cast(pl.Float64).fill_null(np.nan).to_list()))
    return np.array([m.get(i, np.nan) for i in ids], dtype=np.float64)


def embedding_cosine(text_a: list[str], text_b: list[str], asset_dir: str | Path, batch_size: int = 32) -> np.ndarray:
    """Cosine of the MiniLM sentence embeddings of each pair's two texts.

    Embeds each distinct text once (pair sets such as Lee reuse 50 documents in many pairs).
    """
    from actpat.embeddings import embed_texts

    uniq = list(dict.fromkeys([*text_a, *text_b]))
    log.info("embedding %d distinct texts of %d pairs with %s", len(uniq), len(text_a), asset_dir)
    emb = embed_texts(uniq, asset_dir, batch_size=batch_size)
    pos = {t: k for k, t in enumerate(uniq)}
    a = emb[[pos[t] for t in text_a]].astype(np.float64)
    b = emb[[pos[t] for t in text_b]].astype(np.float64)
    return (a * b).sum(axis=1)  # embed_texts returns unit vectors


# ----------------------------------------------------------------------- evaluation


def measure(pairs: pl.DataFrame, llm: pl.DataFrame, hidden: pl.DataFrame | None = None,
             embedding_cos: np.ndarray | None = None, *, window=None, n_boot: int = 1000, seed: int = 1,
             model: str = "", pairset: str = "") -> pl.DataFrame:
    """The results table (columns ``STS_RESULT_SCHEMA``): the window sum, every layer, the post-hoc
    windows and the baselines, each with Spearman rho, p, bootstrap interval and Pearson r.

    ``window`` is the config's ``sts.window`` ([first, last] or None for the paper's rule).
    All rows share one bootstrap seed, so resamples are paired across measures.
    """
    pairs = check_pairs(pairs)
    ids = pairs["id"].cast(pl.String).to_list()
    y = pairs["score"].to_numpy()
    mat, missing = llmdcos_matrix(llm.with_columns(pl.col("id").cast(pl.String)), ids)
    emb_all = None if embedding_cos is None else np.asarray(embedding_cos, np.float64)
    if emb_all is not None and emb_all.shape != (len(ids),):
        raise ValueError(f"embedding_cos has shape {emb_all.shape}, expected ({len(ids)},)")
    hid_all = None if hidden is None else hidden_vector(hidden.with_columns(pl.col("id").cast(pl.String)), ids)
    if missing:
        # Unscored pairs leave every row (baselines too), so all rows compare the same pairs.
        log.warning("%d of %d pairs have no LLMDcos (not scored); they are excluded from every row: %s",
                    len(missing), len(ids), missing[:10])
        gone = set(missing)
        keep = np.array([i not in gone for i in ids])
        ids, y, mat = [i for i, k in zip(ids, keep) if k], y[keep], mat[keep]
        emb_all = None if emb_all is None else emb_all[keep]
        hid_all = None if hid_all is None else hid_all[keep]
    L = mat.shape[1]
    lo, hi = resolve_window(window, L, paper_sts_window)
    log.info("%d pairs, %d layers, window %d..%d (%s), %d bootstrap resamples, seed %d", len(ids), L, lo, hi,
             "config sts.window" if window is not None else "paper's 20..L-3 scaled to depth", n_boot, seed)

    rows = []

    def add(kind, measure, label, first, last, x):
        c = correlate(x, y)
        ci_lo, ci_hi, nb = bootstrap_spearman(x, y, n_boot, seed)
        rows.append({"model": model, "pairset": pairset, "kind": kind, "measure": measure, "label": label,
                     "first": first, "last": last, **c, "ci_low": ci_lo, "ci_high": ci_hi, "n_boot": nb,
                     "verdict": three_way((ci_lo, ci_hi))})

    add("window", "llmdcos_sum", f"LLMDcos summed over layers {lo}..{hi}", lo, hi, window_sum(mat, (lo, hi)))
    if hid_all is not None:
        add("baseline", "hidden_cos", "cosine of mean-pooled last hidden states", None, None, hid_all)
    if emb_all is not None:
        add("baseline", "embedding_cos", "cosine of MiniLM sentence embeddings", None, None, emb_all)
    for code, plo, phi in posthoc_windows(L):
        if (plo, phi) != (lo, hi):
            add("posthoc_window", "llmdcos_sum", f"LLMDcos summed over layers {plo}..{phi} (code's {code})",
                plo, phi, window_sum(mat, (plo, phi)))
    for layer in range(L):
        add("layer", "llmdcos", f"LLMDcos of layer {layer}", layer, layer, mat[:, layer])
    res = pl.DataFrame(rows, schema=STS_RESULT_SCHEMA)
    # One warning per distinct reason (a constant human score would otherwise repeat per row).
    for (k,), grp in res.filter(pl.col("n_excluded") > 0).group_by("n_excluded", maintain_order=True):
        log.warning("%d pair(s) excluded (value undefined, NaN) from %d row(s): %s", k, grp.height,
                    ", ".join(grp["label"].head(5).to_list()) + (" ..." if grp.height > 5 else ""))
    for (note,), grp in res.filter(pl.col("note").is_not_null()).group_by("note", maintain_order=True):
        log.warning("no correlation for %d of %d rows (%s ...): %s", grp.height, res.height,
                    ", ".join(grp["label"].head(3).to_list()), note)
    return res


def shared_text_note(text_a: list[str], text_b: list[str]) -> str | None:
    """A caveat when pairs reuse texts: such pairs are dependent, so a bootstrap over pairs
    (which treats them as independent) gives too narrow an interval."""
    n, k = len(text_a), len(set(text_a) | set(text_b))
    if k >= 2 * n:
        return None
    return (f"The {n} pairs are built from {k} distinct texts; pairs that share a text are not independent, "
            f"so the pair bootstrap intervals and the p-values are optimistic.")
