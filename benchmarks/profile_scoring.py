"""Where one batch of end-to-end scoring spends its GPU time (LLaMA-2-7B shapes, bf16, GPU).

Profiles ``ActivationScorer.run`` with torch.profiler after a warm-up and prints the CUDA kernels
grouped by kind, their share of the wall time, and the time the GPU sat idle (CPU-bound gaps).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from actpat.engine.scorer import ActivationScorer, ScoreOptions  # noqa: E402
from bench_scoring import IdTokenizer, llama7b_random  # noqa: E402

KINDS = [  # (label, substrings of the kernel name), first match wins
    ("per-sample reduction (wgmma)", ("_wgmma_act",)),
    ("per-sample reduction (fused)", ("_fused_act",)),
    ("per-sample reduction (split pass)", ("_reduce_g",)),
    ("compiled element-wise (torch.compile)", ("triton_poi", "triton_red", "triton_per")),
    ("flash attention", ("flash", "fmha", "attention")),
    ("GEMM (forward/backward, bmm)", ("gemm", "sm90_xmma", "cutlass", "nvjet", "ampere", "wgmma")),
    ("reductions (sum)", ("reduce",)),
]


def kind(name: str) -> str:
    low = name.lower()
    for label, keys in KINDS:
        if any(k.lower() in low for k in keys):
            return label
    return "element-wise and other"


def idle_phases(prof, batches):
    """GPU idle time per batch, by the pass phase (scorer._phase) the CPU was in when the GPU got work again:
    a gap ending inside "forward" means the CPU could not launch the forward fast enough, and so on."""
    CUDA = torch.autograd.DeviceType.CUDA
    evs = prof.events()
    # the phases' own spans also appear on the GPU's timeline (as annotations): not kernels
    kern = sorted((e.time_range.start, e.time_range.end) for e in evs
                  if e.device_type == CUDA and not e.name.startswith("actpat."))
    phases = sorted((e.time_range.start, e.time_range.end, e.name[len("actpat."):]) for e in evs
                    if e.device_type != CUDA and e.name.startswith("actpat."))
    out = defaultdict(float)
    end = kern[0][1] if kern else 0
    for s, e in kern[1:]:
        if s > end:  # a gap [end, s]: attribute it to the innermost phase running at s
            where = [p for p in phases if p[0] <= s <= p[1]]
            out[min(where, key=lambda p: p[1] - p[0])[2] if where else "between passes"] += (s - end) / 1e3
        end = max(end, e)
    return {k: round(v / batches, 1) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--B", type=int, default=16)
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--batches", type=int, default=2)
    ap.add_argument("--kernel", default="auto")
    ap.add_argument("--gram", action="store_true")
    ap.add_argument("--elementwise", default="compiled", choices=["auto", "compiled", "eager"])
    ap.add_argument("--json")
    a = ap.parse_args()
    m = llama7b_random("cuda", a.layers)
    tok = IdTokenizer(32000, 256)
    eng = ActivationScorer(m, tok, ScoreOptions(max_tokens=256, thresholds=(1e-5, 1e-4), gram=a.gram,
                                                kernel=a.kernel, elementwise=a.elementwise))
    n = a.B * a.batches
    texts = [f"s{i}" for i in range(n)]
    eng.run(texts, texts, batch_size=a.B, progress=False)  # warm-up: compilation, allocator
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    eng.run(texts, texts, batch_size=a.B, progress=False)
    torch.cuda.synchronize()
    plain = (time.perf_counter() - t0) * 1e3 / a.batches  # without the profiler's own overhead
    acts = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=acts) as prof:
        t0 = time.perf_counter()
        eng.run(texts, texts, batch_size=a.B, progress=False)
        torch.cuda.synchronize()
        wall = (time.perf_counter() - t0) * 1e3 / a.batches
    by_kind = defaultdict(float)
    for e in prof.key_averages():
        t = getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0.0)
        if t and e.device_type == torch.autograd.DeviceType.CUDA and not e.key.startswith("actpat."):
            by_kind[kind(e.key)] += t / 1e3 / a.batches  # us -> ms per batch
    busy = sum(by_kind.values())
    idle_by_phase = idle_phases(prof, a.batches)
    rows = {k: round(v, 1) for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])}
    out = {"kernel": a.kernel, "elementwise": a.elementwise, "gram": a.gram, "B": a.B, "unprofiled_ms_per_batch": plain,
           "unprofiled_samples_per_s": a.B / plain * 1e3, "wall_ms_per_batch": wall, "gpu_busy_ms_per_batch": busy,
           "gpu_idle_ms_per_batch": wall - busy, "samples_per_s": a.B / wall * 1e3, "ms_per_batch_by_kind": rows,
           "gpu_idle_ms_per_batch_by_phase": idle_by_phase}
    print(json.dumps(out, indent=1))
    top = sorted(((e.key, (getattr(e, "device_time_total", 0.0) or 0.0) / 1e3 / a.batches) for e in prof.key_averages()
                  if e.device_type == torch.autograd.DeviceType.CUDA and not e.key.startswith("actpat.")),
                 key=lambda kv: -kv[1])[:15]
    for k, v in top:
        print(f"{v:8.1f} ms  {k[:110]}")
    if a.json:
        Path(a.json).write_text(json.dumps({**out, "top_kernels": top}, indent=1))


if __name__ == "__main__":
    main()
