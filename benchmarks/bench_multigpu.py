"""Scoring on several GPUs of one host: data-parallel shards and a model split across GPUs.

Data parallel (what the workflow does with `--resources gpu=N`): N worker processes, each
claiming a free GPU with ``actpat.gpus.claim_gpu`` exactly as a `score_shard` job does, score
1/N of the samples of a LLaMA-2-7B-shaped model (random bf16 weights, 256 tokens).  After a
warm-up the workers meet at a barrier, so the timed part is scoring only.  Throughput = all
samples / the slowest worker's time; the merged shard sums must equal the one-GPU sums.

Model split (`device_map`, for models larger than one GPU): the same model with its second
half of blocks, final norm and head on GPU 1, scoring all samples; its sums must equal the
one-GPU run's.

Usage (on a host with 2+ GPUs):  python benchmarks/bench_multigpu.py --gpus 2 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))


class SeededTokenizer:
    """Random token ids that depend only on the text ("s17" -> seed 17), so shards agree."""

    pad_token_id = 0

    def __init__(self, vocab=32000, T=256):
        self.vocab, self.T = vocab, T

    def __call__(self, text, add_special_tokens=True):
        g = torch.Generator().manual_seed(int(text[1:]))
        return {"input_ids": torch.randint(3, self.vocab, (self.T,), generator=g).tolist()}


def score(model, ids, batch_size):
    from actpat.engine.scorer import ActivationScorer, ScoreOptions

    eng = ActivationScorer(model, SeededTokenizer(), ScoreOptions(max_tokens=256, thresholds=(1e-5, 1e-4),
                                                                  gram=False, elementwise="compiled"))
    # warm-up: two batches (the second compiles the kernels' running-sum variants; the first compiles the
    # blocks' element-wise parts)
    eng.run(ids[:2 * batch_size], ids[:2 * batch_size], batch_size=batch_size, progress=False)
    return eng, lambda: eng.run(ids, ids, batch_size=batch_size, progress=False)


def keep(eng, res):
    """The float32 sums of every 16th matrix, on the CPU (enough to check the merge)."""
    return {w.name: res.sums["all"][w.name].cpu() for w in eng.weights[::16]}


def worker(a):
    from bench_scoring import llama7b_random

    from actpat.gpus import claim_gpu

    claimed = claim_gpu(1)
    ids = [f"s{i}" for i in range(a.samples)][a.shard::a.n]
    model = llama7b_random("cuda", a.layers)
    eng, run = score(model, ids, a.batch_size)
    Path(a.out, f"ready{a.shard}").touch()
    while len(list(Path(a.out).glob("ready*"))) < a.n:  # barrier: all workers time the same interval
        time.sleep(0.05)
    torch.cuda.synchronize()
    t = time.perf_counter()
    res = run()
    torch.cuda.synchronize()
    dt = time.perf_counter() - t
    torch.save({"sums": keep(eng, res), "n": len(ids)}, Path(a.out, f"sums{a.shard}.pt"))
    Path(a.out, f"time{a.shard}.json").write_text(json.dumps({"gpu": claimed, "seconds": dt, "samples": len(ids)}))


def data_parallel(n, a):
    out = Path(a.workdir, f"dp{n}")
    out.mkdir(parents=True, exist_ok=True)
    for f in out.iterdir():
        f.unlink()
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env["ACTPAT_GPU_LOCK_DIR"] = str(out / "locks")
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", "--shard", str(i), "--n", str(n),
                               "--samples", str(a.samples), "--layers", str(a.layers), "--batch-size",
                               str(a.batch_size), "--out", str(out)], env=env) for i in range(n)]
    if any(p.wait() for p in procs):
        raise SystemExit(f"a worker of the {n}-GPU run failed")
    times = [json.loads(Path(out, f"time{i}.json").read_text()) for i in range(n)]
    sums = {}
    for i in range(n):
        for k, v in torch.load(Path(out, f"sums{i}.pt"))["sums"].items():
            sums[k] = sums[k] + v.double() if k in sums else v.double()
    slowest = max(t["seconds"] for t in times)
    return {"gpus": n, "gpu_ids": [t["gpu"] for t in times], "samples": a.samples, "seconds": slowest,
            "samples_per_s": a.samples / slowest, "per_worker_samples_per_s": [t["samples"] / t["seconds"]
                                                                              for t in times]}, sums


def split_model(a, ref):
    """Blocks 0..L/2-1 on GPU 0, the rest, the final norm and the head on GPU 1 (accelerate hooks)."""
    from accelerate import dispatch_model
    from bench_scoring import llama7b_random

    model = llama7b_random("cuda:0", a.layers)
    half = a.layers // 2
    dmap = {"lm_head": 1}
    for name, _ in model.model.named_children():
        if name == "layers":
            dmap.update({f"model.layers.{i}": 0 if i < half else 1 for i in range(a.layers)})
        else:
            dmap[f"model.{name}"] = 1 if name == "norm" else 0
    model = dispatch_model(model, device_map=dmap)
    ids = [f"s{i}" for i in range(a.samples)]
    eng, run = score(model, ids, a.batch_size)
    torch.cuda.synchronize()
    t = time.perf_counter()
    res = run()
    for i in range(torch.cuda.device_count()):
        torch.cuda.synchronize(i)
    dt = time.perf_counter() - t
    got = keep(eng, res)
    err = max(float((got[k].double() - ref[k]).norm() / ref[k].norm()) for k in ref)
    devices = sorted({str(w.weight.device) for w in eng.weights})
    return {"mode": "device_map over 2 GPUs", "devices": devices, "samples": a.samples, "seconds": dt,
            "samples_per_s": a.samples / dt, "max_rel_diff_vs_one_gpu": err}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpus", type=int, default=2)
    ap.add_argument("--samples", type=int, default=128)
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--workdir", default="/tmp/actpat-multigpu")
    ap.add_argument("--json")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--shard", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        return worker(a)
    rows = []
    one, ref = data_parallel(1, a)
    rows.append(one)
    print(json.dumps(one), flush=True)
    for n in range(2, a.gpus + 1):
        r, sums = data_parallel(n, a)
        r["speedup_vs_1"] = r["samples_per_s"] / one["samples_per_s"]
        r["efficiency"] = r["speedup_vs_1"] / n
        r["max_rel_diff_merged_vs_one_gpu"] = max(float((sums[k] - ref[k]).norm() / ref[k].norm()) for k in ref)
        rows.append(r)
        print(json.dumps(r), flush=True)
    if a.gpus >= 2:
        r = split_model(a, ref)
        r["speedup_vs_1"] = r["samples_per_s"] / one["samples_per_s"]
        rows.append(r)
        print(json.dumps(r), flush=True)
    print("\n| run | GPUs | samples/s | vs 1 GPU | max rel. diff vs 1 GPU |")
    print("|---|---|---|---|---|")
    for r in rows:
        diff = r.get("max_rel_diff_merged_vs_one_gpu", r.get("max_rel_diff_vs_one_gpu"))
        print(f"| {r.get('mode', 'data-parallel shards')} | {r.get('gpus', 2)} | {r['samples_per_s']:.1f} | "
              f"{r.get('speedup_vs_1', 1.0):.2f}x | {'—' if diff is None else f'{diff:.1e}'} |")
    if a.json:
        Path(a.json).write_text(json.dumps({"torch": torch.__version__, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
