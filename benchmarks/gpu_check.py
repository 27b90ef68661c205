"""GPU correctness checks of the engine (run on the device before timing anything).

1. tiny LLaMA, float64 on the GPU vs the float64 CPU batch-1 reference (rel. error < 1e-10)
2. tiny LLaMA, float32 on the GPU vs the float64 CPU reference (< 1e-5)
3. LLaMA-2-7B shapes, bf16 engine vs the paper's bf16 batch-1 loop on a few samples (bf16 tolerance);
   the compiled element-wise parts of the blocks against eager PyTorch; every kernel (fused, split,
   wgmma on Hopper) against the un-fused engine, over two batches so that the kernels' in-store
   addition of the running sums is checked too
4. each kernel on one 7B-sized matrix against a float64 reduction, with and without a running sum
"""

import sys
from pathlib import Path

import numpy as np
import torch

root = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(root / "src"))
sys.path.insert(0, str(root / "tests"))

from actpat.engine.reference import batch1_activations  # noqa: E402
from actpat.engine import wgmma  # noqa: E402
from actpat.engine.scorer import ActivationScorer, ScoreOptions  # noqa: E402
from tiny import tiny_llama, tiny_tokenizer  # noqa: E402

TEXTS = ["The quick brown fox jumps over the lazy dog.", "Question: is the sky blue?\nAnswer:",
         "def add(a, b):\n    return a + b", "Sparse activation in deep layers",
         "A. red B. green C. blue D. yellow Answer:"]


def rel(a, b):
    a, b = a.double().cpu(), b.double().cpu()
    return float((a - b).norm() / b.norm())


def check_tiny():
    tok = tiny_tokenizer()
    cpu = tiny_llama(torch.float64)
    ws = ActivationScorer(cpu, tok).weights
    ref = [batch1_activations(cpu, tok, t, ws) for t in TEXTS]
    m64 = tiny_llama(torch.float64).cuda()
    ref_gpu = [batch1_activations(m64, tok, t, ActivationScorer(m64, tok).weights) for t in TEXTS]
    # the blocks' element-wise parts compiled compute LLaMA's float32 RMSNorm with
    # another rounding than eager PyTorch: float32-level agreement, so the 1e-10 check runs them eagerly
    for dtype, ew, refs, tol, what in (
            (torch.float64, "eager", ref_gpu, 1e-10, "float64 batch-1 on the GPU"),
            (torch.float64, "eager", ref, 1e-6, "float64 batch-1 on the CPU (rotary tables are float32)"),
            (torch.float64, "compiled", ref, 1e-6, "float64 batch-1 on the CPU"),
            (torch.float32, "compiled", ref, 1e-5, "float64 batch-1 on the CPU")):
        m = tiny_llama(dtype).cuda()
        res = ActivationScorer(m, tok, ScoreOptions(elementwise=ew)).run(TEXTS, [str(i) for i in range(5)],
                                                                        batch_size=3, progress=False)
        worst = max(rel(res.sums["all"][w.name] / 5, torch.stack([r[w.name] for r in refs]).mean(0)) for w in ws)
        print(f"tiny {dtype} engine ({ew} element-wise) on GPU vs {what}: worst relative error {worst:.2e} "
              f"(tol {tol:g})")
        assert worst < tol


def check_7b(n=6, layers=4):
    sys.path.insert(0, str(root / "benchmarks"))
    from bench_scoring import IdTokenizer, llama7b_random

    m = llama7b_random("cuda", layers)
    tok = IdTokenizer(32000, 256)
    texts = [f"s{i}" for i in range(n)]
    thr = (1e-5, 1e-4)
    runs = {}
    hopper = wgmma.available(torch.empty(1, device="cuda", dtype=torch.bfloat16))
    kernels = ["unfused", "fused", "split"] + (["wgmma"] if hopper else [])
    # every kernel with the Gram (wgmma: its bf16 copy of A), the blocks' element-wise parts compiled; the
    # un-fused engine also with them eager, the paper's loop's arithmetic
    for kernel in kernels + ["unfused/eager"]:
        k, _, ew = kernel.partition("/")
        opts = ScoreOptions(max_tokens=256, thresholds=thr, kernel=k, gram=True, elementwise=ew or "compiled")
        eng = ActivationScorer(m, tok, opts)
        runs[kernel] = eng.run(texts, texts, batch_size=n // 2, progress=False)
    if hopper:  # and the sums alone (no copy of A)
        eng = ActivationScorer(m, tok, ScoreOptions(max_tokens=256, thresholds=thr, kernel="wgmma", gram=False,
                                                    elementwise="compiled"))
        runs["wgmma, no Gram"] = eng.run(texts, texts, batch_size=n // 2, progress=False)
        kernels.append("wgmma, no Gram")
    u = runs["unfused/eager"]
    worst = 0.0
    for w in eng.weights[:: max(1, len(eng.weights) // 8)]:
        refsum = sum(batch1_activations(m, tok, t, [w], max_tokens=256)[w.name].float() for t in texts)
        worst = max(worst, rel(u.sums["all"][w.name], refsum))
    print(f"7B shapes ({layers} layers) bf16: un-fused engine (eager) vs paper's bf16 batch-1 loop, "
          f"worst rel. error {worst:.2e}")
    assert worst < 2e-2
    for kernel, ref in [("unfused", "unfused/eager")] + [(k, "unfused") for k in kernels[1:]]:
        f, u = runs[kernel], runs[ref]
        ws = max(rel(f.sums["all"][w.name], u.sums["all"][w.name]) for w in eng.weights)
        s1 = rel(torch.tensor(np.array(f.s1)), torch.tensor(np.array(u.s1)))
        cnt = np.abs(np.array(f.counts, dtype=np.int64) - np.array(u.counts, dtype=np.int64)).sum() / max(
            1, np.array(u.counts).sum())
        cos_f = [p[5] / np.sqrt(p[6] * p[7]) for p in f.pairs]
        cos_u = [p[5] / np.sqrt(p[6] * p[7]) for p in u.pairs]
        dcos = float(np.abs(np.array(cos_f) - np.array(cos_u)).max()) if f.pairs else 0.0
        print(f"{kernel} vs {ref}: sums {ws:.2e}, per-sample sums {s1:.2e}, counts {cnt:.2e} (fraction moved), "
              f"max |LLMDcos diff| {dcos:.2e}")
        assert ws < 1e-2 and s1 < 1e-2 and cnt < 1e-2 and dcos < 1e-2


def check_kernels_f64():
    """Both kernels against a float64 reduction on one 7B-sized matrix (bf16 operands, exact products)."""
    from actpat.engine.fused import fused_reduce, gram, split_reduce

    torch.manual_seed(3)
    B, T, O, I = 16, 256, 1024, 4096
    x = torch.randn(B, T, I, device="cuda").bfloat16()
    d = (torch.randn(B, T, O, device="cuda") * 1e-3).bfloat16()
    W = (torch.randn(O, I, device="cuda") * 2e-2).bfloat16()
    A = (torch.einsum("bto,bti->boi", d.double(), x.double()) * W.double()).abs()
    F = A.reshape(B, -1)
    thr = (1e-5, 1e-4)
    want = torch.stack([(F > t).sum(1) for t in thr], 1)
    base = torch.randn(O, I, device="cuda")
    runs = [("fused", fused_reduce(x, d, W, thr, False)),
            ("fused, plain tile order and loop", fused_reduce(x, d, W, thr, False, group=0, flatten=False)),
            ("fused + running sum", fused_reduce(x, d, W, thr, False, base=base)),
            ("split", split_reduce(x, d, W, thr, True)),
            ("split + running sum", split_reduce(x, d, W, thr, True, base=base))]
    if wgmma.available(x):
        def with_gram(out):  # the Gram from the kernel's bf16 copy of A, as the scorer makes it
            return (*out[:4], None if out[4] is None else gram(out[4].view(B, -1)))

        runs += [("wgmma", with_gram(wgmma.wgmma_reduce(x, d, W, thr))),
                 ("wgmma, two products in flight, plain tile order",
                  with_gram(wgmma.wgmma_reduce(x, d, W, thr, outstanding=2, group=0))),
                 ("wgmma + A + running sum", with_gram(wgmma.wgmma_reduce(x, d, W, thr, True, base=base))),
                 ("wgmma + A", with_gram(wgmma.wgmma_reduce(x, d, W, thr, True)))]
    for name, out in runs:
        s, s1, s2, c, g = out
        if "running sum" in name:
            s = s - base
        moved = float((c.cpu() - want.cpu()).abs().sum() / want.sum())
        line = (f"{name} vs float64: sums {rel(s, A.sum(0)):.1e}, per-sample {rel(s1, F.sum(1)):.1e}, "
                f"squares {rel(s2, (F * F).sum(1)):.1e}, counts moved {moved:.1e}")
        if g is not None:
            line += f", Gram {rel(g, F @ F.T):.1e}"
        print(line)
        assert rel(s, A.sum(0)) < 1e-2 and rel(s1, F.sum(1)) < 1e-2 and moved < 1e-2
        assert g is None or rel(g, F @ F.T) < 1e-2


if __name__ == "__main__":
    print(torch.__version__, torch.cuda.get_device_name())
    check_tiny()
    check_kernels_f64()
    check_7b()
    print("GPU checks passed")
