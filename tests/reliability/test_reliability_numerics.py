"""Numerics: a real fp16 overflow is detected per sample and reported; accumulators stay float32.

The overflow is genuine (no hook injects it): a tiny fp16 LLaMA whose LM head is scaled up and
one of whose token embeddings is zero.  For a sample whose last hidden state is then tiny, the
final RMSNorm divides the (large) head gradient by that tiny norm and the fp16 backward overflows,
while the forward value D stays finite.  The same weights in float32 have no overflow.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from actpat.engine.scorer import ActivationScorer, ScoreOptions
from actpat.engine.store import ScoreStore, merge_sum_stores, write_store

from helpers.tiny import tiny_llama, tiny_tokenizer

TEXTS = ["The quick brown fox jumps over the lazy dog.", "Question: is the sky blue? Answer: yes",
         "Sparse activation in deep layers!", "def add(a, b):"]  # four different last tokens
IDS = [f"s{i}" for i in range(len(TEXTS))]
HEAD_SCALE = 5000.0


def _overflowing(dtype):
    """The tiny LLaMA with a large head and a zero embedding for the token that ends TEXTS[1]."""
    tok = tiny_tokenizer()
    model = tiny_llama(torch.float32, layers=2)
    zero_token = tok(TEXTS[1])["input_ids"][-1]
    assert [tok(t)["input_ids"][-1] for t in TEXTS].count(zero_token) == 1
    with torch.no_grad():
        torch.manual_seed(1)
        model.model.embed_tokens.weight.normal_(0, 1.0)
        model.model.embed_tokens.weight[zero_token] = 0
        model.lm_head.weight.mul_(HEAD_SCALE)
    return model.to(dtype), tok


def test_fp16_backward_overflow_is_excluded_per_sample_and_batch_rerun(caplog):
    model16, tok = _overflowing(torch.float16)
    sc = ActivationScorer(model16, tok, ScoreOptions(thresholds=(1e-3,)))
    res = sc.run(TEXTS, IDS, batches=[[0, 1, 2, 3]], progress=False)
    # exactly the sample with the tiny final hidden state overflowed, in the backward pass
    assert [e[0] for e in res.excluded] == ["s1"]
    assert res.excluded[0][1].startswith("non-finite gradient in model.layers.")
    assert "sample s1 excluded: non-finite gradient" in caplog.text
    assert res.n_samples["all"] == 3 and sorted(res.sample_ids) == ["s0", "s2", "s3"]
    assert res.passes == 4 + 3  # the batch ran again without s1
    # nothing non-finite reached the results, and the rest equals scoring the three alone
    alone = ActivationScorer(model16, tok, ScoreOptions(thresholds=(1e-3,))).run(
        [TEXTS[i] for i in (0, 2, 3)], ["s0", "s2", "s3"], batches=[[0, 1, 2]], progress=False)
    for w in sc.weights:
        got = res.sums["all"][w.name]
        assert torch.isfinite(got).all() and got.dtype == torch.float32
        assert torch.equal(got, alone.sums["all"][w.name])
    assert all(np.isfinite(s).all() for s in res.s1)


def test_same_weights_in_float32_do_not_overflow():
    model32, tok = _overflowing(torch.float32)
    res = ActivationScorer(model32, tok, ScoreOptions()).run(TEXTS, IDS, batches=[[0, 1, 2, 3]], progress=False)
    assert not res.excluded and res.n_samples["all"] == 4
    # and its gradient for s1 is indeed beyond fp16's range somewhere: that is what overflowed
    sc = ActivationScorer(model32, tok, ScoreOptions(sums=False, gram=False))
    big = {}

    def grab(mod, inp, out):
        out.register_hook(lambda g: big.__setitem__("max", max(big.get("max", 0.0), float(g.abs().max()))))

    hs = [w.module.register_forward_hook(grab) for w in sc.weights]
    try:
        sc.run([TEXTS[1]], ["s1"], batches=[[0]], progress=False)
    finally:
        for h in hs:
            h.remove()
    assert big["max"] > torch.finfo(torch.float16).max


def test_fp16_forward_overflow_is_excluded_per_sample():
    """A forward overflow (D = inf) is caught before the backward pass, for that sample only."""
    tok = tiny_tokenizer()
    model = tiny_llama(torch.float32, layers=2)
    hot = tok(TEXTS[2])["input_ids"][-1]
    with torch.no_grad():
        model.lm_head.weight[hot] = 6.0e4  # this token's logit overflows to +inf or -inf, by the sign of sum(h)
    model = model.half()
    res = ActivationScorer(model, tok).run(TEXTS, IDS, batches=[[0, 1, 2, 3]], progress=False)
    bad = {e[0]: e[1] for e in res.excluded}
    assert bad and res.sample_ids and all("non-finite D (max_logit) in the forward pass" in r for r in bad.values())
    assert set(bad) | set(res.sample_ids) == set(IDS) and not set(bad) & set(res.sample_ids)
    assert all(torch.isfinite(v).all() for v in res.sums["all"].values())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_models_accumulate_in_float32(dtype):
    """Sums across batches stay float32: many batches of one give the one-batch result to float32
    rounding (a bf16/fp16 accumulator would be off by ~1e-3 .. 1e-2 relative)."""
    tok = tiny_tokenizer()
    model = tiny_llama(torch.float32, layers=2).to(dtype)
    texts = [f"{t} {k}" for k in range(3) for t in TEXTS]
    ids = [f"x{i}" for i in range(len(texts))]
    sc = ActivationScorer(model, tok)
    ones = sc.run(texts, ids, batch_size=1, progress=False)
    whole = sc.run(texts, ids, batch_size=len(texts), progress=False)
    worst = 0.0
    for w in sc.weights:
        a, b = ones.sums["all"][w.name], whole.sums["all"][w.name]
        assert a.dtype == torch.float32 and b.dtype == torch.float32
        worst = max(worst, float((a - b).abs().max() / b.abs().max()))
    # per-sample A is identical in both runs up to padding-free float32 reductions; the accumulator adds 12 terms
    assert worst < 1e-5, worst


def test_merge_adds_in_float64(tmp_path):
    """Shard sums are added in float64 and divided once: a float32 running sum would lose the small shard."""
    big = np.full((2, 2), 2.0**24, dtype=np.float32)
    small = np.full((2, 2), 1.0, dtype=np.float32)
    attrs = {"model": "m", "domain": "d", "target": "max_logit", "layers": 1,
             "weights": [{"name": "w", "layer": 0, "matrix": "w", "shape": [2, 2]}]}
    paths = [write_store(tmp_path / f"{i}.zarr", {"w": v}, {**attrs, "kind": "sum", "n_samples": 1})
             for i, v in enumerate([big, small, small])]
    merge_sum_stores(paths, tmp_path / "m.zarr")
    got = ScoreStore(tmp_path / "m.zarr").read("w")
    f32 = np.float32(np.float32(2.0**24) + np.float32(1.0)) + np.float32(1.0)  # float32 drops each +1
    assert f32 == np.float32(2.0**24) and np.float32(f32 / 3) != np.float32(5592406.0)
    np.testing.assert_array_equal(got, np.float32(5592406.0))  # (2^24 + 2) / 3 exactly
