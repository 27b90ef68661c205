"""The real payoff of 2:4 sparsity: pruned linear layers through PyTorch's semi-structured sparse
tensors (cuSPARSELt kernels) against the dense layers, on a GPU.

For each weight shape of a LLaMA-2-7B block (and of SmolLM2-135M), a random fp16/bf16 weight is
pruned 2:4 by magnitude with ``actpat.prune.masks.nm_mask``, converted with
``to_sparse_semi_structured``, and ``F.linear`` is timed for prefill (2048 tokens) and decode
(1-16 tokens; PyTorch pads inputs below the kernels' minimum itself, and that cost is timed) against
the dense masked weight.  cuSPARSELt only: PyTorch's CUTLASS kernels run on compute capability 8.x.
Every output is checked against the dense masked product.

Usage:  python benchmarks/bench_semistructured.py [--dtype float16] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
from actpat.prune.masks import nm_mask  # noqa: E402

SHAPES = {  # (out, in) of the linear layers of one decoder block
    "llama2-7b": {"q/k/v/o": (4096, 4096), "gate/up": (11008, 4096), "down": (4096, 11008)},
    "smollm2-135m": {"q/o": (576, 576), "gate/up": (1536, 576), "down": (576, 1536)},
}
TOKENS = {"prefill": 2048, "decode-1": 1, "decode-8": 8, "decode-16": 16}


def timed(fn, reps: int = 50) -> float:
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / reps * 1e3  # microseconds


def main() -> None:
    from torch.sparse import SparseSemiStructuredTensor, to_sparse_semi_structured

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtype", choices=["float16", "bfloat16"], default="float16")
    ap.add_argument("--json")
    a = ap.parse_args()
    SparseSemiStructuredTensor._FORCE_CUTLASS = False  # cuSPARSELt (CUTLASS: compute capability 8.x only)
    dtype = getattr(torch, a.dtype)
    g = torch.Generator(device="cuda").manual_seed(0)
    rows = []
    for model, shapes in SHAPES.items():
        for name, (out_f, in_f) in shapes.items():
            W = torch.randn(out_f, in_f, device="cuda", dtype=dtype, generator=g)
            W = W.masked_fill(nm_mask(W.abs().float(), 2, 4), 0)
            Ws = to_sparse_semi_structured(W)
            for phase, t in TOKENS.items():
                x = torch.randn(t, in_f, device="cuda", dtype=dtype, generator=g)
                dense, sparse = F.linear(x, W), F.linear(x, Ws)
                err = ((sparse.float() - dense.float()).abs().max() / dense.float().abs().max()).item()
                td, ts = timed(lambda: F.linear(x, W)), timed(lambda: F.linear(x, Ws))
                row = {"model": model, "layer": name, "shape": [out_f, in_f], "phase": phase, "tokens": t,
                       "dense_us": td, "sparse_us": ts, "speedup": td / ts,
                       "max_rel_err": err, "dtype": a.dtype, "backend": "cusparselt"}
                rows.append(row)
                print(f"{model:>13} {name:>8} {str((out_f, in_f)):>14} {phase:>9}: dense {td:8.1f} us, "
                      f"2:4 {ts:8.1f} us, x{td / ts:.2f}, max rel err {err:.1e}", flush=True)
                assert err < 2e-2, f"2:4 output differs from the dense masked product by {err}"
    if a.json:
        Path(a.json).write_text(json.dumps({"device": torch.cuda.get_device_name(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
