"""Peak memory and time of a merge of shard stores (`merge_scores`), on LLaMA-2-7B block shapes.

Writes ``--shards`` shard stores of random sums for ``--layers`` decoder blocks (7 matrices each,
4096 x 4096 attention and 11008 x 4096 MLP, float32), then merges them in a child process and
reads its peak resident memory (ru_maxrss).  The streaming merge keeps one matrix at a time, so
its peak should stay near 12 bytes per element of the largest matrix (float64 sum + float32 read,
about 0.5 GB) whatever the number of layers; a merge that holds the whole model grows with it.

Usage:  python benchmarks/bench_merge.py --layers 1 2 4 [--shards 2] [--dir /tmp/bench-merge] [--json out.json]
        [--baseline-src OLD/src]   (also merge with another checkout's code, e.g. a git worktree of
                                    an earlier commit, in the same run)
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SRC = Path(__file__).resolve().parent.parent / "src"
sys.path.insert(0, str(SRC))
from actpat.engine.store import write_store  # noqa: E402

SHAPES = {"self_attn.q_proj": (4096, 4096), "self_attn.k_proj": (4096, 4096), "self_attn.v_proj": (4096, 4096),
          "self_attn.o_proj": (4096, 4096), "mlp.gate_proj": (11008, 4096), "mlp.up_proj": (11008, 4096),
          "mlp.down_proj": (4096, 11008)}

CHILD = """
import sys, time, resource
sys.path.insert(0, sys.argv[1])
from actpat.engine.store import merge_sum_stores
t = time.perf_counter()
merge_sum_stores(sys.argv[3:], sys.argv[2])
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def shard(path: Path, layers: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    weights = [{"name": f"model.layers.{i}.{m}.weight", "layer": i} for i in range(layers) for m in SHAPES]

    def arrays():  # one matrix at a time, like a scoring job's output
        for w in weights:
            yield w["name"], rng.random(SHAPES[w["name"].split(".", 3)[3].rsplit(".", 1)[0]], dtype=np.float32)

    return write_store(path, arrays(), {"model": "llama2-7b-shapes", "domain": "bench", "layers": layers,
                                        "kind": "sum", "n_samples": 16, "weights": weights})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--dir", default="/tmp/bench-merge")
    ap.add_argument("--baseline-src", help="src/ of another checkout to merge with as well")
    ap.add_argument("--json")
    a = ap.parse_args()
    rows = []
    for layers in a.layers:
        d = Path(a.dir) / f"l{layers}"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        paths = [shard(d / f"{k}.zarr", layers, k) for k in range(a.shards)]
        elements = layers * sum(r * c for r, c in SHAPES.values())
        for name, src in [("current", SRC)] + ([("baseline", Path(a.baseline_src))] if a.baseline_src else []):
            shutil.rmtree(d / "mean.zarr", ignore_errors=True)
            t = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", CHILD, str(src), str(d / "mean.zarr"), *map(str, paths)],
                                 check=True, capture_output=True, text=True).stdout.split()
            wall = time.perf_counter() - t
            files = sum(1 for p in (d / "mean.zarr").rglob("*") if p.is_file())
            row = {"code": name, "layers": layers, "shards": a.shards, "store_gb": elements * 4 / 1e9,
                   "merge_s": float(out[0]), "wall_s": wall, "peak_rss_gb": int(out[1]) * 1024 / 1e9, "files": files}
            rows.append(row)
            print(json.dumps(row), flush=True)
        shutil.rmtree(d)
    if a.json:
        Path(a.json).write_text(json.dumps({"rows": rows, "maxrss_units": "KiB (Linux)",
                                            "self_peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6},
                                           indent=1))


if __name__ == "__main__":
    main()
