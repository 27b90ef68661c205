"""Reduction kernels on the LLaMA-2-7B matrix shapes (GPU): tile configurations and variants.

For each configuration: check against a float64 reference on a slice, then time with
triton.testing.do_bench (median).  Also times the frozen-weight forward+backward of the
whole 7B-shaped model, the cap on end-to-end throughput.  Prints a table; --json saves it.

  --mode tiles     tile configurations of the fused kernel in its first schedule (plain tile
                   order, nested loops: the first two rounds of NOTES.md)
  --mode variants  schedules of the fused kernel and the split kernel (library GEMM + one
                   reduction pass), for the mean and the Gram reductions (third round)
  --mode wgmma     the Hopper kernel (explicit async wgmma, two accumulators) against the fused
                   kernel's default, after checking it on awkward shapes (fourth round)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import triton

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from actpat.engine.fused import fused_reduce, gram, split_reduce  # noqa: E402
from actpat.engine.wgmma import wgmma_reduce  # noqa: E402

CONFIGS = [  # (BO, BI, BT, warps, stages, |W| kept in bf16)
    (128, 128, 64, 8, 3, False), (128, 128, 64, 8, 3, True), (128, 128, 64, 8, 4, True),
    (128, 128, 128, 8, 3, True), (64, 128, 64, 4, 3, True), (128, 64, 64, 4, 3, True),
    (128, 256, 64, 8, 3, True), (256, 128, 64, 8, 3, True),
]
SHAPES = [(4096, 4096), (11008, 4096), (4096, 11008)]  # (out, in): attention, gate/up, down


def check(cfg, B=4, T=256):
    torch.manual_seed(1)
    O, I = 384, 320
    x = torch.randn(B, T, I, device="cuda", dtype=torch.bfloat16)
    d = torch.randn(B, T, O, device="cuda", dtype=torch.bfloat16)
    W = torch.randn(O, I, device="cuda", dtype=torch.bfloat16)
    s, s1, *_ = fused_reduce(x, d, W, (1.0,), False, block=cfg[:3], num_warps=cfg[3], num_stages=cfg[4],
                             w_half=cfg[5], group=0, flatten=False)
    A = (torch.einsum("bto,bti->boi", d.double(), x.double()) * W.double()).abs()
    return float((s.double() - A.sum(0)).norm() / A.sum(0).norm())


# (name, wants Gram, kwargs of fused_reduce or split_reduce)
VARIANTS = [
    ("fused rowp", False, {}),
    ("fused rowp group8 flat stages4", False, {"group": 8, "flatten": True, "num_stages": 4}),
    ("fused rowp group8 flat stages5", False, {"group": 8, "flatten": True, "num_stages": 5}),
    ("fused rowp group8 flat stages4 BT32", False, {"group": 8, "flatten": True, "num_stages": 4,
                                                    "block": (128, 128, 32)}),
    ("fused rowp group8 flat stages6 BT32", False, {"group": 8, "flatten": True, "num_stages": 6,
                                                    "block": (128, 128, 32)}),
    ("fused rowp group4 flat stages4", False, {"group": 4, "flatten": True, "num_stages": 4}),
    ("fused rowp group16 flat stages4", False, {"group": 16, "flatten": True, "num_stages": 4}),
    ("fused rowp group8 flat stages4 |W| bf16", False, {"group": 8, "flatten": True, "num_stages": 4,
                                                        "w_half": True}),
    ("fused + bf16 Gram group8 flat stages4", True, {"group": 8, "flatten": True, "num_stages": 4}),
    ("split Gram 32x128 w1", True, {"split": True}),
]


def run_variant(x, d, W, want_gram, kw, thr=(1e-5, 1e-4)):
    kw = dict(kw)
    gkw = kw.pop("gram", {})  # kwargs of fused.gram
    if kw.pop("split", False):
        return split_reduce(x, d, W, thr, want_gram, **kw)
    if kw.pop("wgmma", False):
        s, s1, s2, c, a16 = wgmma_reduce(x, d, W, thr, want_gram, **kw)
    else:
        s, s1, s2, c, a16 = fused_reduce(x, d, W, thr, want_gram, **kw)
    return s, s1, s2, c, (gram(a16.view(a16.shape[0], -1), **gkw) if want_gram else None)


def check_variant(want_gram, kw, B=16, T=256):
    torch.manual_seed(1)
    O, I = 384, 320
    x = torch.randn(B, T, I, device="cuda", dtype=torch.bfloat16)
    d = torch.randn(B, T, O, device="cuda", dtype=torch.bfloat16)
    W = torch.randn(O, I, device="cuda", dtype=torch.bfloat16)
    s, s1, s2, c, g = run_variant(x, d, W, want_gram, kw)
    A = (torch.einsum("bto,bti->boi", d.double(), x.double()) * W.double()).abs()
    F = A.reshape(B, -1)
    err = max(float((s.double() - A.sum(0)).norm() / A.sum(0).norm()),
              float((s1.double() - F.sum(1)).norm() / F.sum(1).norm()))
    if g is not None:
        err = max(err, float((g.double() - F @ F.T).norm() / (F @ F.T).norm()))
    return err


def time_shapes(row, make_fn, B, T, layers):
    """Time ``make_fn(O, I)()`` on the three LLaMA-2-7B matrix shapes; add ms, TFLOP/s and the model total."""
    for O, I in SHAPES:
        fn = make_fn(O, I)
        ms = triton.testing.do_bench(fn, warmup=100, rep=500, return_mode="median")
        row[f"{O}x{I}_ms"] = ms
        row[f"{O}x{I}_tflops"] = 2 * B * T * O * I / ms / 1e9
    # one block: 4 attention matrices + 2 x (11008x4096) + 1 x (4096x11008)
    row["model_ms_per_batch"] = layers * (4 * row["4096x4096_ms"] + 2 * row["11008x4096_ms"] + row["4096x11008_ms"])
    return row


def inputs(B, T, O, I, scale=False):
    x = torch.randn(B, T, I, device="cuda", dtype=torch.bfloat16)
    d = torch.randn(B, T, O, device="cuda", dtype=torch.bfloat16) * (1e-3 if scale else 1.0)
    W = torch.randn(O, I, device="cuda", dtype=torch.bfloat16) * (2e-2 if scale else 1.0)
    return x, d, W


def time_variants(table, B, T, layers):
    """Check, then time, each (name, wants Gram, kwargs) of ``table`` on the 7B shapes."""
    rows = []
    for name, want_gram, kw in table:
        def make(O, I, want_gram=want_gram, kw=kw):
            x, d, W = inputs(B, T, O, I, scale=True)
            return lambda: run_variant(x, d, W, want_gram, kw)

        row = {"variant": name, "gram": want_gram, "check_rel_err": check_variant(want_gram, kw)}
        rows.append(time_shapes(row, make, B, T, layers))
        print(json.dumps(row), flush=True)
    return rows


def variants(B, T, layers):
    rows = time_variants(VARIANTS, B, T, layers)

    def bmm_only(O, I):  # the library GEMM alone (stage 1 of split): forming G without any reduction
        x, d, _ = inputs(B, T, O, I)
        return lambda: torch.bmm(d.transpose(1, 2), x)

    rows.append(time_shapes({"variant": "bmm G only (bf16 out)", "gram": False, "check_rel_err": 0.0}, bmm_only,
                            B, T, layers))
    print(json.dumps(rows[-1]), flush=True)
    return rows


WGMMA_VARIANTS = [  # kwargs of wgmma_reduce; "gram": kwargs of fused.gram
    ("fused (default)", False, {}),
    ("wgmma 128x128x64 stages4 out1", False, {"wgmma": True}),
    ("split Gram 32x128 w1", True, {"split": True}),
    ("wgmma + bf16 A by TMA store + Gram (chunked bmm)", True, {"wgmma": True, "gram": {"impl": "bmm"}}),
    ("wgmma + bf16 A by TMA store + Gram (one pass)", True, {"wgmma": True}),
]
GRAM_VARIANTS = [  # the Gram of A's bf16 rows alone: kwargs of fused.gram
    ("chunked bmm", {"impl": "bmm"}),
    ("one pass 256x64 w4", {"impl": "triton", "block": 256, "iters": 64, "num_warps": 4}),
    ("one pass 512x32 w4", {"impl": "triton", "block": 512, "iters": 32, "num_warps": 4}),
    ("one pass 128x128 w2", {"impl": "triton", "block": 128, "iters": 128, "num_warps": 2}),
    ("one pass 1024x16 w8", {"impl": "triton", "block": 1024, "iters": 16, "num_warps": 8}),
    ("one pass 256x16 w4", {"impl": "triton", "block": 256, "iters": 16, "num_warps": 4}),
]


def gram_only(B, T, layers):
    rows = []
    for name, gkw in GRAM_VARIANTS:
        torch.manual_seed(0)
        a = torch.rand(B, 4096 * 1000, device="cuda").bfloat16()
        ref = a.double() @ a.double().T
        err = float((gram(a, **gkw) - ref).norm() / ref.norm())

        def make(O, I, gkw=gkw):
            a = torch.rand(B, O * I, device="cuda").bfloat16()
            return lambda: gram(a, **gkw)

        row = time_shapes({"variant": f"Gram alone: {name}", "gram": True, "check_rel_err": err}, make, B, T, layers)
        row["GB_per_s_up"] = B * 11008 * 4096 * 2 / row["11008x4096_ms"] / 1e6
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def check_wgmma_shapes():
    """The Hopper kernel against float64 on shapes that leave partial tiles and padding."""
    worst = 0.0
    for B, T, O, I in [(1, 64, 128, 128), (3, 100, 200, 72), (16, 256, 384, 320), (5, 130, 1000, 264),
                       (3, 100, 256, 72)]:
        torch.manual_seed(B + T)
        x = torch.randn(B, T, I, device="cuda", dtype=torch.bfloat16)
        d = torch.randn(B, T, O, device="cuda", dtype=torch.bfloat16)
        W = torch.randn(O, I, device="cuda", dtype=torch.bfloat16)
        A = (torch.einsum("bto,bti->boi", d.double(), x.double()) * W.double()).abs()
        F = A.reshape(B, -1)
        thr = (float(F.median()), float(F.quantile(0.9)))
        want_a = O % 128 == 0
        s, s1, s2, c, a16 = wgmma_reduce(x, d, W, thr, want_a)
        ref_c = torch.stack([(F > t).sum(1) for t in thr], 1)
        errs = {"sum": float((s.double() - A.sum(0)).norm() / A.sum(0).norm()),
                "s1": float(((s1.double() - F.sum(1)) / F.sum(1)).abs().max()),
                "s2": float(((s2.double() - (F * F).sum(1)) / (F * F).sum(1)).abs().max()),
                "counts_moved": float((c.cpu() - ref_c.cpu()).abs().sum() / F.numel())}
        if want_a:  # A's bf16 copy and the Gram made from it
            errs["a16"] = float((a16.double() - A).norm() / A.norm())
            g = gram(a16.view(B, -1))
            errs["gram"] = float((g.double() - F @ F.T).norm() / (F @ F.T).norm())
        print(json.dumps({"shape": (B, T, O, I), **errs}), flush=True)
        worst = max(worst, errs["sum"], errs["s1"], errs["s2"], errs.get("a16", 0.0), errs.get("gram", 0.0))
    return worst


def wgmma_mode(B, T, layers):
    print(json.dumps({"wgmma_worst_rel_err": check_wgmma_shapes()}), flush=True)
    return gram_only(B, T, layers) + time_variants(WGMMA_VARIANTS, B, T, layers)


def frozen_fwd_bwd(B, T, layers):
    """ms per batch of the plain forward + backward (frozen weights), with the blocks' element-wise parts
    in eager PyTorch and compiled (``elementwise.compiled_blocks``)."""
    from bench_scoring import llama7b_random

    from actpat.engine.elementwise import compiled_blocks

    m = llama7b_random("cuda", layers)
    ids = torch.randint(3, 32000, (B, T), device="cuda")
    emb = m.get_input_embeddings()
    h = emb.register_forward_hook(lambda mod, i, o: o.requires_grad_(True))

    def step(m=m):
        out = m(input_ids=ids, use_cache=False, logits_to_keep=1)
        out.logits.float().max(-1).values.sum().backward()

    ms = {"eager": triton.testing.do_bench(step, warmup=200, rep=1500, return_mode="median")}
    with compiled_blocks(m):
        step()  # compiles
        ms["compiled"] = triton.testing.do_bench(step, warmup=200, rep=1500, return_mode="median")
    h.remove()
    del step, emb, m  # free the weights before the next measurement
    torch.cuda.empty_cache()
    return ms


def tiles(B, T, layers):
    rows = []
    for cfg in CONFIGS:
        def make(O, I, cfg=cfg):
            x, d, W = inputs(B, T, O, I)
            return lambda: fused_reduce(x, d, W, (1e-5, 1e-4), False, block=cfg[:3], num_warps=cfg[3],
                                        num_stages=cfg[4], w_half=cfg[5], group=0, flatten=False)

        rows.append(time_shapes({"config": cfg, "check_rel_err": check(cfg)}, make, B, T, layers))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--B", type=int, default=16)
    ap.add_argument("--T", type=int, default=256)
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--no-fwd", action="store_true", help="skip timing the frozen forward+backward")
    ap.add_argument("--mode", choices=["tiles", "variants", "wgmma"], default="variants")
    ap.add_argument("--json")
    a = ap.parse_args()
    B, T = a.B, a.T
    rows = {"variants": variants, "tiles": tiles, "wgmma": wgmma_mode}[a.mode](B, T, a.layers)
    fbs = {"eager": 258.7} if a.no_fwd else frozen_fwd_bwd(B, T, a.layers)  # 258.7 ms: measured 2026-11-29
    print(json.dumps({"frozen_fwd_bwd_ms": fbs, "samples_per_s": {k: B / v * 1e3 for k, v in fbs.items()}}),
          flush=True)
    fb = fbs["eager"]
    key = "config" if a.mode == "tiles" else "variant"
    print(f"\n| {key} | check | attn TFLOP/s | up TFLOP/s | down TFLOP/s | kernels ms/batch | predicted samples/s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[key]} | {r['check_rel_err']:.1e} | {r['4096x4096_tflops']:.0f} | "
              f"{r['11008x4096_tflops']:.0f} | {r['4096x11008_tflops']:.0f} | {r['model_ms_per_batch']:.0f} | "
              f"{B / (fb + r['model_ms_per_batch']) * 1e3:.1f} |")
    print(f"\nfrozen forward+backward: {fb:.0f} ms per batch of {B} ({B / fb * 1e3:.1f} samples/s)")
    if a.json:
        Path(a.json).write_text(json.dumps({"rows": rows, "frozen_fwd_bwd_ms": fbs}, indent=2))


if __name__ == "__main__":
    main()
