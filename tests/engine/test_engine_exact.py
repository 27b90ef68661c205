"""The batched engine against the paper's batch-1 autograd computation."""

import numpy as np
import pytest
import torch

from actpat.engine.reference import batch1_activations, layer_vectors, llmdcos
from actpat.engine.scorer import ActivationScorer, ScoreOptions

from helpers.tiny import tiny_gpt2, tiny_llama, tiny_tokenizer

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Question: is the sky blue?\nAnswer:",
    "def add(a, b):\n    return a + b",
    "Sparse activation",
    "A. red B. green C. blue D. yellow Answer:",
]
IDS = [f"s{i}" for i in range(len(TEXTS))]


def _reference(model, tok, weights, texts, target="max_logit", max_tokens=256):
    return [batch1_activations(model, tok, t, weights, target=target, max_tokens=max_tokens) for t in texts]


def _rel(a, b):
    """Relative error ||a - b|| / ||b|| (Frobenius), the usual measure for comparing with a reference."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


@pytest.mark.parametrize("target", ["max_logit", "next_token_logprob", "mean_loss"])
@pytest.mark.parametrize("factory", [tiny_llama, tiny_gpt2])
def test_engine_equals_batch1_float64(factory, target):
    model = factory(torch.float64)
    tok = tiny_tokenizer()
    thr = (1e-3, 1e-2)
    sc = ActivationScorer(model, tok, ScoreOptions(target=target, thresholds=thr))
    res = sc.run(TEXTS, IDS, batch_size=3, progress=False)  # batches of unequal lengths: padding is exercised
    ref = _reference(model, tok, sc.weights, TEXTS, target)
    assert sorted(res.sample_ids) == IDS and not res.excluded  # scored in length order
    at = {sid: j for j, sid in enumerate(res.sample_ids)}
    # mean activation per weight
    for w in sc.weights:
        mean_ref = torch.stack([r[w.name] for r in ref]).mean(0)
        got = res.sums["all"][w.name] / res.n_samples["all"]
        assert _rel(got, mean_ref) < 1e-10, w.name
    # per-sample statistics
    for i, r in enumerate(ref):
        j0 = at[IDS[i]]
        for k, w in enumerate(sc.weights):
            a = r[w.name]
            assert _rel(res.s1[j0][k], a.sum()) < 1e-10
            assert _rel(res.s2[j0][k], (a * a).sum()) < 1e-10
            for j, t in enumerate(thr):
                assert res.counts[j0][k, j] == int((a > t).sum())
    # pairwise LLMDcos for every pair within a batch
    vecs = [layer_vectors(r, sc.weights, sc.n_layers) for r in ref]
    pos = {s: i for i, s in enumerate(IDS)}
    assert res.pairs, "batches of 3 must produce pairs"
    for layer, a, _, b, _, dot, na, nb in res.pairs:
        want = llmdcos(vecs[pos[a]][layer], vecs[pos[b]][layer])
        assert abs(dot / np.sqrt(na * nb) - want) < 1e-10 * max(want, 1e-300)


def test_batch_size_and_order_do_not_change_results():
    model = tiny_llama(torch.float64)
    tok = tiny_tokenizer()
    sc = ActivationScorer(model, tok, ScoreOptions(thresholds=(1e-3,)))
    a = sc.run(TEXTS, IDS, batch_size=1, progress=False)
    b = sc.run(TEXTS, IDS, batch_size=5, progress=False)
    c = sc.run(TEXTS, IDS, batches=[[4, 0], [2, 1, 3]], progress=False)
    for w in sc.weights:  # only the summation order differs (float64 rounding, amplified by cancellation)
        x = a.sums["all"][w.name]
        assert _rel(b.sums["all"][w.name], x) < 1e-10
        assert _rel(c.sums["all"][w.name], x) < 1e-10


def test_float32_engine_close_to_float64_reference():
    model64 = tiny_llama(torch.float64)
    model32 = tiny_llama(torch.float32)
    tok = tiny_tokenizer()
    sc = ActivationScorer(model32, tok, ScoreOptions())
    res = sc.run(TEXTS, IDS, batch_size=2, progress=False)
    ref = _reference(model64, tok, ActivationScorer(model64, tok).weights, TEXTS)
    for w in sc.weights:
        mean_ref = torch.stack([r[w.name] for r in ref]).mean(0)
        assert _rel(res.sums["all"][w.name] / 5, mean_ref) < 1e-5


def test_groups_split_sums_in_mixed_batches():
    model = tiny_llama(torch.float64)
    tok = tiny_tokenizer()
    groups = ["x", "y", "x", "y", "x"]
    sc = ActivationScorer(model, tok)
    res = sc.run(TEXTS, IDS, groups=groups, batches=[[0, 1, 2], [3, 4]], progress=False)
    ref = _reference(model, tok, sc.weights, TEXTS)
    assert res.n_samples == {"x": 3, "y": 2}
    w = sc.weights[4].name
    assert _rel(res.sums["y"][w], ref[1][w] + ref[3][w]) < 1e-12
    cross = [p for p in res.pairs if p[2] != p[4]]
    assert {(p[1], p[3]) for p in cross} == {("s0", "s1"), ("s1", "s2"), ("s3", "s4")}


def test_model_without_pad_token_and_empty_text():
    model = tiny_llama(torch.float64)
    tok = tiny_tokenizer(pad=False)
    assert tok.pad_token_id is None
    sc = ActivationScorer(model, tok)
    res = sc.run(TEXTS[:3], IDS[:3], batch_size=3, progress=False)
    ref = _reference(model, tok, sc.weights, TEXTS[:3])
    w = sc.weights[0].name
    assert _rel(res.sums["all"][w], sum(r[w] for r in ref)) < 1e-10
    with pytest.raises(ValueError, match="'e1'.*empty"):
        sc.run(["fine text", "   "], ["e0", "e1"], progress=False)


def test_truncation_is_counted_and_matches_truncated_reference():
    model = tiny_llama(torch.float64)
    tok = tiny_tokenizer()
    sc = ActivationScorer(model, tok, ScoreOptions(max_tokens=6))
    res = sc.run(TEXTS, IDS, batch_size=5, progress=False)
    long_ids = [i for i, t in zip(IDS, TEXTS) if len(tok(t)["input_ids"]) > 6]
    assert sorted(res.truncated) == sorted(long_ids) and long_ids
    ref = _reference(model, tok, sc.weights, TEXTS, max_tokens=6)
    w = sc.weights[-1].name
    assert _rel(res.sums["all"][w], sum(r[w] for r in ref)) < 1e-10


def test_nonfinite_sample_is_excluded_and_batch_rerun():
    model = tiny_llama(torch.float64)
    tok = tiny_tokenizer()
    sc = ActivationScorer(model, tok)
    # poison one sample: a hook that turns its MLP input into inf (as an fp16 overflow would)
    mlp = model.model.layers[1].mlp.down_proj

    def poison(mod, inp):
        x = inp[0]
        if x.shape[0] == 3:  # only in the first pass of the batch
            x = x.clone()
            x[2, 0, 0] = float("inf")
            return (x,)

    h = mlp.register_forward_pre_hook(poison)
    try:
        res = sc.run(TEXTS, IDS, batches=[[0, 1, 2]], progress=False)
    finally:
        h.remove()
    assert [e[0] for e in res.excluded] == ["s2"]
    assert res.n_samples["all"] == 2
    ref = _reference(model, tok, sc.weights, TEXTS[:2])
    for wname in (sc.weights[0].name, sc.weights[-1].name):
        s = res.sums["all"][wname]
        assert torch.isfinite(s).all()
        assert _rel(s, ref[0][wname] + ref[1][wname]) < 1e-10


def test_nonfinite_gradient_is_detected_per_sample():
    model = tiny_llama(torch.float64)
    tok = tiny_tokenizer()
    sc = ActivationScorer(model, tok)
    block = model.model.layers[2]

    def poison_backward(mod, inp, out):
        h = out[0] if isinstance(out, tuple) else out
        if h.shape[0] == 3:
            def hook(g):
                g = g.clone()
                g[1] = float("nan")  # as an overflowing bf16 backward would
                return g
            h.register_hook(hook)

    hd = block.self_attn.register_forward_hook(poison_backward)
    try:
        res = sc.run(TEXTS, IDS, batches=[[0, 1, 2]], progress=False)
    finally:
        hd.remove()
    assert [e[0] for e in res.excluded] == ["s1"]
    assert "non-finite gradient" in res.excluded[0][1]
    ref = _reference(model, tok, sc.weights, [TEXTS[0], TEXTS[2]])
    w = sc.weights[0].name
    assert _rel(res.sums["all"][w], ref[0][w] + ref[1][w]) < 1e-10


@pytest.mark.parametrize("factory", [tiny_llama, tiny_gpt2])
def test_probes_equal_batch1_float64_at_their_weights(factory):
    """The per-sample activations kept at the probe weights are A(s, w) of the batch-1 reference there."""
    model = factory(torch.float64)
    tok = tiny_tokenizer()
    sc = ActivationScorer(model, tok, ScoreOptions(probe_per_layer=300, probe_seed=4))
    res = sc.run(TEXTS, IDS, batch_size=3, progress=False)
    ref = dict(zip(IDS, _reference(model, tok, sc.weights, TEXTS)))
    sizes = {}
    for k, w in enumerate(sc.weights):
        sizes[w.layer] = sizes.get(w.layer, 0) + len(res.probe_index[k])
        assert len(set(res.probe_index[k].tolist())) == len(res.probe_index[k])  # distinct weights
    assert all(abs(n - 300) <= len(sc.weights) for n in sizes.values())  # ~300 per block, split by size
    for sid, vals in zip(res.sample_ids, res.probes):
        expected = np.concatenate([ref[sid][w.name].reshape(-1).numpy()[res.probe_index[k]]
                                   for k, w in enumerate(sc.weights)])
        assert _rel(vals, expected) < 1e-6
    again = ActivationScorer(model, tok, ScoreOptions(probe_per_layer=300, probe_seed=4)).probe_index
    assert all(np.array_equal(again[k], res.probe_index[k]) for k in again)  # seeded: same weights every job


def test_left_truncation_keeps_the_answer_cue_of_a_long_prompt():
    """A task prompt longer than max_tokens keeps BOS and its end, so D is read at the real last token."""
    model, tok = tiny_llama(torch.float64), tiny_tokenizer()
    prompt = "Question: " + "which of these is the longest option in a very long list " * 20 + "\nA. x\nB. y\nAnswer:"
    full = tok(prompt)["input_ids"]
    sc = ActivationScorer(model, tok, ScoreOptions(max_tokens=32, truncation="left"))
    ids, cut = sc.encode(prompt, "q")
    assert len(full) > 32 and cut == len(full) - 32 and len(ids) == 32
    assert ids[0] == tok.bos_token_id and ids[1:] == full[-31:]
    assert tok.decode(ids[1:]).endswith("Answer:")
    right, _ = ActivationScorer(model, tok, ScoreOptions(max_tokens=32)).encode(prompt, "q")
    assert right == full[:32] and not tok.decode(right).endswith("Answer:")
    res = sc.run([prompt, "short"], ["q", "s"], progress=False)
    assert res.truncated == ["q"] and res.tokens_cut == {"q": cut}
