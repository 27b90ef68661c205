"""Per-layer sparsity allocations: how an overall target S is shared among decoder blocks.

Every rule returns one sparsity per block (layer 0 first) whose size-weighted mean is S:

* ``uniform``: S everywhere (Wanda, SparseGPT, magnitude as published).
* ``paper``:   the paper's rule (paper.md §2.4) from N_i, the number of weights of block i
  whose mean activation exceeds gamma: N'_i = sigmoid(z_i + alpha/i) with z the population
  z-score of N and i 1-indexed, then S_i = S + beta*S*(1 - N'_i*L / sum N').  Blocks with
  many activated weights are pruned less.
* ``alphapruning``: AlphaPruning (Lu et al. 2024, ``alphapruning.py``): per matrix, from the
  power-law exponent of its spectrum; the only rule whose sparsities differ inside a block.
* ``owl``:     OWL (Yin et al. 2024, released code ``lib/prune_all.py``): the block's share of
  Wanda scores above M x the block mean (LOD, in percent), min-max scaled to [0, 2*lambda],
  mean-centred; block density = that + (1 - S).  Blocks with more outliers are pruned less.

Controls for the paper's rule (Validation 1: does the activation signal add anything over
depth and over a wider spread?):

* ``depth_ramp``:  S_i linear in depth, rising from the first block to the last, centred on S,
  with the same spread (max - min) as the paper rule gives for that target.  The counts set
  only the spread; the shape uses no activation data.
* ``owl_matched``: OWL with lambda = half the paper rule's spread (OWL's range is exactly
  2*lambda), so the two rules differ in shape only.
* ``permuted``:    the paper rule fed with the counts N_i shuffled across blocks (seeded): the
  same values, the same spread, the activation-to-depth link broken.

Both non-uniform rules have mean exactly S by construction when blocks have equal sizes
(true for LLaMA-family models).  When a value has to be clipped to [0, 1], or blocks differ
in size, ``fit_to_target`` shifts the unclipped blocks by one common constant until the
size-weighted mean is S again; the adjustment is reported, never silent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch



class AllocationError(ValueError):
    pass


def _check_target(target: float) -> None:
    if not 0.0 <= target < 1.0:
        raise AllocationError(f"target sparsity {target} must be in [0, 1)")


def uniform_allocation(n_layers: int, target: float) -> np.ndarray:
    _check_target(target)
    return np.full(n_layers, float(target))


def paper_allocation(counts: Sequence[float], target: float, alpha: float = 2.0, beta: float = 0.2) -> np.ndarray:
    """The paper's S_i from per-block activated-weight counts N_i (block 0 first)."""
    _check_target(target)
    n = np.asarray(counts, dtype=np.float64)
    if n.ndim != 1 or n.size == 0:
        raise AllocationError(f"counts must be a non-empty 1-D sequence, got shape {n.shape}")
    L = n.size
    std = n.std()  # population std (ddof=0): the only choice that reproduces the published lists
    # All blocks equally active: no information, only the alpha/i term remains.
    z = (n - n.mean()) / std if std > 0 else np.zeros(L)
    i = np.arange(1, L + 1, dtype=np.float64)  # 1-indexed, as in the paper
    n_prime = 1.0 / (1.0 + np.exp(-(z + alpha / i)))
    return target + beta * target * (1.0 - n_prime * L / n_prime.sum())


def spread(sparsity: Sequence[float]) -> float:
    s = np.asarray(sparsity, dtype=np.float64)
    return float(s.max() - s.min())


def depth_ramp_allocation(n_layers: int, target: float, width: float) -> np.ndarray:
    """S_i rising linearly from block 0 to block L-1, mean S, max - min = ``width``."""
    _check_target(target)
    if n_layers < 2:
        return np.full(n_layers, float(target))
    t = np.arange(n_layers, dtype=np.float64) / (n_layers - 1)
    return target + width * (t - 0.5)


def permuted_counts(counts: Sequence[float], seed: int) -> np.ndarray:
    """The counts shuffled across blocks with a seeded permutation."""
    return np.random.default_rng(seed).permutation(np.asarray(counts, dtype=np.float64))


def outlier_ratio(scores: Sequence[torch.Tensor], M: float) -> float:
    """OWL's ``check_outlier_mean`` over a block: percent of scores above M x their mean.

    ``scores`` are the block's matrices (flattened together, as OWL concatenates them).
    The mean is accumulated in float64.
    """
    total = sum(float(s.double().sum()) for s in scores)
    numel = sum(s.numel() for s in scores)
    if numel == 0:
        raise AllocationError("outlier_ratio of an empty block")
    thresh = total / numel * M
    count = sum(int((s.double() > thresh).sum()) for s in scores)
    return 100.0 * count / numel


def owl_allocation(lod: Sequence[float], target: float, lam: float = 0.08) -> np.ndarray:
    """OWL's per-block sparsity from the layer outlier distribution ``lod`` (block 0 first)."""
    _check_target(target)
    d = np.asarray(lod, dtype=np.float64)
    span = d.max() - d.min()
    # Identical outlier ratios everywhere: OWL would divide by zero; the allocation is uniform.
    scaled = (d - d.min()) * (2 * lam / span) if span > 0 else np.zeros_like(d)
    density = scaled - scaled.mean() + (1.0 - target)
    return 1.0 - density


def fit_to_target(
    sparsity: Sequence[float],
    target: float,
    sizes: Sequence[float] | None = None,
    lo: float = 0.0,
    hi: float = 1.0,
    tol: float = 1e-12,
) -> tuple[np.ndarray, bool]:
    """Clip to [lo, hi] and shift the unclipped blocks so the size-weighted mean is ``target``.

    Returns (sparsities, adjusted).  ``adjusted`` is False when the input already satisfied
    both constraints (the usual case: the rules above are exact for equal-size blocks).
    """
    s = np.asarray(sparsity, dtype=np.float64).copy()
    w = np.ones_like(s) if sizes is None else np.asarray(sizes, dtype=np.float64)
    if s.shape != w.shape:
        raise AllocationError(f"{s.size} sparsities but {w.size} block sizes")
    if not lo <= target <= hi:
        raise AllocationError(f"target {target} outside [{lo}, {hi}]")
    orig = s.copy()
    for _ in range(10 * s.size + 10):
        s = np.clip(s, lo, hi)
        gap = target * w.sum() - (w * s).sum()
        if abs(gap) <= tol * w.sum():
            break
        free = (s > lo) if gap < 0 else (s < hi)
        if not free.any():
            raise AllocationError(f"cannot reach mean sparsity {target} within [{lo}, {hi}]")
        s[free] += gap / w[free].sum()
    adjusted = not np.allclose(s, orig, rtol=0, atol=tol)
    return s, adjusted


def pruned_per_row(n: int, sparsity: float) -> int:
    """Weights zeroed out of ``n``: Wanda's ``int(n * S)``, guarded against float round-down
    (e.g. 100 * 0.29 = 28.999999999999996 would otherwise drop one weight)."""
    return min(n, int(math.floor(n * sparsity + 1e-9)))


# ----------------------------------------------------------------------------- the registry


@dataclass
class Inputs:
    """What a rule may read.  ``outlier_ratios()`` runs OWL's pass over the dense model on the
    calibration data (only allocations with ``needs_outliers`` may call it)."""

    n_layers: int
    target: float
    counts: np.ndarray | None = None  # N_i, for allocations with needs_counts
    alpha: float = 2.0
    beta: float = 0.2
    owl_lambda: float = 0.08
    seed: int = 0  # the run's calibration seed (permuted: one permutation per seed)
    outlier_ratios: Callable[[], np.ndarray] | None = None
    # AlphaPruning: the scored matrices as (name, block, size, weight), and its epsilon and mapping
    matrices: Callable[[], list] | None = None
    alpha_epsilon: float = 0.2
    alpha_mapping: str = "matrix"


@dataclass(frozen=True)
class Allocation:
    """One allocation rule: per-block sparsities (block 0 first) and what to record beside them."""

    rule: Callable[[Inputs], tuple[np.ndarray, dict]]
    needs_counts: bool = False  # reads N_i (the density table of the activation domain)
    needs_outliers: bool = False  # reads OWL's outlier ratios (needs calibration data)


def _owl(x: Inputs, lam: float) -> tuple[np.ndarray, dict]:
    lod = x.outlier_ratios()
    return owl_allocation(lod, x.target, lam), {"lod": [float(v) for v in lod], "owl_lambda": float(lam)}


def _paper(x: Inputs) -> np.ndarray:
    return paper_allocation(x.counts, x.target, x.alpha, x.beta)


def _permuted(x: Inputs) -> tuple[np.ndarray, dict]:
    shuffled = permuted_counts(x.counts, x.seed)
    return paper_allocation(shuffled, x.target, x.alpha, x.beta), {"n_active": [int(c) for c in shuffled]}


def _alphapruning(x: Inputs) -> tuple[np.ndarray, dict]:
    """Per-matrix sparsities (recorded in ``matrix_sparsity``); per block, their size-weighted mean."""
    from .alphapruning import alpha_sparsities, matrix_alpha

    mats = x.matrices()
    names = [m[0] for m in mats]
    blocks = np.array([m[1] for m in mats])
    sizes = np.array([m[2] for m in mats], dtype=np.float64)
    alphas = [matrix_alpha(m[3]) for m in mats]
    s = alpha_sparsities(alphas, sizes, x.target, x.alpha_epsilon,
                         blocks if x.alpha_mapping == "block" else None)
    if s.max() >= 1:
        raise AllocationError(f"alphapruning: target {x.target} with epsilon {x.alpha_epsilon} asks a matrix for "
                              f"sparsity {s.max():.3f} >= 1; lower prune.alphapruning.epsilon")
    per_block = np.array([(s[blocks == i] * sizes[blocks == i]).sum() / sizes[blocks == i].sum()
                          for i in range(x.n_layers)])
    return per_block, {"matrix_sparsity": dict(zip(names, map(float, s))),
                       "alpha_hill": dict(zip(names, map(float, alphas))),
                       "alpha_epsilon": float(x.alpha_epsilon), "alpha_mapping": x.alpha_mapping}


# A new allocation is one entry here (the config check and the runs read this table).
ALLOCATIONS: dict[str, Allocation] = {
    "uniform": Allocation(lambda x: (uniform_allocation(x.n_layers, x.target), {})),
    "paper": Allocation(lambda x: (_paper(x), {}), needs_counts=True),
    "owl": Allocation(lambda x: _owl(x, x.owl_lambda), needs_outliers=True),
    "owl_matched": Allocation(lambda x: _owl(x, spread(_paper(x)) / 2), needs_counts=True, needs_outliers=True),
    "depth_ramp": Allocation(lambda x: (depth_ramp_allocation(x.n_layers, x.target, spread(_paper(x))), {}),
                             needs_counts=True),
    "permuted": Allocation(_permuted, needs_counts=True),
    "alphapruning": Allocation(_alphapruning),  # AlphaPruning: heavy-tailed spectra, per matrix (alphapruning.py)
}
NEEDS_COUNTS = tuple(n for n, a in ALLOCATIONS.items() if a.needs_counts)


def allocate(name: str, x: Inputs) -> tuple[np.ndarray, dict]:
    """Per-block sparsities of allocation ``name`` and what it records (``n_active``: the counts
    it was fed; ``lod``, ``owl_lambda``: OWL's)."""
    if name not in ALLOCATIONS:
        raise AllocationError(f"unknown allocation {name!r}; use one of {', '.join(ALLOCATIONS)}")
    a = ALLOCATIONS[name]
    extra: dict = {}
    if a.needs_counts:
        if x.counts is None or len(x.counts) != x.n_layers:
            raise AllocationError(f"allocation {name!r} needs one activated-weight count per block ({x.n_layers}); "
                                  f"got {None if x.counts is None else len(x.counts)}")
        extra["n_active"] = [int(c) for c in x.counts]
    rule, more = a.rule(x)
    return rule, {**extra, **more}
