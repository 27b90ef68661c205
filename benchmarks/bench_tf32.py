"""TF32 against exact float32 for the pruning-and-evaluation jobs, on a real converted model.

Perplexity of the dense model over the held-out text (the evaluation the pruning jobs run), with
PyTorch's float32 matmul precision ``highest`` and then ``high`` (TF32 tensor cores), same process:
the change in mean NLL and the speed ratio.  Needs a GPU and a run's outputs (the converted model
under resources/models/, the held-out text under results/data/).

Usage:  python benchmarks/bench_tf32.py --model smollm2-135m [--seq 2048] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
from actpat.evaluate.perplexity import make_windows, perplexity  # noqa: E402
from actpat.modelio import load_model  # noqa: E402


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a model name of the run (resources/models/NAME)")
    ap.add_argument("--text", default="results/data/wikitext.heldout.txt")
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--max-windows", type=int, help="default: the whole text")
    ap.add_argument("--json")
    a = ap.parse_args()
    model, tok = load_model(f"resources/models/{a.model}", dtype="float32", device=a.device)
    windows = make_windows(tok, Path(a.text).read_text(), a.seq, a.max_windows, "auto")
    rows = {}
    for precision in ("highest", "high", "highest", "high"):  # twice each: the first pass warms up
        torch.set_float32_matmul_precision(precision)
        sync(a.device)
        t = time.perf_counter()
        with torch.no_grad():
            res = perplexity(model, windows)
        sync(a.device)
        rows[precision] = {"seconds": time.perf_counter() - t, "mean_nll": res["mean_nll"]}
    device = torch.cuda.get_device_name() if a.device.startswith("cuda") else a.device
    out = {"model": a.model, "device": device, "windows": len(windows), "seq": a.seq,
           **rows, "speedup": rows["highest"]["seconds"] / rows["high"]["seconds"],
           "nll_change": rows["high"]["mean_nll"] - rows["highest"]["mean_nll"]}
    print(json.dumps(out))
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
