"""Pruning masks: how weights are chosen inside a matrix, and how masks are stored.

A mask is a boolean array of the weight's shape, **True where the weight is pruned (zeroed)**,
as in Wanda's code.  Masks are stored bit-packed (1 bit per weight) in one ``.npz`` file per
run, so a 135M-parameter model needs about 13 MB per run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from ..atomic import atomic_path
from .allocation import pruned_per_row


def wanda_scores(weight: torch.Tensor, col_sq_norm: torch.Tensor) -> torch.Tensor:
    """Wanda's score |W_ij| * ||X_j||_2, with ``col_sq_norm[j]`` = squared input-channel norm.

    ``weight`` is [out, in]; the running mean over sequences that Wanda keeps
    (``scaler_row``) only rescales every score by one constant, so either form ranks the same.
    """
    return weight.detach().abs().float() * torch.sqrt(col_sq_norm.float()).reshape(1, -1)


def rowwise_mask(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Per output row, mark the ``int(in_features * sparsity)`` lowest scores (Wanda's groups).

    Ties are broken by column index (stable sort), as Wanda's ``torch.sort(stable=True)``.
    """
    k = pruned_per_row(scores.shape[1], sparsity)
    mask = torch.zeros_like(scores, dtype=torch.bool)
    if k:
        idx = torch.sort(scores, dim=1, stable=True).indices[:, :k]
        mask.scatter_(1, idx, True)
    return mask


def parse_nm(nm: str) -> tuple[int, int]:
    """``"2:4"`` -> (2, 4): prune N of every M consecutive input weights of a row."""
    try:
        n, m = (int(x) for x in nm.split(":"))
    except (AttributeError, ValueError):
        raise ValueError(f"N:M pattern {nm!r}: write two integers as 'N:M', e.g. '2:4'") from None
    if not 0 < n < m:
        raise ValueError(f"N:M pattern {nm!r}: need 0 < N < M")
    return n, m


def nm_mask(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """N:M semi-structured mask: in every group of ``m`` consecutive columns of a row, mark the
    ``n`` lowest scores (ties by column index, a stable sort), as Wanda's and SparseGPT's
    ``prune_n:prune_m`` option; 2:4 keeps the half that sparse tensor cores can use."""
    rows, cols = scores.shape
    if cols % m:
        raise ValueError(f"N:M pattern {n}:{m}: {cols} input columns are not a multiple of {m}")
    groups = scores.reshape(rows, cols // m, m)
    idx = torch.sort(groups, dim=2, stable=True).indices[:, :, :n]
    mask = torch.zeros_like(groups, dtype=torch.bool)
    mask.scatter_(2, idx, True)
    return mask.reshape(rows, cols)


def magnitude_mask(weight: torch.Tensor, sparsity: float) -> torch.Tensor:
    """The ``int(numel * sparsity)`` smallest |W| of the whole matrix (one group per matrix).

    Exactly that many weights: Wanda's magnitude code thresholds with ``<=`` at the k-th value
    and so prunes k+1 (more with ties); an exact count keeps the achieved sparsity on target.
    """
    flat = weight.detach().abs().float().reshape(-1)
    k = pruned_per_row(flat.numel(), sparsity)
    mask = torch.zeros_like(flat, dtype=torch.bool)
    if k:
        mask[torch.sort(flat, stable=True).indices[:k]] = True
    return mask.reshape(weight.shape)


@torch.no_grad()
def apply_mask(weight: torch.Tensor, mask: torch.Tensor) -> None:
    weight[mask.to(weight.device)] = 0


# ----------------------------------------------------------------------------- storage


def save_masks(path: str | Path, masks: Mapping[str, torch.Tensor | np.ndarray], meta: dict | None = None) -> Path:
    """Write masks (name -> bool array) bit-packed to ``path`` (.npz), atomically."""
    path = Path(path)
    arrays, shapes = {}, {}
    for name, m in masks.items():
        a = m.detach().cpu().numpy() if isinstance(m, torch.Tensor) else np.asarray(m)
        if a.dtype != np.bool_:
            raise ValueError(f"mask {name!r} has dtype {a.dtype}; expected bool")
        shapes[name] = list(a.shape)
        arrays[name] = np.packbits(a.reshape(-1))
    header = {"format": "actpat-masks-v1", "true_means": "pruned", "shapes": shapes, "meta": meta or {}}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: np.savez would append ".npz"
        np.savez(f, __header__=np.array(json.dumps(header)), **arrays)
    return path


def load_masks(path: str | Path) -> tuple[dict[str, np.ndarray], dict]:
    """Read masks written by ``save_masks``: (name -> bool array, meta)."""
    with np.load(path) as z:
        if "__header__" not in z.files:
            raise ValueError(f"{path} is not an ActPat mask file (no header)")
        header = json.loads(str(z["__header__"]))
        out = {}
        for name, shape in header["shapes"].items():
            n = int(np.prod(shape))
            out[name] = np.unpackbits(z[name], count=n).astype(bool).reshape(shape)
    return out, header["meta"]
