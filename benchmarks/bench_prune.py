"""GPU cost of the pruning jobs on LLaMA-2-7B shapes (random bf16 weights).

Times what a `prune_evaluate` / `evaluate_dense` job spends besides loading the weights and the
zero-shot questions: pruning with each method and allocation (the paper's Wanda setting:
128 calibration sequences of 4096 tokens) and perplexity over 4096-token windows.  Random
weights make the perplexities meaningless; only the times and the achieved sparsity count.

Usage:  python benchmarks/bench_prune.py --json out.json            (GPU, 7B shapes)
        python benchmarks/bench_prune.py --shape smollm2 --seq 2048 --windows 106 --precision float32
                                                                    (config/gpu.yaml's models and counts)
        python benchmarks/bench_prune.py --tiny --device cpu        (smoke run, tiny model)

--precision: float32 (exact), tf32 (float32 weights, TF32 tensor-core matmuls) or bfloat16.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "helpers"))

from actpat.evaluate.perplexity import perplexity  # noqa: E402
from actpat.prune.sequential import prune_model  # noqa: E402

RUNS = [("magnitude", "uniform"), ("wanda", "uniform"), ("wanda", "paper"), ("wanda", "owl"),
        ("sparsegpt", "uniform")]


# The decoder shapes of config/gpu.yaml's two models (random weights; timing only).
SHAPES = {
    "smollm2": ("LlamaConfig", dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                                    num_attention_heads=9, num_key_value_heads=3, vocab_size=49152,
                                    max_position_embeddings=8192, tie_word_embeddings=True)),
    "gemma3": ("Gemma3TextConfig", dict(hidden_size=640, intermediate_size=2048, num_hidden_layers=18,
                                        num_attention_heads=4, num_key_value_heads=1, head_dim=256,
                                        vocab_size=262144, max_position_embeddings=32768)),
}


def build(a):
    if a.tiny:
        from tiny import tiny_llama

        return tiny_llama(torch.float32, layers=4).to(a.device), 320
    if a.shape in SHAPES:
        import transformers

        name, kw = SHAPES[a.shape]
        cfg = getattr(transformers, name)(**kw)
        torch.manual_seed(0)
        dtype = torch.bfloat16 if a.precision == "bfloat16" else torch.float32
        with torch.device(a.device):
            m = transformers.AutoModelForCausalLM.from_config(cfg, dtype=dtype)
        m.eval().requires_grad_(False)
        return m, kw["vocab_size"]
    from bench_scoring import llama7b_random

    return llama7b_random(a.device, a.layers), 32000


def sync(dev):
    if str(dev).startswith("cuda"):
        torch.cuda.synchronize()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--shape", choices=["llama7b", *SHAPES], default="llama7b")
    ap.add_argument("--precision", choices=["float32", "tf32", "bfloat16"], default="float32")
    ap.add_argument("--calib", type=int, default=128, help="calibration sequences")
    ap.add_argument("--seq", type=int, default=4096, help="tokens per calibration sequence and per window")
    ap.add_argument("--windows", type=int, default=16, help="perplexity windows")
    ap.add_argument("--sparsity", type=float, default=0.5)
    ap.add_argument("--runs", nargs="+", default=[f"{m}-{al}" for m, al in RUNS])
    ap.add_argument("--json")
    a = ap.parse_args()
    if a.tiny:
        a.seq, a.calib, a.windows = min(a.seq, 64), min(a.calib, 8), min(a.windows, 4)
    torch.backends.cuda.matmul.allow_tf32 = a.precision == "tf32"
    torch.backends.cudnn.allow_tf32 = a.precision == "tf32"
    g = torch.Generator().manual_seed(0)
    rows = []
    for name in ["dense"] + a.runs:
        model, vocab = build(a)
        calib = torch.randint(3, vocab, (a.calib, a.seq), generator=g)
        windows = torch.randint(3, vocab, (a.windows, a.seq), generator=g)
        L = len(model.model.layers)
        row = {"run": name, "shape": a.shape, "precision": a.precision}
        if name != "dense":
            method, alloc = name.split("-")
            counts = [float(L - i) for i in range(L)] if alloc == "paper" else None  # dense shallow, sparse deep
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            sync(a.device)
            t = time.perf_counter()
            res = prune_model(model, method=method, target=a.sparsity, allocation=alloc, calibration_ids=calib,
                              counts=counts, batch_size=8, progress=False)
            sync(a.device)
            row.update(prune_s=time.perf_counter() - t, achieved=res.achieved, target=res.target,
                       prune_peak_gib=torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None)
        t = time.perf_counter()
        with torch.no_grad():
            ppl = perplexity(model, windows)
        sync(a.device)
        row.update(ppl_s=time.perf_counter() - t, ppl_s_per_window=(time.perf_counter() - t) / a.windows,
                   mean_nll=ppl["mean_nll"])
        rows.append(row)
        print(json.dumps(row), flush=True)
        del model
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    print(f"\n{a.shape if not a.tiny else 'tiny'} ({a.precision}): calibration {a.calib} x {a.seq} tokens, "
          f"perplexity over {a.windows} x {a.seq} tokens, target sparsity {a.sparsity}")
    print("| run | prune s | achieved sparsity | peak GiB | perplexity s per window |")
    print("|---|---|---|---|---|")
    for r in rows:
        peak = r.get("prune_peak_gib")
        print(f"| {r['run']} | {r.get('prune_s', 0):.1f} | {r.get('achieved', 0):.4f} | "
              f"{'—' if peak is None else f'{peak:.1f}'} | {r['ppl_s_per_window']:.3f} |")
    if a.json:
        Path(a.json).write_text(json.dumps({"args": vars(a), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
