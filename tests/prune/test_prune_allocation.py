"""Per-layer sparsity allocations against published lists and hand computations."""

from fractions import Fraction

import numpy as np
import pytest
import torch
from scipy.optimize import brentq
from scipy.special import logit

from actpat.prune.allocation import (
    depth_ramp_allocation,
    fit_to_target,
    outlier_ratio,
    owl_allocation,
    paper_allocation,
    permuted_counts,
    pruned_per_row,
    spread,
    uniform_allocation,
)
from actpat.prune.sequential import prune_model

# paper.md Appendix A: prune_ori.py::prune_wanda_pro hard-coded lists (layer 1 first, 4 decimals).
LLAMA2_7B = [float(x) for x in """
0.5698 0.5366 0.4802 0.4661 0.4642 0.4663 0.4691 0.4691 0.4688 0.4691 0.4713 0.4779 0.4801 0.4793 0.4799 0.4771
0.4775 0.4791 0.4847 0.4888 0.4885 0.4995 0.5028 0.5121 0.5152 0.5239 0.5270 0.5363 0.5423 0.5575 0.5672 0.5725
""".split()]
LLAMA_7B = [float(x) for x in """
0.5612 0.5393 0.4907 0.4771 0.4689 0.4653 0.4637 0.4638 0.4619 0.4641 0.4648 0.4666 0.4701 0.4753 0.4769 0.4789
0.4776 0.4782 0.4855 0.4907 0.4919 0.5043 0.5021 0.5187 0.5214 0.5246 0.5332 0.5400 0.5508 0.5618 0.5625 0.5680
""".split()]
# paper.md Appendix A: the z-profile recovered from the llama2_7b list (2 decimals).
LLAMA2_7B_Z = [float(x) for x in """
-3.59 -1.59 0.06 0.62 0.78 0.78 0.74 0.78 0.82 0.83 0.78 0.62 0.58 0.61 0.60 0.69 0.68 0.64 0.51 0.42 0.43 0.17 0.10
-0.10 -0.17 -0.36 -0.43 -0.65 -0.80 -1.22 -1.55 -1.76
""".split()]


def invert_paper_list(s_list, S=0.5, alpha=2.0, beta=0.2):
    """Recover z_i from published S_i: N'_i = r_i * c with c fixed by mean(z) = 0 (independent of the code)."""
    s = np.asarray(s_list)
    r = 1 - (s - S) / (beta * S)
    i = np.arange(1, len(s) + 1)
    f = lambda c: np.mean(logit(r * c) - alpha / i)  # noqa: E731
    c = brentq(f, 1e-9, (1 - 1e-12) / r.max())
    return logit(r * c) - alpha / i


@pytest.mark.parametrize("published", [LLAMA2_7B, LLAMA_7B], ids=["llama2_7b", "llama_7b"])
def test_paper_allocation_reproduces_published_lists(published):
    z = invert_paper_list(published)
    assert np.std(z) == pytest.approx(1.0, abs=2e-3)  # population std is 1: the formula is the paper's
    for counts in (z, 2.0e7 + 3.0e6 * z):  # any affine transform of z gives the same z-scores
        got = paper_allocation(counts, 0.5, alpha=2.0, beta=0.2)
        np.testing.assert_allclose(got, published, atol=1e-4)
        assert got.mean() == pytest.approx(0.5, abs=1e-12)


def test_paper_allocation_from_the_two_decimal_z_profile():
    got = paper_allocation(LLAMA2_7B_Z, 0.5)
    np.testing.assert_allclose(got, LLAMA2_7B, atol=1e-3)  # z given to 2 decimals only


def test_paper_allocation_hand_computed_small_case():
    # N = [1, 2, 3]: mean 2, population std sqrt(2/3); i = 1, 2, 3.
    N, S, alpha, beta = [1.0, 2.0, 3.0], 0.6, 1.0, 0.5
    sd = (2 / 3) ** 0.5
    z = [(-1) / sd, 0.0, 1 / sd]
    npr = [1 / (1 + np.exp(-(z[k] + alpha / (k + 1)))) for k in range(3)]
    want = [S + beta * S * (1 - npr[k] * 3 / sum(npr)) for k in range(3)]
    np.testing.assert_allclose(paper_allocation(N, S, alpha, beta), want, rtol=0, atol=1e-15)


def test_paper_allocation_constant_counts_keeps_only_the_depth_term():
    got = paper_allocation([7, 7, 7, 7], 0.5)
    npr = 1 / (1 + np.exp(-2.0 / np.arange(1, 5)))
    np.testing.assert_allclose(got, 0.5 + 0.1 * (1 - npr * 4 / npr.sum()))
    # alpha/i is largest at layer 1, so N'_1 is largest and layer 1 is pruned least.
    assert np.all(np.diff(got) > 0)


def test_owl_allocation_hand_computed():
    lod = [2.0, 4.0, 8.0, 6.0]
    S, lam = Fraction(3, 5), Fraction(2, 25)  # 0.6, 0.08
    scaled = [(Fraction(int(x)) - 2) / 6 * 2 * lam for x in lod]
    mean = sum(scaled) / 4
    want = [float(1 - (sc - mean + (1 - S))) for sc in scaled]  # [0.68, 0.62667, 0.52, 0.57333]
    got = owl_allocation(lod, 0.6, 0.08)
    np.testing.assert_allclose(got, want, atol=1e-15)
    np.testing.assert_allclose(want, [0.68, 0.6266666666666667, 0.52, 0.5733333333333333])
    assert got.mean() == pytest.approx(0.6, abs=1e-15)
    assert got.max() - got.min() == pytest.approx(0.16)  # range 2 * lambda


def test_owl_allocation_equal_lod_is_uniform():
    np.testing.assert_allclose(owl_allocation([3.0, 3.0, 3.0], 0.7), [0.7, 0.7, 0.7])


def test_outlier_ratio_hand_computed():
    a = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 100.0]])
    b = torch.tensor([1.0, 1.0, 1.0, 1.0])
    # mean over all 10 values = 109 / 10 = 10.9; threshold 5 * 10.9 = 54.5; one value above.
    assert outlier_ratio([a, b], 5.0) == pytest.approx(10.0)
    assert outlier_ratio([a, b], 0.05) == pytest.approx(100.0)  # threshold 0.545: all above


def test_fit_to_target_clips_and_shifts():
    s, adjusted = fit_to_target([-0.1, 0.5, 0.9], 0.5)
    # clip -> [0, 0.5, 0.9] (sum 1.4); gap to 3 * 0.5 is +0.1, so every block below 1 rises by 0.1 / 3.
    np.testing.assert_allclose(s, [0.1 / 3, 0.5 + 0.1 / 3, 0.9 + 0.1 / 3])
    assert adjusted and s.mean() == pytest.approx(0.5)


def test_fit_to_target_weighted_and_hitting_the_bound():
    s, adjusted = fit_to_target([0.2, 0.95, 0.95], 0.8, sizes=[2, 1, 1], hi=1.0)
    # weighted mean 0.575 -> need +0.225 * 4 = 0.9 weight units; shift all by 0.225: 0.425, 1.175(clip 1), 1.175(clip 1)
    # then gap = 3.2 - (0.85 + 2) = 0.35 -> the free block (size 2) rises by 0.175 -> 0.6
    np.testing.assert_allclose(s, [0.6, 1.0, 1.0])
    assert adjusted and np.average(s, weights=[2, 1, 1]) == pytest.approx(0.8)


def test_fit_to_target_leaves_exact_rules_alone():
    rule = paper_allocation(LLAMA2_7B_Z, 0.5)
    s, adjusted = fit_to_target(rule, 0.5)
    assert not adjusted and np.array_equal(s, rule)


def test_uniform_and_row_counts():
    np.testing.assert_array_equal(uniform_allocation(3, 0.5), [0.5, 0.5, 0.5])
    assert pruned_per_row(576, 0.6) == 345  # Wanda's int(576 * 0.6)
    assert pruned_per_row(100, 0.29) == 29  # 100 * 0.29 = 28.999999999999996 in floats
    assert pruned_per_row(10, 0.0) == 0
    with pytest.raises(ValueError):
        uniform_allocation(3, 1.0)


# ------------------------------------------------------------------ controls of Validation 1


def test_depth_ramp_has_the_paper_rules_spread_and_mean():
    counts = np.array([5, 40, 38, 36, 30, 22, 15, 10], dtype=float)
    paper = paper_allocation(counts, 0.6)
    width = spread(paper)
    ramp = depth_ramp_allocation(len(counts), 0.6, width)
    # hand form: S + width * (i/(L-1) - 1/2)
    expected = [0.6 + width * (i / 7 - 0.5) for i in range(8)]
    assert np.allclose(ramp, expected, atol=1e-15)
    assert ramp.mean() == pytest.approx(0.6, abs=1e-15)
    assert ramp.max() - ramp.min() == pytest.approx(paper.max() - paper.min(), abs=1e-15)
    assert np.all(np.diff(ramp) > 0)  # rises with depth


def test_permuted_counts_are_a_seeded_shuffle():
    counts = np.arange(10, dtype=float) * 3 + 1
    a, b, c = permuted_counts(counts, 0), permuted_counts(counts, 0), permuted_counts(counts, 1)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert sorted(a) == sorted(counts) and not np.array_equal(a, counts)
    # same values, so the paper rule gives the same multiset of z-scores but a new order
    pa = paper_allocation(a, 0.5)
    assert pa.mean() == pytest.approx(0.5, abs=1e-12)


@pytest.mark.parametrize("allocation", ["owl_matched", "depth_ramp", "permuted"])
def test_prune_model_controls_share_the_paper_rules_range(allocation):
    from helpers.tiny import tiny_llama

    model = tiny_llama(layers=6)  # random weights, 6 blocks
    counts = [3, 50, 44, 40, 20, 10]
    ids = torch.randint(0, model.config.vocab_size, (2, 16))
    res = prune_model(model, method="wanda", target=0.5, allocation=allocation, calibration_ids=ids,
                      counts=counts, permutation_seed=3, progress=False)
    targets = np.array([r["target"] for r in res.layers])
    paper = paper_allocation(counts, 0.5)
    assert targets.mean() == pytest.approx(0.5, abs=1e-12)
    if allocation == "permuted":
        assert np.allclose(targets, paper_allocation(permuted_counts(counts, 3), 0.5))
        assert res.extra["n_active"] == [int(c) for c in permuted_counts(counts, 3)]
    else:  # OWL's range is exactly 2 lambda; the ramp's is the width it was given
        assert spread(targets) == pytest.approx(spread(paper), abs=1e-12)
    if allocation == "owl_matched":
        assert res.extra["owl_lambda"] == pytest.approx(spread(paper) / 2)


def test_an_allocation_is_one_registry_entry(monkeypatch):
    """allocate, the config check and needs_calibration all read ALLOCATIONS."""
    from actpat.config import check_config
    from actpat.prune import allocation as A
    from actpat.prune.sequential import needs_calibration

    ramp = A.Allocation(lambda x: (A.depth_ramp_allocation(x.n_layers, x.target, 0.1), {}))
    monkeypatch.setitem(A.ALLOCATIONS, "fixed_ramp", ramp)
    rule, extra = A.allocate("fixed_ramp", A.Inputs(5, 0.5))
    np.testing.assert_allclose(rule, 0.5 + 0.1 * (np.arange(5) / 4 - 0.5))
    assert extra == {}
    assert not needs_calibration("magnitude", "fixed_ramp") and needs_calibration("magnitude", "owl")
    cfg = {"models": {"m": {"source": "hub", "id": "x/y"}},
           "domains": {"c4": {"source": "spam_assassin", "format": "text"}},
           "prune": {"runs": [{"method": "magnitude", "allocation": ["fixed_ramp"], "sparsity": [0.5]}]},
           "evaluation": {"perplexity": {"domain": "c4"}, "zeroshot": {"domains": []}}}
    check_config(cfg)
    with pytest.raises(ValueError, match=r"prune.runs\[0\].allocation: unknown allocation 'ramp'; known: uniform"):
        check_config({**cfg, "prune": {"runs": [{"method": "magnitude", "allocation": "ramp", "sparsity": [0.5]}]}})
    with pytest.raises(A.AllocationError, match="needs one activated-weight count per block"):
        A.allocate("paper", A.Inputs(5, 0.5))
