"""Relevance map (Finding 3; paper Fig. 6) and an independent measure of data relevance.

* LLMDcos matrix: per window (deep: ``similarity.deep_window``, default the paper's
  0-indexed L/2..L-3; shallow: ``similarity.shallow_window``), the domain x domain mean
  of LLMDcos pooled over all sample pairs and all layers of the window (the paper code's
  "llmdcos" scalar).  Diagonal cells pair two different samples of one domain.
* Embedding similarity (beyond the paper): each domain's first ``relevance.texts``
  sample texts are embedded with all-MiniLM-L6-v2 (L2-normalised); ``embedding_cos``
  is the cosine of two domains' mean embeddings (1 on the diagonal);
  ``embedding_pair_cos`` is the mean cosine over text pairs, one text from each domain
  (distinct texts on the diagonal) -- the embedding analogue of the LLMDcos cells.
* Spearman's rho (scipy) between the LLMDcos cells and ``embedding_cos`` over the
  off-diagonal unordered domain pairs, per window: Finding 3 as a number.

Output table (``relevance.parquet``), the full symmetric matrix per window:
``model, window, first, last, domain_a, domain_b, llmdcos, std, n_pairs, n_values,
embedding_cos, embedding_pair_cos`` (embedding columns null when disabled).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import polars as pl

from ..contracts import EMBEDDING_COS_SCHEMA, EMBEDDING_SCHEMA

log = logging.getLogger(__name__)



def llmdcos_matrix(pairs: pl.DataFrame | pl.LazyFrame, window: tuple[int, int]) -> pl.DataFrame:
    """Symmetric domain x domain mean LLMDcos over the window's layers (pairs from ``load_pairs``)."""
    lo, hi = window
    lf = pairs.lazy() if isinstance(pairs, pl.DataFrame) else pairs
    upper = (lf.filter(pl.col("layer").is_between(lo, hi))
             .group_by("domain_a", "domain_b")
             .agg(pl.col("llmdcos").mean().alias("llmdcos"), pl.col("llmdcos").std(ddof=1).alias("std"),
                  pl.struct("id_a", "id_b").n_unique().alias("n_pairs"), pl.len().alias("n_values"),
                  pl.col("layer").n_unique().alias("n_layers")))
    lower = upper.filter(pl.col("domain_a") != pl.col("domain_b")).rename(
        {"domain_a": "domain_b", "domain_b": "domain_a"})
    out = pl.concat([upper, lower.select(upper.collect_schema().names())]).sort("domain_a", "domain_b").collect()
    short = out.filter(pl.col("n_layers") < hi - lo + 1)
    if short.height:
        log.warning("window %d..%d: %d cells lack some layers (first: %s–%s has %d)", lo, hi, short.height,
                    short["domain_a"][0], short["domain_b"][0], short["n_layers"][0])
    return out.drop("n_layers")


def mean_embeddings(texts: Mapping[str, Sequence[str]], model_dir: str | Path, batch_size: int = 32,
                    progress: bool = False) -> pl.DataFrame:
    """Per domain, the mean of its texts' L2-normalised sentence embeddings (one model load for all)."""
    from ..embeddings import embed_texts

    names, flat = [], []
    for domain, tx in texts.items():
        tx = list(tx)
        if not tx:
            raise ValueError(f"domain {domain!r}: no texts to embed")
        names.append((domain, len(tx)))
        flat += tx
    log.info("embedding %d texts of %d domains with %s", len(flat), len(names), model_dir)
    # Batches of similar length waste little compute on padding; the order is restored after.
    order = np.argsort([len(t) for t in flat], kind="stable")
    sorted_emb = embed_texts([flat[i] for i in order], model_dir, batch_size=batch_size).astype(np.float64)
    emb = np.empty_like(sorted_emb)
    emb[order] = sorted_emb
    rows, start = [], 0
    for domain, n in names:
        part = emb[start:start + n]
        start += n
        rows.append({"domain": domain, "n_texts": n, "dim": part.shape[1], "mean": part.mean(0).tolist()})
    return pl.DataFrame(rows, schema=EMBEDDING_SCHEMA)


def head_texts(table: str | Path, n: int) -> list[str]:
    """The first ``n`` texts of a sample table (fewer if it is shorter; logged)."""
    df = pl.scan_parquet(table).select("text").head(n).collect()
    nulls = df["text"].null_count()
    if nulls:
        raise ValueError(f"{table}: {nulls} of the first {n} rows have a null 'text'")
    if df.height < n:
        log.warning("%s has %d rows; relevance.texts asks for %d, using all", table, df.height, n)
    return df["text"].to_list()


def embedding_similarity(emb: pl.DataFrame) -> pl.DataFrame:
    """Full symmetric table domain_a, domain_b, embedding_cos, embedding_pair_cos."""
    names = emb["domain"].to_list()
    M = np.array(emb["mean"].to_list(), dtype=np.float64)
    n = emb["n_texts"].to_numpy()
    norms = np.linalg.norm(M, axis=1)
    dots = M @ M.T  # mean of unit vectors: m_a·m_b is the mean cosine over cross-domain text pairs
    rows = []
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            cos = dots[i, j] / (norms[i] * norms[j]) if norms[i] > 0 and norms[j] > 0 else float("nan")
            if i == j:
                # distinct pairs only: (|Σv|² - n) / (n(n-1)) with |Σv|² = n²|m|², each |v| = 1
                pair = (n[i] ** 2 * dots[i, i] - n[i]) / (n[i] * (n[i] - 1)) if n[i] > 1 else None
            else:
                pair = dots[i, j]
            rows.append({"domain_a": a, "domain_b": b, "embedding_cos": float(cos),
                         "embedding_pair_cos": None if pair is None else float(pair)})
    return pl.DataFrame(rows, schema=EMBEDDING_COS_SCHEMA)


def relevance_table(pairs: pl.DataFrame, windows: Mapping[str, tuple[int, int]],
                    embeddings: pl.DataFrame | None = None, model: str | None = None) -> pl.DataFrame:
    """The relevance table (module doc) for the named windows."""
    frames = []
    for name, (lo, hi) in windows.items():
        m = llmdcos_matrix(pairs, (lo, hi))
        frames.append(m.with_columns(pl.lit(name).alias("window"), pl.lit(lo).alias("first"),
                                     pl.lit(hi).alias("last")))
    out = pl.concat(frames)
    if embeddings is not None:
        out = out.join(embedding_similarity(embeddings), on=["domain_a", "domain_b"], how="left")
    else:
        out = out.with_columns(pl.lit(None, pl.Float64).alias("embedding_cos"),
                               pl.lit(None, pl.Float64).alias("embedding_pair_cos"))
    if model is None and "model" in pairs.columns and pairs.height:
        model = pairs["model"][0]
    cols = ["model", "window", "first", "last", "domain_a", "domain_b", "llmdcos", "std", "n_pairs", "n_values",
            "embedding_cos", "embedding_pair_cos"]
    return out.with_columns(pl.lit(model, pl.String).alias("model")).select(cols).sort("window", "domain_a",
                                                                                     "domain_b")


def offdiag(table: pl.DataFrame, window: str) -> pl.DataFrame:
    """Unordered off-diagonal cells of one window (domain_a < domain_b)."""
    return table.filter((pl.col("window") == window) & (pl.col("domain_a") < pl.col("domain_b")))


def spearman(x: Sequence[float], y: Sequence[float]) -> dict:
    """Spearman's rho (scipy.stats.spearmanr) with its p-value and n; rho null when n < 3 or constant."""
    from scipy.stats import spearmanr

    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = int(x.size)
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"rho": None, "p": None, "n": n}
    res = spearmanr(x, y)
    rho, p = float(res.statistic), float(res.pvalue)
    return {"rho": None if math.isnan(rho) else rho, "p": None if math.isnan(p) else p, "n": n}


def relevance_correlations(table: pl.DataFrame, windows: Sequence[str] = ("deep", "shallow")) -> dict:
    """Per window, Spearman between off-diagonal LLMDcos and embedding_cos."""
    out = {}
    for w in windows:
        sub = offdiag(table, w).drop_nulls(["llmdcos", "embedding_cos"])
        out[w] = spearman(sub["llmdcos"].to_list(), sub["embedding_cos"].to_list())
    return out
