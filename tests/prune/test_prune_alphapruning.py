"""AlphaPruning: the Hill estimator against a float64 reference and a known power law; the allocation."""

import math

import numpy as np
import pytest
import torch

from helpers.tiny import PRUNING_LLAMA, tiny_llama
from actpat.prune.allocation import pruned_per_row
from actpat.prune.alphapruning import alpha_sparsities, hill_alpha, matrix_alpha
from actpat.prune.sequential import prune_model


def _reference_alpha(eigs):
    """Plain float64 loops: every xmin from log10(0.95 p) (the authors' bound, as written) up to 1.5 p,
    p the modal log10-bin's left edge; Hill alpha; KS distance."""
    lam = sorted(float(x) for x in eigs)
    lo, hi = math.log10(lam[0]), math.log10(lam[-1])
    width = (hi - lo) / 100
    counts = [0] * 100
    for x in lam:
        counts[min(int((math.log10(x) - lo) / width), 99)] += 1
    peak = 10 ** (lo + width * counts.index(max(counts)))
    best = None
    for i in range(len(lam) - 1):
        if lam[i] < math.log10(0.95 * peak):
            continue
        if lam[i] > 1.5 * peak:
            break
        tail = lam[i:]
        n = len(tail)
        a = 1 + n / sum(math.log(x / lam[i]) for x in tail)
        if a <= 1:
            continue
        d = max(abs(1 - (x / lam[i]) ** (1 - a) - k / n) for k, x in enumerate(tail))
        if best is None or d < best[0]:
            best = (d, a, lam[i])
    return best[1], best[2], best[0]


def _matrix_with_spectrum(lam, seed=0):
    """W = U diag(sqrt(lam)) V^T with random orthogonal U, V: WᵀW has eigenvalues lam."""
    g = np.random.default_rng(seed)
    n = len(lam)
    U, _ = np.linalg.qr(g.standard_normal((n, n)))
    V, _ = np.linalg.qr(g.standard_normal((n, n)))
    return (U * np.sqrt(lam)) @ V.T


def test_hill_alpha_equals_a_float64_reference():
    g = np.random.default_rng(1)
    bound_bound = 0
    for shape, scale in (((96, 64), 1.0), ((200, 120), 1.0), ((200, 120), 10.0)):
        X = g.standard_normal(shape) / math.sqrt(shape[0])
        X[:, :3] *= 8  # a few spikes, as trained weights have
        eigs = scale * np.linalg.svd(X, compute_uv=False) ** 2
        counts, edges = np.histogram(np.log10(eigs), bins=100)
        bound_bound += int((eigs < np.log10(0.95 * 10 ** edges[np.argmax(counts)])).sum())
        got, ref = hill_alpha(eigs), _reference_alpha(eigs)
        assert got[0] == pytest.approx(ref[0], rel=1e-12) and got[1] == ref[1]
        assert got[2] == pytest.approx(ref[2], rel=1e-12)
    assert bound_bound > 0  # the authors' lower bound excluded some candidates in at least one case


@pytest.mark.parametrize("alpha", [2.5, 4.0])
def test_hill_alpha_recovers_a_known_power_law(alpha):
    n = 400
    u = (np.arange(n) + 0.5) / n  # Pareto quantiles: p(lam) ~ lam^-alpha above 1
    lam = (1 - u) ** (-1 / (alpha - 1))
    assert hill_alpha(lam)[0] == pytest.approx(alpha, abs=0.15)
    W = torch.tensor(_matrix_with_spectrum(lam), dtype=torch.float32)
    assert matrix_alpha(W) == pytest.approx(hill_alpha(lam)[0], rel=2e-3)  # float32 SVD, as the authors


def test_alpha_sparsities_map_linearly_and_keep_the_weighted_mean():
    alphas, sizes = [2.0, 3.0, 4.0, 6.0], [10.0, 30.0, 30.0, 10.0]
    s = alpha_sparsities(alphas, sizes, 0.5, 0.2)
    assert np.dot(s, sizes) / sum(sizes) == pytest.approx(0.5, abs=1e-15)
    ratio = np.array([0.8, 0.9, 1.0, 1.2])  # (a - 2) / 4 * 0.4 + 0.8
    np.testing.assert_allclose(s, ratio * 0.5 * 80 / np.dot(ratio, sizes), rtol=1e-15)
    b = alpha_sparsities(alphas, sizes, 0.5, 0.2, blocks=[0, 0, 1, 1])
    assert b[0] == b[1] and b[2] == b[3] and b[2] > b[0]
    np.testing.assert_array_equal(alpha_sparsities([3, 3], [1, 2], 0.6, 0.3), [0.6, 0.6])


@pytest.mark.parametrize("method", ["magnitude", "wanda"])
def test_alphapruning_prunes_each_matrix_at_its_own_sparsity(method):
    model = tiny_llama(layers=2, hidden=64, inter=128, vocab=128, **PRUNING_LLAMA)
    ids = torch.randint(3, 128, (4, 16), generator=torch.Generator().manual_seed(0))
    res = prune_model(model, method=method, target=0.5, allocation="alphapruning", calibration_ids=ids,
                      progress=False)
    per = res.extra["matrix_sparsity"]
    assert set(per) == set(res.masks) and len(set(np.round(list(per.values()), 12))) > 2
    sizes = {n: m.numel() for n, m in res.masks.items()}
    names = list(res.extra["alpha_hill"])  # each matrix's sparsity is its own alpha's, mapped
    eps = 0.3 if method == "magnitude" else 0.2
    want = alpha_sparsities([res.extra["alpha_hill"][n] for n in names], [sizes[n] for n in names], 0.5, eps)
    np.testing.assert_allclose([per[n] for n in names], want, rtol=1e-12)
    W0 = {n: p.detach() for n, p in tiny_llama(layers=2, hidden=64, inter=128, vocab=128, **PRUNING_LLAMA)
          .named_parameters()}
    assert res.extra["alpha_hill"][names[0]] == matrix_alpha(W0[names[0]])  # alpha of the dense weight
    assert sum(per[n] * sizes[n] for n in per) / sum(sizes.values()) == pytest.approx(0.5, abs=1e-12)
    assert res.n_pruned == res.expected_pruned
    assert res.extra["alpha_epsilon"] == eps
    for name, m in res.masks.items():
        if method == "wanda":  # per row exactly int(in * S_matrix)
            assert (m.sum(dim=1) == pruned_per_row(m.shape[1], per[name])).all(), name
        else:
            assert int(m.sum()) == pruned_per_row(m.numel(), per[name]), name
