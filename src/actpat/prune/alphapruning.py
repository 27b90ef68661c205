"""AlphaPruning (Lu et al., NeurIPS 2024): per-matrix sparsity from the heavy tail of the weights' spectrum.

For each weight matrix W, the eigenvalues of WᵀW (the squared singular values, ascending) are
fitted with a power law p(λ) ∝ λ^(-α) above a cut-off xmin, α by the Hill estimator

    α = 1 + n / Σ_{j ≥ i} ln(λ_j / λ_i),   n = N - i,  xmin = λ_i,

and xmin chosen among the candidates by the smallest Kolmogorov-Smirnov distance between the
tail and the fitted law (the ``xmin_peak`` variant the authors' allocations use): candidates run
up to 1.5 × the peak p (the left edge of the modal bin of a 100-bin histogram of log10 λ).  The
authors' code bounds them below by log10(0.95 p), a log-scale number compared with linear
eigenvalues (so the bound is loose, and binds only when p > 1/0.95); we reproduce that as written.

The α of every matrix is mapped linearly to [1 - ε, 1 + ε] (the largest α, the least
heavy-tailed matrix, gets 1 + ε: pruned most) and scaled by one factor so that the
parameter-weighted mean sparsity equals the target.  ε is 0.3 for magnitude and 0.2 for Wanda
and SparseGPT in the authors' scripts.  ``mapping: block`` gives every matrix of a block the
mean α of the block first.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .allocation import AllocationError

# The authors' scripts (llama_7b.sh); the activation-score methods take Wanda's 0.2.
EPSILON = {"magnitude": 0.3, "wanda": 0.2, "sparsegpt": 0.2}


def hill_alpha(eigs: np.ndarray, bins: int = 100) -> tuple[float, float, float]:
    """(α, xmin, KS distance) of the power-law tail of ``eigs`` (any order, all > 0)."""
    lam = np.sort(np.asarray(eigs, dtype=np.float64))
    if lam.size < 3 or lam[0] <= 0:
        raise AllocationError(f"need at least 3 positive eigenvalues, got {lam.size} (smallest {lam[:1]})")
    log_lam = np.log(lam)
    counts, edges = np.histogram(np.log10(lam), bins=bins, range=(np.log10(lam[0]), np.log10(lam[-1])))
    peak = 10 ** edges[np.argmax(counts)]  # the left edge of the modal bin
    x_min, x_max = np.log10(0.95 * peak), 1.5 * peak  # as the authors' code (see the module docstring)
    N = lam.size
    best = (np.inf, None, None)  # (D, alpha, xmin): the first candidate with the smallest D wins
    for i in range(N - 1):
        if lam[i] < x_min:
            continue
        if lam[i] > x_max:
            break
        n = N - i
        alpha = 1 + n / (log_lam[i:].sum() - n * log_lam[i])
        if alpha <= 1:
            continue
        D = np.max(np.abs(1 - (lam[i:] / lam[i]) ** (1 - alpha) - np.arange(n) / n))
        if D < best[0]:
            best = (D, alpha, lam[i])
    if best[1] is None:
        raise AllocationError("alphapruning: no power-law tail with alpha > 1 among the candidates")
    return float(best[1]), float(best[2]), float(best[0])


def matrix_alpha(weight: torch.Tensor) -> float:
    """α of one weight matrix (eigenvalues of WᵀW from float32 singular values, as the authors)."""
    s = torch.linalg.svdvals(weight.detach().float()).double().cpu().numpy()
    return hill_alpha(s ** 2)[0]


def alpha_sparsities(alphas: Sequence[float], sizes: Sequence[float], target: float, epsilon: float,
                     blocks: Sequence[int] | None = None) -> np.ndarray:
    """Per-matrix sparsity: α mapped to [1 - ε, 1 + ε], scaled so sum(size * S) = target * sum(size).

    ``blocks`` (the block of each matrix) first replaces each α by its block's mean (``mapping: block``).
    """
    a = np.asarray(alphas, dtype=np.float64)
    w = np.asarray(sizes, dtype=np.float64)
    if blocks is not None:
        b = np.asarray(blocks)
        a = np.array([a[b == k].mean() for k in b])
    span = a.max() - a.min()
    ratio = np.ones_like(a) if span == 0 else (a - a.min()) / span * 2 * epsilon + (1 - epsilon)
    return ratio * target * w.sum() / (w * ratio).sum()
