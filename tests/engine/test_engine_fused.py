"""The Triton kernels (fused; split) against the un-fused computation (Triton interpreter on the CPU).

The interpreter cannot compute with bfloat16 operands (NumPy has no bfloat16), so float32 and
float16 are checked here; benchmarks/gpu_check.py checks bfloat16 on a GPU.
"""

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("triton", reason="the fused kernel is optional; triton is not installed")

from helpers import REPO, TESTS  # noqa: E402

# triton 3.6's interpreter turns scalar tensors into Python ints with int(array of shape (1,)),
# which NumPy >= 2.4 refuses; patch only that conversion (the CUDA path never runs it).
INTERPRETER_PATCH = textwrap.dedent(r"""
    import triton.runtime.interpreter as interp
    _orig = interp._patch_lang_tensor
    def _patched(tensor, scope):
        _orig(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))
    interp._patch_lang_tensor = _patched
""")

SCRIPT = INTERPRETER_PATCH + textwrap.dedent(r"""
    import torch
    from actpat.engine.fused import fused_reduce, split_reduce
    torch.manual_seed(0)
    for (B, T, O, I, dt) in [(3, 7, 20, 33, torch.float32), (2, 5, 40, 16, torch.float16)]:
        x = torch.randn(B, T, I).to(dt)
        d = torch.randn(B, T, O).to(dt)
        W = torch.randn(O, I).to(dt)
        thr = (0.5, 2.0)
        s, s1, s2, c, a16 = fused_reduce(x, d, W, thr, want_a=True, block=(16, 16, 16))
        G = torch.einsum("bto,bti->boi", d.double(), x.double())
        A = (G * W.double()).abs()
        tol = 1e-5 if dt == torch.float32 else 1e-2
        rel = lambda u, v: float((u.double() - v).norm() / v.norm())
        assert rel(s, A.sum(0)) < tol, rel(s, A.sum(0))
        assert rel(s1, A.sum((1, 2))) < tol
        assert rel(s2, (A * A).sum((1, 2))) < tol
        want = torch.stack([(A > t).sum((1, 2)) for t in thr], 1)
        if dt == torch.float32:
            assert torch.equal(c.cpu(), want), (c, want)
        else:  # half-precision operands move a few values across a threshold
            assert (c.cpu() - want).abs().max() <= max(2, int(0.01 * O * I))
        assert rel(a16.float(), A) < 1e-2
        # the running sum of earlier batches, added in the kernel's store and never written
        base = torch.randn(O, I)
        keep = base.clone()
        s_b, *_ = fused_reduce(x, d, W, thr, want_a=False, block=(16, 16, 16), base=base)
        assert torch.equal(base, keep) and rel(s_b, A.sum(0) + base.double()) < tol
        s_b, *_ = split_reduce(x, d, W, thr, want_gram=False, block=16, iters=3, base=base)
        assert torch.equal(base, keep) and rel(s_b, A.sum(0) + base.double()) < max(tol, 2e-3)
        if dt != torch.float32:  # |W| kept in half precision: same sums within half-precision rounding
            s_h, *_ = fused_reduce(x, d, W, thr, want_a=False, block=(16, 16, 16), w_half=True)
            assert rel(s_h, A.sum(0)) < tol
        # plain tile order and loop, or groups of 2: a different schedule, the same numbers
        for kw in ({"group": 0, "flatten": False}, {"group": 2}):
            s_g, s1_g, _, c_g, _ = fused_reduce(x, d, W, thr, want_a=False, block=(16, 16, 16), **kw)
            assert rel(s_g, A.sum(0)) < tol and rel(s1_g, A.sum((1, 2))) < tol and torch.equal(c_g, c)
        # split: G rounded once to the operands' precision, then one pass with the Gram in registers
        F = A.reshape(B, -1)
        for blk, it in ((16, 3), (64, 1)):
            s, s1, s2, c, g = split_reduce(x, d, W, thr, want_gram=True, block=blk, iters=it)
            stol = 1e-5 if dt == torch.float32 else 2e-3
            assert rel(s, A.sum(0)) < stol and rel(s1, A.sum((1, 2))) < stol
            assert rel(s2, (A * A).sum((1, 2))) < stol and rel(g, F @ F.T) < stol, rel(g, F @ F.T)
            if dt == torch.float32:
                assert torch.equal(c.cpu(), want), (c, want)
    # more samples than one 16-row tile of the Gram (padded to 32), thresholds not a power of two
    x, d, W = torch.randn(17, 4, 30), torch.randn(17, 4, 9), torch.randn(9, 30)
    A = (torch.einsum("bto,bti->boi", d.double(), x.double()) * W.double()).abs()
    F = A.reshape(17, -1)
    s, s1, s2, c, g = split_reduce(x, d, W, (0.5, 1.0, 2.0), want_gram=True, block=32, iters=2)
    assert rel(g, F @ F.T) < 1e-5 and rel(s1, F.sum(1)) < 1e-5
    assert torch.equal(c, torch.stack([(F > t).sum(1) for t in (0.5, 1.0, 2.0)], 1))
    # the Gram of A's rows in one pass (any row count up to the padded tile, columns not a whole block)
    from actpat.engine.fused import gram
    for B, N in ((3, 1000), (17, 300)):
        a = torch.rand(B, N)
        g = gram(a, impl="triton", block=64, iters=2)
        assert g.dtype == torch.float64 and rel(g, a.double() @ a.double().T) < 1e-6
    print("ok")
""")


def test_fused_kernel_matches_unfused_in_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    r = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]


def test_chunked_gram_equals_direct_product():
    import torch

    from actpat.engine.fused import gram

    torch.manual_seed(0)
    for n in (3 * 65536, 1000, 8192 * 5):
        x = torch.rand(5, n).to(torch.bfloat16)
        ref = x.double() @ x.double().T
        assert float((gram(x) - ref).abs().max() / ref.abs().max()) < 1e-5


ENGINE_SCRIPT = INTERPRETER_PATCH + textwrap.dedent(r"""
    import numpy as np
    import torch
    from actpat.engine.scorer import ActivationScorer, ScoreOptions
    from helpers.tiny import tiny_llama, tiny_tokenizer
    tok = tiny_tokenizer()
    m = tiny_llama(torch.float16, layers=2)
    texts = ["the cat sat on the mat", "a b c d e f g", "one two three"]
    ids = [str(i) for i in range(3)]
    calls = {"fused": 0, "split": 0}
    based = {"fused": 0, "split": 0}  # calls given the running sum of the earlier batch
    import actpat.engine.fused as F
    for name in calls:
        orig = getattr(F, name + "_reduce")
        def counted(*a, _orig=orig, _name=name, **k):
            calls[_name] += 1
            based[_name] += k.get("base") is not None
            return _orig(*a, **k)
        setattr(F, name + "_reduce", counted)
    res = {}
    for kernel in ("unfused", "fused", "split", "auto"):
        opts = ScoreOptions(max_tokens=16, thresholds=(1e-3,), kernel=kernel)
        # two batches: the second adds the first's sums inside the kernels
        res[kernel] = ActivationScorer(m, tok, opts).run(texts, ids, batch_size=2, progress=False)
    n = len(ActivationScorer(m, tok).weights)
    # fused: one call per matrix and batch; split: the same; auto with the Gram wanted and fp16 operands: fused
    assert calls == {"fused": 4 * n, "split": 2 * n}, (calls, n)
    assert based == {"fused": 2 * n, "split": n}, (based, n)
    u = res["unfused"]
    for kernel in ("fused", "split", "auto"):
        r = res[kernel]
        for k, v in u.sums["all"].items():
            rel = float((r.sums["all"][k].double() - v.double()).norm() / v.double().norm())
            assert rel < 5e-3, (kernel, k, rel)
        s1 = np.abs(np.array(r.s1) - np.array(u.s1)).max() / np.abs(np.array(u.s1)).max()
        assert s1 < 5e-3, (kernel, s1)
        cos = lambda res: np.array([p[5] / np.sqrt(p[6] * p[7]) for p in res.pairs])
        assert np.abs(cos(r) - cos(u)).max() < 5e-3, kernel
    # auto on a Hopper GPU (simulated: the fused kernel stands in for the Gluon one, which has no
    # interpreter): wgmma for every matrix whose rows are whole tiles, its bf16 A making the Gram
    import actpat.engine.wgmma as WG
    wg_calls = []
    plain_fused = F.fused_reduce.__kwdefaults__["_orig"]  # not counted as a call of fused
    def fake_wgmma(x, d, W, thr, want_a=False, base=None):
        wg_calls.append((tuple(W.shape), want_a))
        return plain_fused(x, d, W, thr, want_a, base=base)
    WG.available, WG.wgmma_reduce, WG.a_fits = (lambda x: True), fake_wgmma, (lambda W: W.shape[0] % 64 == 0)
    calls.update(fused=0, split=0)
    for gram in (True, False):
        wg_calls.clear()
        opts = ScoreOptions(max_tokens=16, thresholds=(1e-3,), kernel="auto", gram=gram)
        r = ActivationScorer(m, tok, opts).run(texts, ids, batch_size=2, progress=False)
        fits = sum(w.weight.shape[0] % 64 == 0 for w in ActivationScorer(m, tok).weights)
        # with the Gram: the matrices that fit by wgmma (with A), the rest by fused; without: all by wgmma
        assert len(wg_calls) == 2 * (fits if gram else n) and all(a == gram for _, a in wg_calls), wg_calls
        for k, v in u.sums["all"].items():
            assert float((r.sums["all"][k].double() - v.double()).norm() / v.double().norm()) < 5e-3, k
        assert not gram or np.abs(cos(r) - cos(u)).max() < 5e-3
    assert calls == {"fused": 2 * (n - fits), "split": 0}, calls
    print("ok")
""")


def test_engine_kernels_match_unfused_in_interpreter():
    """The scorer's kernel choice end to end on a tiny fp16 LLaMA: every kernel gives the un-fused numbers."""
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(TESTS)])}
    r = subprocess.run([sys.executable, "-c", ENGINE_SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]


def test_wgmma_kernel_needs_a_hopper_gpu():
    """kernel: wgmma on a machine without a Hopper GPU stops with a message naming the fix."""
    import torch

    from actpat.engine import wgmma
    from actpat.engine.scorer import ActivationScorer, ScoreOptions
    from helpers.tiny import tiny_llama, tiny_tokenizer

    assert not wgmma.available(torch.zeros(2, dtype=torch.bfloat16))  # a CPU tensor
    m = tiny_llama(torch.float16, layers=1)
    eng = ActivationScorer(m, tiny_tokenizer(), ScoreOptions(max_tokens=8, kernel="wgmma"))
    with pytest.raises(RuntimeError, match="Hopper GPU.*use kernel: auto"):
        eng.run(["a b c d"], ["0"], progress=False)


def test_thresholds_are_made_once_per_device():
    """A fresh host-to-device copy per matrix would synchronise the CPU with the GPU each time."""
    import torch

    from actpat.engine.fused import thresholds_on

    a = thresholds_on((1e-5, 1e-4), torch.device("cpu"))
    assert a is thresholds_on((1e-5, 1e-4), torch.device("cpu"))
    assert a is not thresholds_on((1e-5,), torch.device("cpu"))
    assert a.dtype == torch.float32 and a.tolist() == [torch.tensor(1e-5).item(), torch.tensor(1e-4).item()]
    assert thresholds_on((), torch.device("cpu")).tolist() == [0.0]  # the kernels read one value even then


def test_tma_shape_rules():
    import torch

    from actpat.engine import wgmma

    assert wgmma.fits(torch.empty(192, 576)) and not wgmma.fits(torch.empty(100, 30))
    assert wgmma.a_fits(torch.empty(4096, 11008)) and not wgmma.a_fits(torch.empty(576, 1536))
