"""The compiled element-wise parts of LLaMA-style blocks: what is replaced, and the numbers stay the same."""

import logging

import numpy as np
import pytest
import torch

from actpat.engine import elementwise as ew
from actpat.engine.scorer import ActivationScorer, ScoreOptions
from helpers.tiny import tiny_gpt2, tiny_llama, tiny_tokenizer

TEXTS = ["the cat sat on the mat", "a b c d e f g", "one two three four five"]
IDS = ["0", "1", "2"]


def _run(m, tok, **kw):
    opts = ScoreOptions(max_tokens=16, thresholds=(1e-3,), **kw)
    return ActivationScorer(m, tok, opts).run(TEXTS, IDS, batch_size=2, progress=False)


def _same(a, b, tol=0.0):
    for k, v in a.sums["all"].items():
        assert float((b.sums["all"][k] - v).abs().max()) <= tol * float(v.abs().max()), k
    assert np.allclose(np.array(a.s1), np.array(b.s1), rtol=tol, atol=0)
    assert np.allclose([p[5] for p in a.pairs], [p[5] for p in b.pairs], rtol=tol, atol=0)


def test_llama_blocks_are_replaced_and_restored():
    m = tiny_llama(torch.float64, layers=3)
    import transformers.models.llama.modeling_llama as ml

    rope = ml.apply_rotary_pos_emb
    with ew.compiled_blocks(m, compile=False) as done:
        # 2 norms per block + the final norm; one MLP per block; one model file's rotary function
        assert done == {"rms_norm": 7, "swiglu": 3, "rotary": 1}
        assert ml.apply_rotary_pos_emb is ew.rotary and "forward" in vars(m.model.norm)
    assert ml.apply_rotary_pos_emb is rope
    assert not any("forward" in vars(mod) for mod in m.modules())


def test_other_architectures_are_left_alone():
    """GPT-2 has LayerNorm and GELU; an RMSNorm with other arithmetic (Gemma's 1 + w) is not LLaMA's."""
    class OtherRMSNorm(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(4))
            self.variance_epsilon = 1e-6

        def forward(self, x):
            xf = x.float()
            return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)) * (1 + self.weight)

    for m in (tiny_gpt2(), torch.nn.Sequential(OtherRMSNorm())):
        with ew.compiled_blocks(m, compile=False) as done:
            assert done == {"rms_norm": 0, "swiglu": 0, "rotary": 0}


def test_replacements_compute_the_same_numbers():
    """float64: the replacements (eager) give bit-identical results; traced and compiled through AOT
    autograd (the aot_eager backend: inductor's code generation aside, what runs on a GPU) as well."""
    tok = tiny_tokenizer()
    m = tiny_llama(torch.float64)
    ref = _run(m, tok, elementwise="eager")
    with ew.compiled_blocks(m, compile=False):
        _same(ref, _run(m, tok, elementwise="eager"))
    backend = ew.BACKEND
    ew.BACKEND = "aot_eager"
    ew._FUNCS.update({fn: ew._Compiled(fn) for fn in ew._FUNCS})  # fresh: no compiled function cached
    try:
        _same(ref, _run(m, tok, elementwise="compiled"))
        assert all(c.compiled is not None and not c.failed for c in ew._FUNCS.values())
    finally:
        ew.BACKEND = backend
        ew._FUNCS.update({fn: ew._Compiled(fn) for fn in ew._FUNCS})


def test_failed_compilation_falls_back_to_eager(caplog):
    tok = tiny_tokenizer()
    m = tiny_llama(torch.float64, layers=1)
    ref = _run(m, tok, elementwise="eager")
    backend = ew.BACKEND
    ew.BACKEND = "no-such-backend"
    ew._FUNCS.update({fn: ew._Compiled(fn) for fn in ew._FUNCS})
    try:
        with caplog.at_level(logging.WARNING, logger="actpat.engine.elementwise"):
            _same(ref, _run(m, tok, elementwise="compiled"))
        assert all(c.failed for c in ew._FUNCS.values())
        assert "using eager PyTorch" in caplog.text
    finally:
        ew.BACKEND = backend
        ew._FUNCS.update({fn: ew._Compiled(fn) for fn in ew._FUNCS})


def test_auto_is_eager_on_the_cpu(monkeypatch):
    calls = []
    monkeypatch.setattr(ew, "compiled_blocks", lambda *a, **k: calls.append(1))
    _run(tiny_llama(torch.float64, layers=1), tiny_tokenizer(), elementwise="auto")
    assert calls == []


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="expected auto, compiled or eager"):
        ActivationScorer(tiny_llama(torch.float64, layers=1), tiny_tokenizer(), ScoreOptions(elementwise="on"))


def test_accelerate_device_hooks_are_kept():
    """device_map: accelerate wraps a module's forward per instance and calls its _old_forward after moving
    the inputs; the replacement goes there, so the hook still runs, and everything is restored after."""
    from accelerate.hooks import ModelHook, add_hook_to_module, remove_hook_from_module

    class Count(ModelHook):
        calls = 0

        def pre_forward(self, module, *args, **kwargs):
            Count.calls += 1
            return args, kwargs

    tok = tiny_tokenizer()
    m = tiny_llama(torch.float64, layers=1)
    ref = _run(m, tok, elementwise="eager")
    norm = m.model.norm
    add_hook_to_module(norm, Count())
    wrapper, old = norm.forward, norm._old_forward
    seen = []
    with ew.compiled_blocks(m, compile=False) as done:
        assert done["rms_norm"] == 3 and norm.forward is wrapper and norm._old_forward is not old
        inner = norm._old_forward
        norm._old_forward = lambda x: seen.append(1) or inner(x)
        _same(ref, _run(m, tok, elementwise="eager"))
        assert seen and Count.calls == len(seen)  # the hook ran, then the replacement
    assert norm.forward is wrapper and norm._old_forward == old
    remove_hook_from_module(norm)  # accelerate puts back the method it wrapped: ours is gone
    assert norm.forward == old


def test_other_per_instance_wrappers_are_left_alone():
    m = tiny_llama(torch.float64, layers=1)
    norm = m.model.norm
    wrapper = norm.forward  # a bound method standing in for someone's wrapper
    norm.forward = wrapper
    with ew.compiled_blocks(m, compile=False) as done:
        assert done["rms_norm"] == 2 and norm.forward is wrapper  # the block's two norms, not the final one
    assert norm.forward is wrapper


def test_auto_compiles_only_runs_that_win_the_compilation_back():
    """At 7B (6.5e9 scored weights) compiling pays off after ~2700 samples of 256 tokens, not for one shard."""
    assert not ew.worth_compiling(6_500_000_000, 64 * 256)
    assert not ew.worth_compiling(6_500_000_000, 2000 * 256)
    assert ew.worth_compiling(6_500_000_000, 4000 * 256)
    assert not ew.worth_compiling(135_000_000, 100_000 * 256)  # a 135M model: ~48x fewer FLOPs per token
