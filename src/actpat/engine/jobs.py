"""Scoring jobs: what one workflow rule (or one CLI call) does, end to end.

* ``score_domain_shard``: rows of one domain table -> shard store of sums + stats + gram;
* ``merge_domain``: shard stores -> the domain's mean store (exact merge) + merged tables;
* ``score_panel``: samples of every domain in mixed batches -> cross-domain pair table;
* ``score_pairs``: a sentence-pair table -> per-pair, per-layer LLMDcos + hidden-state cosine.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np
import polars as pl
import torch

from .. import __version__
from ..modelio import load_for_job, model_fingerprint
from ..provenance import package_versions
from . import plan
from .scorer import ActivationScorer, ScoreOptions, ScoreResult
from .store import merge_sum_stores, write_store
from ..atomic import write_parquet
from ..contracts import GRAM_SCHEMA
from .frames import gram_frame, probe_frame, stats_frame

log = logging.getLogger(__name__)


def _weights_attr(res: ScoreResult) -> list[dict]:
    return [{"name": w.name, "layer": w.layer, "matrix": w.matrix, "shape": list(w.weight.shape)}
            for w in res.weights]


def _fingerprint(source: str, model) -> dict:
    fp = model_fingerprint(source)
    commit = getattr(model.config, "_commit_hash", None)  # the hub revision actually loaded
    if commit:
        fp["commit"] = commit
    return fp


def _base_attrs(model_name: str, source: str, res: ScoreResult, opts: ScoreOptions, model) -> dict:
    return {
        "model": model_name,
        "model_fingerprint": _fingerprint(source, model),
        "target": opts.target,
        "max_tokens": opts.max_tokens,
        "thresholds": list(opts.thresholds),
        "include": opts.include,
        "exclude": opts.exclude,
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "layers": res.n_layers,
        "weights": _weights_attr(res),
        "actpat_version": __version__,
        "torch_version": torch.__version__,
        "packages": package_versions(),  # transformers, zarr, numpy, ...: what the numbers depend on
    }


def read_rows(table: str | Path, rows: range) -> pl.DataFrame:
    df = pl.read_parquet(table)
    if rows.stop > df.height:
        raise ValueError(f"{table} has {df.height} rows but rows {rows.start}..{rows.stop - 1} were requested; "
                         "lower scoring.samples (or similarity.samples), or raise data.pool; a text domain whose "
                         "documents are short gives more windows with a smaller data.window_words")
    return df.slice(rows.start, len(rows))


def score_domain_shard(*, model_name: str, load: dict, table: str | Path, rows: range,
                       opts: ScoreOptions, batch_size: int, out_store: str | Path, out_stats: str | Path,
                       out_gram: str | Path, out_probe: str | Path | None = None, shard: int = 0, model=None,
                       tok=None) -> ScoreResult:
    """Score rows ``rows`` of a domain table; write a shard store holding Σ A (not means)."""
    df = read_rows(table, rows)
    domain = df["domain"][0]
    if model is None:
        model, tok = load_for_job(load)
    scorer = ActivationScorer(model, tok, opts)
    res = scorer.run(df["text"].to_list(), df["id"].to_list(), [domain] * df.height,
                     batch_size=batch_size, desc=f"{domain} shard {shard}")
    attrs = _base_attrs(model_name, load["load_from"], res, opts, model)
    attrs.update({
        "kind": "sum", "domain": domain, "shard": shard, "rows": [rows.start, rows.stop],
        "n_samples": res.n_samples.get(domain, 0), "n_excluded": len(res.excluded),
        "excluded": [list(e) for e in res.excluded], "excluded_ids": [e[0] for e in res.excluded],
        "n_truncated": len(res.truncated), "tokens_cut": res.tokens_cut, "truncation": opts.truncation,
        "sample_ids": res.sample_ids,
        "batch_size": batch_size, "seconds": res.seconds,
    })
    sums = res.sums.get(domain) or {w.name: torch.zeros(w.weight.shape) for w in res.weights}
    write_store(out_store, sums, attrs)
    write_parquet(stats_frame(res, model_name), out_stats)
    write_parquet(gram_frame(res, model_name), out_gram)
    if out_probe is not None:
        write_parquet(probe_frame(res, model_name), out_probe)
    return res


def merge_domain(stores: list[str], stats: list[str], grams: list[str], *, out_store: str, out_stats: str,
                 out_gram: str, extra_attrs: dict | None = None, probes: list[str] = (),
                 out_probe: str | None = None, verify: bool = False, storage: str = "float32") -> None:
    """A domain's mean store (values kept as ``storage``) and tables from its shards; ``verify``:
    read the store back first (the shard stores are temporary and deleted once this job succeeds)."""
    merge_sum_stores(stores, out_store, extra_attrs, verify=verify, storage=storage)
    write_parquet(pl.concat([pl.read_parquet(p) for p in stats]), out_stats)
    write_parquet(pl.concat([pl.read_parquet(p) for p in grams]).cast(GRAM_SCHEMA), out_gram)
    if out_probe is not None:
        write_parquet(pl.concat([pl.read_parquet(p) for p in probes]), out_probe)


def score_panel(*, model_name: str, load: dict, tables: dict[str, str], rows: range,
                per_batch: int, opts: ScoreOptions, out_gram: str | Path, out_stats: str | Path,
                model=None, tok=None) -> ScoreResult:
    """Rows ``rows`` of every domain table scored in mixed batches (cross-domain pairs)."""
    texts, ids, groups, by_group = [], [], [], {}
    for domain, path in sorted(tables.items()):
        df = read_rows(path, rows)
        by_group[domain] = list(range(len(texts), len(texts) + df.height))
        texts += df["text"].to_list()
        ids += df["id"].to_list()
        groups += [domain] * df.height
    if model is None:
        model, tok = load_for_job(load)
    opts = ScoreOptions(**{**asdict(opts), "sums": False})
    res = ActivationScorer(model, tok, opts).run(texts, ids, groups, batches=plan.mixed(by_group, per_batch),
                                                  desc="panel")
    write_parquet(gram_frame(res, model_name), out_gram)
    write_parquet(stats_frame(res, model_name), out_stats)
    return res


def score_pairs(*, model_name: str, load: dict, pairs_table: str | Path, opts: ScoreOptions,
                block_size: int, out_llmdcos: str | Path, out_hidden: str | Path, model=None, tok=None) -> ScoreResult:
    """LLMDcos of each sentence pair, per layer, with both texts in one pass (texts deduplicated)."""
    pairs = pl.read_parquet(pairs_table)
    uniq: dict[str, int] = {}
    for t in pairs["text_a"].to_list() + pairs["text_b"].to_list():
        uniq.setdefault(t, len(uniq))
    texts = list(uniq)
    tids = [f"t{i}" for i in range(len(texts))]
    ia = [uniq[t] for t in pairs["text_a"].to_list()]
    ib = [uniq[t] for t in pairs["text_b"].to_list()]
    batches = plan.pair_cover(list(zip(ia, ib)), block_size)
    singles = sorted(set(ia) - {t for b in batches for t in b})  # pairs of a text with itself
    batches += [[t] for t in singles]
    log.info("%d pairs over %d distinct texts: %d passes in %d batches", pairs.height, len(texts),
             sum(map(len, batches)), len(batches))
    if model is None:
        model, tok = load_for_job(load)
    opts = ScoreOptions(**{**asdict(opts), "sums": False, "hidden": True, "gram": True})
    res = ActivationScorer(model, tok, opts).run(texts, tids, batches=batches, desc="pairs")
    L = res.n_layers
    gram = {}
    for layer, a, _, b, _, dot, na, nb in res.pairs:
        gram.setdefault((a, b), {})[layer] = (dot, na, nb)
    # per-text, per-layer Σ A² from the per-matrix stats (for pairs of a text with itself)
    layer_idx = np.array([w.layer for w in res.weights])
    self_norm = {sid: np.bincount(layer_idx, weights=s2, minlength=L) for sid, s2 in zip(res.sample_ids, res.s2)}
    excluded = {e[0] for e in res.excluded}
    rows = []
    hid = []
    for pid, a, b in zip(pairs["id"].to_list(), ia, ib):
        ta, tb = tids[a], tids[b]
        if ta in excluded or tb in excluded:
            continue
        for layer in range(L):
            if a == b:
                n2 = float(self_norm[ta][layer])
                dot, na, nb = n2, n2, n2
            else:
                dot, na, nb = (gram.get((ta, tb)) or {
                    k: (d, y, x) for k, (d, x, y) in gram[(tb, ta)].items()})[layer]
            rows.append((pid, layer, dot / np.sqrt(na * nb) if na > 0 and nb > 0 else float("nan"), dot, na, nb))
        ha, hb = res.hidden[ta], res.hidden[tb]
        hid.append((pid, float(ha @ hb / (np.linalg.norm(ha) * np.linalg.norm(hb)))))
    out = pl.DataFrame(rows, schema={"id": pl.String, "layer": pl.Int32, "llmdcos": pl.Float64, "dot": pl.Float64,
                                     "norm2_a": pl.Float64, "norm2_b": pl.Float64}, orient="row")
    write_parquet(out, out_llmdcos)
    write_parquet(pl.DataFrame(hid, schema={"id": pl.String, "hidden_cos": pl.Float64}, orient="row"), out_hidden)
    if excluded:
        log.warning("%d texts excluded (non-finite); their pairs are absent from %s", len(excluded), out_llmdcos)
    return res
