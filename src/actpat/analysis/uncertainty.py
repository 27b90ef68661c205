"""Intervals and three-way verdicts: the one home of the workflow's uncertainty rules.

* ``percentile_interval``: the percentile bootstrap interval of a vector of resampled statistics.
* ``three_way``: a claim "quantity > 0" *holds* when the whole interval is above 0, *does not hold*
  when the whole interval is below 0, and is *inconclusive* otherwise (``not measured`` without one).
* ``wilson``: the Wilson score interval of a binomial proportion (zero-shot accuracies).
* ``paired_block_bootstrap``: the difference in log-perplexity between two pruned models evaluated on
  the same text, as the mean over calibration seeds, with the seeds and the text's token blocks
  resampled (paired): the noise of the calibration draw and of the evaluation text.
* ``paired_item_bootstrap``: the difference in accuracy between two models on the same questions,
  with the questions resampled (paired).

Every resampling takes an explicit seed, so an interval is reproducible bit for bit.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

HOLDS, FAILS, INCONCLUSIVE, UNMEASURED = "holds", "does not hold", "inconclusive", "not measured"
VERDICT_RULE = ("holds: the whole {level:g}% interval of the claimed difference is above 0; does not hold: the "
                "whole interval is below 0; inconclusive: the interval contains 0")


def percentile_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float] | None:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None
    a = (1 - level) / 2
    lo, hi = np.quantile(v, [a, 1 - a])
    return float(lo), float(hi)


def shifted(point: float, boot: np.ndarray, centre: float) -> np.ndarray:
    """Bootstrap replicates moved from ``centre`` (the statistic on the resampled subset) to ``point``
    (the exact statistic), so the interval is built around the exact value."""
    return point + (np.asarray(boot, dtype=np.float64) - centre)


def three_way(interval: tuple[float, float] | None) -> str:
    """The verdict on "quantity > 0" from its interval."""
    if interval is None or not all(math.isfinite(x) for x in interval):
        return UNMEASURED
    lo, hi = interval
    if lo > 0:
        return HOLDS
    if hi < 0:
        return FAILS
    return INCONCLUSIVE


def resample_indices(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """[n_boot, n] indices drawn with replacement."""
    return rng.integers(0, n, size=(n_boot, n))


def resample_counts(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """[n_boot, n] multiplicities of each item in a resample (rows sum to n)."""
    idx = resample_indices(n, n_boot, rng)
    out = np.zeros((n_boot, n), dtype=np.float64)
    np.add.at(out, (np.repeat(np.arange(n_boot), n), idx.reshape(-1)), 1.0)
    return out


def wilson(successes: int, n: int, level: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion (good at small n and near 0 or 1)."""
    if n <= 0:
        return None
    from scipy.stats import norm

    z = float(norm.ppf(1 - (1 - level) / 2))
    p = successes / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


def paired_block_bootstrap(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]], tokens: Sequence[int], *,
                           n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> dict:
    """log PPL(a) - log PPL(b), mean over calibration seeds, with a two-level paired bootstrap.

    ``a[k]``, ``b[k]``: the NLL sums of the evaluation text's token blocks for calibration seed k
    (the same blocks for every seed and both models); ``tokens``: the tokens of each block.  Each
    replicate draws the seeds with replacement (the calibration draw) and, shared by all seeds and
    both models, the blocks with replacement (the evaluation text), so the interval covers both
    sources of noise; with one seed it covers the text only.
    """
    A, B = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    n = np.asarray(tokens, dtype=np.float64)
    if A.shape != B.shape or A.ndim != 2 or A.shape[1] == 0 or n.shape != A.shape[1:]:
        raise ValueError(f"block NLLs must be [seeds, blocks] of equal shape with one token count per block; got "
                         f"{A.shape}, {B.shape} and {n.shape}")
    D = A - B  # [seeds, blocks]
    point_seeds = D.sum(1) / n.sum()
    rng = np.random.default_rng(seed)
    S, K = D.shape
    blocks = resample_counts(K, n_boot, rng)  # [n_boot, blocks] multiplicities
    per_seed = (blocks @ D.T) / (blocks @ n)[:, None]  # [n_boot, seeds]
    seeds = resample_indices(S, n_boot, rng)
    boot = np.take_along_axis(per_seed, seeds, 1).mean(1)
    return {"diff": float(point_seeds.mean()), "per_seed": point_seeds.tolist(),
            "interval": percentile_interval(boot, level), "seeds": S, "blocks": K, "n_boot": n_boot,
            "level": level}


def paired_item_bootstrap(a: Sequence[float], b: Sequence[float], *, n_boot: int = 1000, level: float = 0.95,
                          seed: int = 0) -> dict:
    """mean(a) - mean(b) over the same items (e.g. 1/0 correct per question), items resampled together."""
    A, B = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if A.shape != B.shape or A.ndim != 1 or A.size == 0:
        raise ValueError(f"per-item values must be two vectors of the same length; got {A.shape} and {B.shape}")
    d = A - B
    idx = resample_indices(d.size, n_boot, np.random.default_rng(seed))
    return {"diff": float(d.mean()), "interval": percentile_interval(d[idx].mean(1), level), "items": int(d.size),
            "n_boot": n_boot, "level": level}
