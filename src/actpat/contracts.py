"""Every table's schema, in one place: the writers build their tables with these and the readers
cast and check against them (docs/contracts.md describes each column)."""

from __future__ import annotations

import polars as pl

# results/data/<domain>.parquet (and .calibration.parquet)
DOMAIN_TABLE_SCHEMA = {
    "id": pl.String,
    "domain": pl.String,
    "task": pl.String,
    "text": pl.String,
    "choices": pl.List(pl.String),
    "labels": pl.List(pl.String),
    "answer": pl.Int64,
    "cloze": pl.String,
    "source": pl.String,
}

# results/sts/<pairset>.parquet
PAIR_SCHEMA = {"id": pl.String, "text_a": pl.String, "text_b": pl.String, "score": pl.Float64, "source": pl.String}

# results/scores/<model>/<domain>.gram.parquet, results/similarity/<model>/panel.gram.parquet
GRAM_SCHEMA = {
    "model": pl.String, "layer": pl.Int32, "id_a": pl.String, "domain_a": pl.String, "id_b": pl.String,
    "domain_b": pl.String, "dot": pl.Float64, "norm2_a": pl.Float64, "norm2_b": pl.Float64, "llmdcos": pl.Float64,
}

# results/scores/<model>/<domain>.stats.parquet
STATS_SCHEMA = {
    "model": pl.String, "domain": pl.String, "id": pl.String, "layer": pl.Int32, "matrix": pl.String,
    "statistic": pl.String, "threshold": pl.Float64, "value": pl.Float64,
}

# results/scores/<model>/<domain>.probe.parquet
PROBE_SCHEMA = {
    "model": pl.String, "domain": pl.String, "id": pl.String, "layer": pl.Int32, "matrix": pl.String,
    "n_weights": pl.Int64, "values": pl.List(pl.Float32),
}

# results/analysis/<model>/density/<domain>.parquet
DENSITY_SCHEMA = {
    "model": pl.String, "domain": pl.String, "n_samples": pl.Int64, "layer": pl.Int64,
    "n_weights": pl.Int64, "measure": pl.String, "param": pl.Float64, "cut": pl.Float64,
    "count": pl.Int64, "value": pl.Float64,
}

# results/analysis/embeddings.parquet
EMBEDDING_SCHEMA = {"domain": pl.String, "n_texts": pl.Int64, "dim": pl.Int64, "mean": pl.List(pl.Float64)}
# ... and the domain-pair cosines computed from it (relevance)
EMBEDDING_COS_SCHEMA = {"domain_a": pl.String, "domain_b": pl.String, "embedding_cos": pl.Float64,
                        "embedding_pair_cos": pl.Float64}

# results/sts/<model>/<pairset>.spearman.parquet
STS_RESULT_SCHEMA = {
    "model": pl.String, "pairset": pl.String,
    "kind": pl.String,  # window | layer | posthoc_window | baseline
    "measure": pl.String,  # llmdcos_sum | llmdcos | hidden_cos | embedding_cos
    "label": pl.String, "first": pl.Int64, "last": pl.Int64,
    "n": pl.Int64, "n_excluded": pl.Int64,
    "spearman": pl.Float64, "spearman_p": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64,
    "n_boot": pl.Int64, "pearson": pl.Float64, "pearson_p": pl.Float64, "note": pl.String,
    "verdict": pl.String,  # on "rho > 0" from the interval: holds / does not hold / inconclusive
}

# results/tables/pruning_comparisons.parquet
COMPARISON_SCHEMA = {
    # kind: allocation (vs the paper rule) | calibration (vs the configured domain) | pattern (N:M vs uniform)
    "kind": pl.String,
    "model": pl.String, "method": pl.String, "calibration": pl.String, "sparsity": pl.Float64,
    "allocation": pl.String, "baseline": pl.String, "seeds": pl.List(pl.Int64), "windows": pl.Int64,
    "blocks": pl.Int64, "log_ppl_diff": pl.Float64, "lo": pl.Float64, "hi": pl.Float64,
    "per_seed": pl.List(pl.Float64), "ppl_ratio": pl.Float64, "verdict": pl.String, "n_boot": pl.Int64,
    "level": pl.Float64, "questions": pl.Int64, "acc_diff": pl.Float64, "acc_lo": pl.Float64, "acc_hi": pl.Float64,
    "acc_verdict": pl.String,
}
