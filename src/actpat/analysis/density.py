"""Activation density per layer (Finding 1; paper Figs 1, 2 and 4).

From one final score store (mean activation Ā(w) per weight), per decoder layer:

* ``above_threshold``: for each threshold γ, the number of weights with Ā > γ
  (the paper's N_i) and that number as a fraction of the layer's weights;
* ``top_k_share``: the threshold-free view.  One model-wide cut c is the k-th largest
  value over **all** scored weights of the store (k = ceil(N · top_k_percent / 100));
  per layer, the number of weights with Ā ≥ c and their share of all such weights
  (ties at the cut are all counted, so the shares always add up to 1);
* ``gini``: the Gini coefficient of the layer's activations (0 = all equal,
  → 1 = concentrated on few weights);
* ``mean``: the layer's mean activation.

The store is streamed one matrix (for the cut) and one layer (for the Gini) at a
time, so memory stays at about two copies of the largest layer plus the top-k
candidates, whatever the model size.

Tidy output, one row per (layer, measure, param):

==========  =======  =================================================================
column      type     meaning
==========  =======  =================================================================
model       str      store attribute ``model`` (or the name given)
domain      str      store attribute ``domain``
n_samples   int      samples averaged in the store
layer       int      0-indexed decoder block
n_weights   int      scored weights in the layer
measure     str      ``above_threshold`` | ``top_k_share`` | ``gini`` | ``mean``
param       f64      γ (above_threshold), k in percent (top_k_share), null otherwise
cut         f64      the value compared against: γ, or the model-wide cut c
count       i64      weights above γ / at or above c; null for gini and mean
value       f64      fraction of the layer (above_threshold), share of the model-wide
                     top-k set (top_k_share), Gini, or mean activation
==========  =======  =================================================================
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import polars as pl

from ..contracts import DENSITY_SCHEMA
from ..engine.store import ScoreStore, StoreError

log = logging.getLogger(__name__)

_GINI_CHUNK = 1 << 24  # float64 work buffer of the weighted sum: 128 MB at most


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative values (float64 accumulation).

    G = 2·Σ_i i·x_(i) / (n·Σ x) − (n + 1)/n with x sorted ascending and i = 1..n;
    0 when all values are equal or all are zero.
    """
    x = np.sort(np.asarray(values).ravel())
    n = x.size
    if n == 0:
        return float("nan")
    if x[0] < 0:
        raise ValueError(f"Gini needs non-negative values; found {x[0]!r} (activations are |w·∂D/∂w| means)")
    total = float(np.sum(x, dtype=np.float64))
    if total == 0.0:
        return 0.0
    weighted = 0.0
    for lo in range(0, n, _GINI_CHUNK):  # chunked so a 200 M-weight layer needs no n-sized float64 copy
        hi = min(n, lo + _GINI_CHUNK)
        ranks = np.arange(lo + 1, hi + 1, dtype=np.float64)
        weighted += float(np.dot(ranks, x[lo:hi].astype(np.float64)))
    return 2.0 * weighted / (n * total) - (n + 1.0) / n


class TopK:
    """Exact model-wide k-th largest value, fed array by array, remembering each value's layer.

    Only candidates are kept: a value below the k-th largest of its own array, or below
    the k-th largest of the candidates kept so far (``floor``), can never reach the
    final top k, because k values at least as large are already known.  Candidates are
    compacted once they exceed 2k, so the work per array is linear in its size and the
    buffer stays under 2k values plus ties.  Ties at the final cut are all kept.
    """

    def __init__(self, k: int):
        if k < 1:
            raise ValueError(f"top-k needs k >= 1 (got {k})")
        self.k = int(k)
        self.floor = -np.inf
        self._vals: list[np.ndarray] = []
        self._lays: list[np.ndarray] = []
        self._size = 0
        self.seen = 0

    def _kth_largest(self, v: np.ndarray) -> float:
        return float(np.partition(v, v.size - self.k)[v.size - self.k])

    def add(self, values: np.ndarray, layer: int) -> None:
        v = np.asarray(values, dtype=np.float32).ravel()
        self.seen += v.size
        if self.floor > -np.inf:
            v = v[v >= self.floor]
        if v.size > self.k:
            v = v[v >= self._kth_largest(v)]
        if v.size == 0:
            return
        self._vals.append(v)
        self._lays.append(np.full(v.size, layer, np.int32))
        self._size += v.size
        if self._size > 2 * self.k:
            self._compact()

    def _compact(self) -> None:
        vals = np.concatenate(self._vals) if len(self._vals) > 1 else self._vals[0]
        lays = np.concatenate(self._lays) if len(self._lays) > 1 else self._lays[0]
        if vals.size >= self.k:
            self.floor = max(self.floor, self._kth_largest(vals))
            keep = vals >= self.floor
            vals, lays = vals[keep], lays[keep]
        self._vals, self._lays, self._size = [vals], [lays], vals.size

    @property
    def cut(self) -> float:
        """The k-th largest value seen (the minimum when fewer than k values were seen)."""
        if not self._vals:
            raise ValueError("no values were added")
        self._compact()
        return float(self._vals[0].min())

    def counts(self, n_layers: int) -> np.ndarray:
        """Per layer, how many values are >= the cut (ties included)."""
        cut = self.cut
        keep = self._vals[0] >= cut
        return np.bincount(self._lays[0][keep], minlength=n_layers).astype(np.int64)


def top_k_count(n_total: int, top_k_percent: float) -> int:
    """k = ceil(N·p/100), at least 1 (a tiny store still has a top weight)."""
    if not 0 < top_k_percent <= 100:
        raise ValueError(f"similarity.top_k_percent must be in (0, 100]; got {top_k_percent}")
    # Round before ceil so that e.g. 1 % of 1000 is 10, not 11 from float noise.
    return max(1, math.ceil(round(n_total * top_k_percent / 100.0, 6)))


def _layer_groups(store: ScoreStore) -> tuple[int, dict[int, list[str]]]:
    attrs = store.attrs
    if "layers" not in attrs or not attrs.get("weights"):
        raise StoreError(f"{store.path}: attributes 'layers' and 'weights' are required "
                         "(see docs/contracts.md); rerun the scoring job")
    n_layers = int(attrs["layers"])
    groups: dict[int, list[str]] = {}
    for w in attrs["weights"]:
        layer = int(w["layer"])
        if not 0 <= layer < n_layers:
            raise StoreError(f"{store.path}: weight {w['name']!r} has layer {layer}, outside 0..{n_layers - 1}")
        groups.setdefault(layer, []).append(w["name"])
    return n_layers, groups


def layer_density(path: str | Path, thresholds: Sequence[float], top_k_percent: float = 1.0,
                  model: str | None = None, progress: bool = False) -> pl.DataFrame:
    """The tidy density table of one score store (see the module docstring)."""
    store = ScoreStore(path)
    n_layers, groups = _layer_groups(store)
    thresholds = [float(t) for t in thresholds]
    attrs = store.attrs
    n_total = sum(int(np.prod(w["shape"])) for w in attrs["weights"])
    topk = TopK(top_k_count(n_total, top_k_percent))
    sizes = np.zeros(n_layers, np.int64)
    above = np.zeros((n_layers, len(thresholds)), np.int64)
    ginis = np.full(n_layers, np.nan)
    means = np.full(n_layers, np.nan)
    layers = sorted(groups)
    it = layers
    if progress:
        from tqdm import tqdm

        it = tqdm(layers, desc=f"density {attrs.get('domain', store.path.name)}", unit="layer")
    for layer in it:
        parts = []
        for name in groups[layer]:
            a = store.read(name).ravel()
            if not np.all(np.isfinite(a)):
                bad = int(np.flatnonzero(~np.isfinite(a))[0])
                raise StoreError(f"{store.path}: array {name!r} holds a non-finite value at flat index {bad}; "
                                 "the scoring job must have failed: rerun it")
            topk.add(a, layer)
            parts.append(a)
        values = np.concatenate(parts) if len(parts) > 1 else parts[0]
        del parts
        sizes[layer] = values.size
        for j, t in enumerate(thresholds):
            above[layer, j] = int(np.count_nonzero(values > t))
        means[layer] = float(np.mean(values, dtype=np.float64))
        ginis[layer] = gini(values)
        del values
    missing = [i for i in range(n_layers) if sizes[i] == 0]
    if missing:
        log.warning("%s: layers %s have no scored weights; their rows are left out", store.path, missing)
    cut = topk.cut
    in_top = topk.counts(n_layers)
    total_top = int(in_top.sum())
    rows = []
    base = {"model": model or attrs.get("model"), "domain": attrs.get("domain"),
            "n_samples": int(attrs["n_samples"]) if attrs.get("n_samples") is not None else None}
    for layer in layers:
        n = int(sizes[layer])
        for j, t in enumerate(thresholds):
            rows.append({**base, "layer": layer, "n_weights": n, "measure": "above_threshold", "param": t,
                         "cut": t, "count": int(above[layer, j]), "value": above[layer, j] / n})
        rows.append({**base, "layer": layer, "n_weights": n, "measure": "top_k_share",
                     "param": float(top_k_percent), "cut": cut, "count": int(in_top[layer]),
                     "value": in_top[layer] / total_top})
        rows.append({**base, "layer": layer, "n_weights": n, "measure": "gini", "param": None, "cut": None,
                     "count": None, "value": float(ginis[layer])})
        rows.append({**base, "layer": layer, "n_weights": n, "measure": "mean", "param": None, "cut": None,
                     "count": None, "value": float(means[layer])})
    log.info("%s: %d weights in %d layers; top %.3g%% cut %.4g (%d weights incl. ties)",
             store.path, n_total, len(layers), top_k_percent, cut, total_top)
    return pl.DataFrame(rows, schema=DENSITY_SCHEMA)


def combine(tables: Iterable[pl.DataFrame | str | Path]) -> pl.DataFrame:
    """Stack per-domain density tables (frames or Parquet paths) into one, sorted."""
    frames = [t if isinstance(t, pl.DataFrame) else pl.read_parquet(t) for t in tables]
    if not frames:
        return pl.DataFrame(schema=DENSITY_SCHEMA)
    out = pl.concat([f.select(list(DENSITY_SCHEMA)).cast(DENSITY_SCHEMA) for f in frames])
    dup = out.group_by("domain", "layer", "measure", "param").len().filter(pl.col("len") > 1)
    if dup.height:
        raise ValueError(f"density tables overlap: domain {dup['domain'][0]!r} appears in more than one input")
    return out.sort("domain", "measure", "param", "layer", nulls_last=True)
