"""What compiling the blocks' element-wise parts costs a scoring job (GPU).

Each scoring job is a fresh process, so it compiles ``elementwise.py``'s three functions again,
from an empty inductor cache the first time on a machine and from the warm on-disk cache after.
Fresh processes on a LLaMA-2-7B-shaped model (random bf16 weights, 256 tokens): eager twice (the
first also compiles the scorer's Triton kernels), compiled with an empty inductor cache, compiled
with the cache the previous one left.  Each times its first batch (compilation included) and the
next two.

Usage: python benchmarks/bench_compile.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))


def worker(a):
    import torch
    from bench_scoring import IdTokenizer, llama7b_random

    from actpat.engine.scorer import ActivationScorer, ScoreOptions

    m = llama7b_random("cuda", a.layers)
    eng = ActivationScorer(m, IdTokenizer(32000, 256), ScoreOptions(max_tokens=256, thresholds=(1e-5, 1e-4),
                                                                     gram=False, elementwise=a.elementwise))
    times = []
    for k in range(3):
        ids = [f"b{k}s{i}" for i in range(a.batch_size)]
        torch.cuda.synchronize()
        t = time.perf_counter()
        eng.run(ids, ids, batch_size=a.batch_size, progress=False)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    print(json.dumps({"elementwise": a.elementwise, "first_batch_s": times[0], "next_batches_s": times[1:]}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--json")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--elementwise", default="compiled", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        return worker(a)
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache, "TRITON_CACHE_DIR": os.path.join(cache, "triton")}
        # the first eager run also compiles the scorer's own Triton kernels; the second is the baseline
        for label, ew in (("eager, kernels compiled", "eager"), ("eager", "eager"),
                          ("compiled, empty inductor cache", "compiled"), ("compiled, warm cache", "compiled")):
            out = subprocess.run([sys.executable, __file__, "--worker", "--elementwise", ew, "--layers",
                                  str(a.layers), "--batch-size", str(a.batch_size)], env=env, check=True,
                                 capture_output=True, text=True).stdout
            row = {"run": label, **json.loads(out.strip().splitlines()[-1])}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("\n| run | first batch s | next batches s |\n|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r['first_batch_s']:.1f} | {', '.join(f'{t:.2f}' for t in r['next_batches_s'])} |")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
