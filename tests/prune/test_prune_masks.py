"""Mask selection (Wanda, magnitude, SparseGPT) against direct numpy computations."""

import numpy as np
import pytest
import torch
from torch import nn

from actpat.prune.masks import load_masks, magnitude_mask, rowwise_mask, save_masks, wanda_scores
from actpat.prune.sequential import InputStats
from actpat.prune.sparsegpt import sparsegpt_prune
from actpat.modelio import ScoredWeight


def _numpy_wanda_mask(W, X, s):
    """By hand: channel norms over all calibration tokens, |W| * norm, sort each row, take int(in * s)."""
    norm = np.sqrt((X.astype(np.float64) ** 2).sum(axis=0))
    score = np.abs(W.astype(np.float64)) * norm[None, :]
    k = int(W.shape[1] * s)
    mask = np.zeros(W.shape, dtype=bool)
    for r in range(W.shape[0]):
        order = sorted(range(W.shape[1]), key=lambda j: (score[r, j], j))  # hand sort, ties by column
        mask[r, order[:k]] = True
    return mask


@pytest.mark.parametrize("s", [0.25, 0.5, 0.7])
def test_wanda_mask_matches_numpy_through_the_hooks(s):
    torch.manual_seed(0)
    lin = nn.Linear(12, 8, bias=False).requires_grad_(False)
    X = torch.randn(3, 5, 12)  # 3 sequences x 5 tokens
    stats = InputStats([ScoredWeight("w", 0, "lin", lin, False)])
    lin(X)
    stats.remove()
    np.testing.assert_allclose(stats.col_sq_norm("w").numpy(), (X.double() ** 2).sum((0, 1)).numpy() / 3)
    got = rowwise_mask(wanda_scores(lin.weight, stats.col_sq_norm("w")), s).numpy()
    want = _numpy_wanda_mask(lin.weight.numpy(), X.reshape(-1, 12).numpy(), s)
    np.testing.assert_array_equal(got, want)
    assert (got.sum(axis=1) == int(12 * s)).all()  # per row exactly int(in * S)


def test_wanda_ties_break_by_column():
    scores = torch.tensor([[1.0, 1.0, 1.0, 0.5]])
    np.testing.assert_array_equal(rowwise_mask(scores, 0.5).numpy(), [[True, False, False, True]])


def test_magnitude_mask_matches_numpy():
    torch.manual_seed(1)
    W = torch.randn(6, 10)
    got = magnitude_mask(W, 0.45).numpy()
    flat = np.abs(W.numpy()).reshape(-1)
    want = np.zeros(60, dtype=bool)
    want[np.argsort(flat, kind="stable")[:27]] = True
    np.testing.assert_array_equal(got, want.reshape(6, 10))


def test_masks_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    masks = {"model.layers.0.mlp.up_proj.weight": rng.random((7, 13)) < 0.5, "b": rng.random((3, 1)) < 0.5}
    p = save_masks(tmp_path / "m.npz", masks, {"run": "x"})
    back, meta = load_masks(p)
    assert meta == {"run": "x"} and set(back) == set(masks)
    for k in masks:
        np.testing.assert_array_equal(back[k], masks[k])
    with np.load(p) as z:  # bit-packed: ceil(91 / 8) and ceil(3 / 8) bytes
        assert z["model.layers.0.mlp.up_proj.weight"].nbytes == 12 and z["b"].nbytes == 1


def _naive_obs(W, H, s, blocksize, percdamp):
    """Textbook OBS in float64 with explicit inverses of the remaining-columns Hessian (no Cholesky trick).

    Column j (left to right) is pruned or kept; the rest W[:, k>j] absorb the error
    (w_j - q_j) * [Hr^-1]_jk / [Hr^-1]_jj with Hr = H[j:, j:].  Saliency w^2 / [Hr^-1]_jj picks,
    at the start of each block, exactly int(numel * s) weights of the block.
    """
    W = W.astype(np.float64).copy()
    n = W.shape[1]
    H = H + percdamp * np.mean(np.diag(H)) * np.eye(n)
    mask = np.zeros(W.shape, dtype=bool)
    inv_diag = lambda j: np.linalg.inv(H[j:, j:])[0, 0]  # noqa: E731
    for b in range(0, n, blocksize):
        cols = range(b, min(b + blocksize, n))
        score = np.stack([W[:, j] ** 2 / inv_diag(j) for j in cols], axis=1)
        k = int(score.size * s)
        m = np.zeros(score.size, dtype=bool)
        m[np.argsort(score.reshape(-1), kind="stable")[:k]] = True
        mask[:, b:b + len(cols)] = m.reshape(score.shape)
        for j in cols:
            Hinv = np.linalg.inv(H[j:, j:])
            q = np.where(mask[:, j], 0.0, W[:, j])
            W[:, j:] -= np.outer((W[:, j] - q) / Hinv[0, 0], Hinv[0, :])
            W[:, j] = q
    return W, mask


def test_sparsegpt_matches_textbook_obs():
    torch.manual_seed(0)
    W = torch.randn(16, 40)
    X = torch.randn(200, 40) @ torch.randn(40, 40) * 0.3  # correlated inputs: the update matters
    H = (X.T @ X).double()
    new, mask = sparsegpt_prune(W, H, 0.5, blocksize=16, percdamp=0.01)
    want_w, want_mask = _naive_obs(W.numpy(), H.numpy(), 0.5, 16, 0.01)
    np.testing.assert_array_equal(mask.numpy(), want_mask)
    np.testing.assert_allclose(new.numpy(), want_w, atol=2e-4, rtol=1e-4)
    # each 16-column block (16 x 16, 16 x 16, 16 x 8) prunes exactly int(numel * 0.5)
    assert int(mask.sum()) == 128 + 128 + 64
    zeroed = W.clone()
    zeroed[mask] = 0
    assert _recon_error(W, new, X) < _recon_error(W, zeroed, X)


def _recon_error(W, What, X):
    return float(((X @ W.T - X @ What.T) ** 2).sum())


def test_sparsegpt_zero_sparsity_is_identity():
    torch.manual_seed(0)
    W = torch.randn(4, 8)
    X = torch.randn(50, 8)
    new, mask = sparsegpt_prune(W, (X.T @ X).double(), 0.0)
    assert not mask.any()
    torch.testing.assert_close(new, W, atol=1e-5, rtol=1e-5)
