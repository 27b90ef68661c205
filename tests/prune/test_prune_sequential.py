"""Sequential (block-by-block) pruning on tiny random LLaMA models."""

import pytest
import torch

from helpers.tiny import PRUNING_LLAMA, tiny_llama
from actpat.prune.allocation import pruned_per_row
from actpat.prune.masks import load_masks, save_masks
from actpat.prune.sequential import capture_block_inputs, prune_model


def _ids(n=5, T=24, vocab=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, vocab, (n, T), generator=g)


def test_captured_inputs_are_the_embeddings():
    model = tiny_llama(vocab=128, **PRUNING_LLAMA)
    ids = _ids()
    inp = capture_block_inputs(model, ids, batch_size=2)
    assert [h.shape[0] for h in inp.hidden] == [2, 2, 1]
    torch.testing.assert_close(torch.cat(inp.hidden), model.model.embed_tokens(ids))
    assert "position_embeddings" in inp.kwargs[0]  # transformers 5 blocks need the rotary cos/sin


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_recomputed_inputs_equal_the_pruned_models_hidden_states(method):
    model = tiny_llama(layers=4, vocab=128, **PRUNING_LLAMA)
    ids = _ids()
    seen = {}
    prune_model(model, method=method, target=0.5, calibration_ids=ids, batch_size=2, progress=False,
                on_block_inputs=lambda i, inp: seen.__setitem__(i, torch.cat(inp.hidden).clone()))
    with torch.no_grad():
        hs = model(input_ids=ids, output_hidden_states=True).hidden_states
    assert sorted(seen) == [0, 1, 2, 3, 4]
    for i in range(4):  # hidden_states[i] is the input of block i of the *pruned* model
        torch.testing.assert_close(seen[i], hs[i], atol=1e-5, rtol=1e-5)
    # the last recorded tensor is block 3's output; HF applies the final norm to hidden_states[4]
    torch.testing.assert_close(model.model.norm(seen[4]), hs[4], atol=1e-5, rtol=1e-5)


def test_pruning_changes_later_block_inputs():
    """Block 1 sees the pruned block 0's outputs, not the dense ones (the sequential property)."""
    dense = tiny_llama(layers=3, vocab=128, **PRUNING_LLAMA)
    ids = _ids()
    with torch.no_grad():
        dense_h1 = dense(input_ids=ids, output_hidden_states=True).hidden_states[1]
    seen = {}
    prune_model(tiny_llama(layers=3, vocab=128, **PRUNING_LLAMA), method="wanda", target=0.5, calibration_ids=ids,
                progress=False, on_block_inputs=lambda i, inp: seen.__setitem__(i, torch.cat(inp.hidden).clone()))
    assert (seen[1] - dense_h1).abs().max() > 1e-3


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
@pytest.mark.parametrize("allocation", ["uniform", "paper", "owl"])
def test_achieved_sparsity_global_check(method, allocation):
    model = tiny_llama(layers=3, hidden=64, inter=128, vocab=128, **PRUNING_LLAMA)
    target = 0.6
    res = prune_model(model, method=method, target=target, allocation=allocation, calibration_ids=_ids(),
                      counts=[10, 30, 20], progress=False)
    assert res.allocated == pytest.approx(target, abs=1e-12)  # the rule's mean is the target
    assert res.n_pruned == res.expected_pruned  # every row / matrix / block pruned exactly its count
    # rounding each row down loses at most one weight per row
    rows = sum(p.shape[0] for n, p in model.named_parameters() if ".layers." in n and p.dim() == 2)
    assert 0 <= target * res.n_weights - res.n_pruned <= rows
    zeros = sum(int((p == 0).sum()) for n, p in model.named_parameters() if ".layers." in n and p.dim() == 2)
    assert zeros == res.n_pruned  # the masks are what was applied
    for row in res.layers:
        assert row["achieved"] == row["n_pruned"] / row["n_weights"]
    if method == "wanda":  # per row exactly int(in_features * S_i)
        for name, m in res.masks.items():
            layer = int(name.split(".")[2])
            k = pruned_per_row(m.shape[1], res.layers[layer]["target"])
            assert (m.sum(dim=1) == k).all(), name


def test_paper_allocation_uses_counts_and_owl_records_lod():
    res = prune_model(tiny_llama(layers=3, vocab=128, **PRUNING_LLAMA), method="wanda", target=0.5, allocation="paper",
                      calibration_ids=_ids(), counts=[1, 100, 1], progress=False)
    s = [r["target"] for r in res.layers]
    assert s[1] < 0.5 < s[2]  # the most active block is pruned least
    assert res.extra["n_active"] == [1, 100, 1]
    res = prune_model(tiny_llama(layers=3, vocab=128, **PRUNING_LLAMA), method="wanda", target=0.5, allocation="owl",
                      calibration_ids=_ids(), progress=False)
    assert len(res.extra["lod"]) == 3 and max(r["target"] for r in res.layers) - min(
        r["target"] for r in res.layers) == pytest.approx(0.16)


def test_saved_masks_reproduce_the_pruned_model(tmp_path):
    ids = _ids()
    pruned = tiny_llama(seed=3, vocab=128, **PRUNING_LLAMA)
    res = prune_model(pruned, method="wanda", target=0.5, calibration_ids=ids, progress=False)
    masks, _ = load_masks(save_masks(tmp_path / "m.npz", res.masks))
    fresh = tiny_llama(seed=3, vocab=128, **PRUNING_LLAMA)
    with torch.no_grad():
        for name, p in fresh.named_parameters():
            if name in masks:
                p[torch.from_numpy(masks[name])] = 0
    for (n1, p1), (n2, p2) in zip(pruned.named_parameters(), fresh.named_parameters()):
        assert torch.equal(p1, p2), n1


def test_missing_inputs_are_errors():
    with pytest.raises(RuntimeError, match="calibration"):
        prune_model(tiny_llama(vocab=128, **PRUNING_LLAMA), method="wanda", target=0.5, progress=False)
    with pytest.raises(RuntimeError, match="one activated-weight count per block"):
        prune_model(tiny_llama(vocab=128, **PRUNING_LLAMA), method="magnitude", target=0.5, allocation="paper",
                    counts=[1, 2], progress=False)
