"""The engine on every supported decoder family (tiny random models) against batch-1 autograd."""

import numpy as np
import pytest
import torch

from actpat.engine.reference import batch1_activations
from actpat.engine.scorer import ActivationScorer

from helpers.tiny import tiny_tokenizer

TEXTS = ["The quick brown fox jumps over the lazy dog.", "Question: is the sky blue?\nAnswer:",
         "def add(a, b):\n    return a + b"]


def _config(family):
    import transformers as tf

    small = dict(vocab_size=320, num_hidden_layers=2, num_attention_heads=4, hidden_size=32, intermediate_size=64)
    if family == "qwen2":
        return tf.Qwen2Config(**small, num_key_value_heads=2, max_position_embeddings=128)
    if family == "mistral":
        return tf.MistralConfig(**small, num_key_value_heads=2, max_position_embeddings=128)
    if family == "gemma":
        return tf.GemmaConfig(**small, num_key_value_heads=1, head_dim=8, max_position_embeddings=128)
    if family == "gpt_neox":
        return tf.GPTNeoXConfig(**small, max_position_embeddings=128)
    if family == "opt":
        return tf.OPTConfig(vocab_size=320, num_hidden_layers=2, num_attention_heads=4, hidden_size=32,
                            ffn_dim=64, word_embed_proj_dim=32, max_position_embeddings=128)
    raise ValueError(family)


@pytest.mark.parametrize("family", ["qwen2", "mistral", "gemma", "gpt_neox", "opt"])
def test_family_exact_against_batch1(family):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    cfg = _config(family)
    cfg._attn_implementation = "eager"
    model = AutoModelForCausalLM.from_config(cfg).to(torch.float64).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    tok = tiny_tokenizer()
    sc = ActivationScorer(model, tok)
    assert {w.layer for w in sc.weights} == {0, 1}
    res = sc.run(TEXTS, ["a", "b", "c"], batch_size=3, progress=False)
    ref = [batch1_activations(model, tok, t, sc.weights) for t in TEXTS]
    for w in sc.weights:
        want = sum(r[w.name] for r in ref)
        got = res.sums["all"][w.name]
        assert float((got - want).abs().max() / want.abs().max()) < 1e-10, (family, w.name)
    # the pair Gram of the batch equals dot products of the reference vectors
    layer, ia, _, ib, _, dot, na, nb = res.pairs[0]
    va = torch.cat([ref["abc".index(ia)][w.name].flatten() for w in sc.weights if w.layer == layer])
    vb = torch.cat([ref["abc".index(ib)][w.name].flatten() for w in sc.weights if w.layer == layer])
    assert np.isclose(dot, float(va @ vb), rtol=1e-10)
