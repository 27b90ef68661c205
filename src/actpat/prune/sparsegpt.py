"""SparseGPT (Frantar & Alistarh 2023): mask selection and weight update from the layer Hessian.

For a linear layer with inputs X, H = X^T X.  Columns are processed left to right in blocks of
128; inside a block the weights with the lowest w^2 / [H^-1]_jj^2 are pruned (an exact count
per block), and the error of every pruned or kept column is spread over the columns to its
right (optimal brain surgeon update), using the upper Cholesky factor of the damped inverse
Hessian.  Follows the reference implementation (``IST-DASLab/sparsegpt``, ``fasterprune``),
except that the block mask zeroes exactly ``int(numel * S)`` weights instead of every weight
``<=`` the k-th value (k+1 or more).
"""

from __future__ import annotations

import torch

from .allocation import pruned_per_row
from .masks import nm_mask


@torch.no_grad()
def sparsegpt_prune(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    sparsity: float,
    blocksize: int = 128,
    percdamp: float = 0.01,
    nm: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (pruned and updated weight [out, in] in the weight's dtype, mask True=pruned).

    ``hessian`` is X^T X summed over calibration tokens (any positive scale: the damping is
    relative to its mean diagonal).  With ``nm = (N, M)`` the mask is N:M instead: as the
    reference code, each group of M columns is chosen when the sweep reaches it, from the
    weights as updated so far (``sparsity`` is then ignored).
    """
    dtype = weight.dtype
    W = weight.detach().clone().float()
    H = hessian.detach().clone().double()
    cols = W.shape[1]
    if nm is not None and (blocksize % nm[1] or cols % nm[1]):
        raise ValueError(f"N:M {nm[0]}:{nm[1]}: blocksize {blocksize} and columns {cols} must be multiples of {nm[1]}")
    if H.shape != (cols, cols):
        raise ValueError(f"Hessian shape {tuple(H.shape)} does not match weight columns {cols}")
    dead = torch.diag(H) == 0  # inputs that never fire: their weights are irrelevant, zero them
    H[dead, dead] = 1
    W[:, dead] = 0
    H += percdamp * torch.mean(torch.diag(H)) * torch.eye(cols, dtype=H.dtype, device=H.device)
    hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True).float()

    mask = torch.zeros_like(W, dtype=torch.bool)
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        W1 = W[:, i1:i2].clone()
        H1 = hinv[i1:i2, i1:i2]
        err1 = torch.zeros_like(W1)
        score = W1 ** 2 / torch.diag(H1).reshape(1, -1) ** 2
        if nm is None:
            k = pruned_per_row(score.numel(), sparsity)
            m1 = torch.zeros(score.numel(), dtype=torch.bool, device=W.device)
            if k:
                m1[torch.sort(score.reshape(-1), stable=True).indices[:k]] = True
            m1 = m1.reshape(score.shape)
        else:
            m1 = torch.zeros_like(W1, dtype=torch.bool)
        for j in range(i2 - i1):
            if nm is not None and j % nm[1] == 0:  # this group's scores from the weights updated so far
                g = W1[:, j:j + nm[1]] ** 2 / torch.diag(H1)[j:j + nm[1]].reshape(1, -1) ** 2
                m1[:, j:j + nm[1]] = nm_mask(g, *nm)
            w = W1[:, j]
            q = w.clone()
            q[m1[:, j]] = 0
            e = (w - q) / H1[j, j]
            W1[:, j:] -= e.unsqueeze(1) @ H1[j, j:].unsqueeze(0)
            W1[:, j] = q  # equal up to rounding after the update; set exactly
            err1[:, j] = e
        W[:, i1:i2] = W1
        mask[:, i1:i2] = m1
        W[:, i2:] -= err1 @ hinv[i1:i2, i2:]
    if nm is None:  # N:M keeps its exact pattern; the dead inputs' weights are zero either way
        mask[:, dead] = True
    W[mask] = 0
    return W.to(dtype), mask
