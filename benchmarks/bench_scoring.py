"""Scoring speed: the paper's batch-1 loop against the batched engine, side by side in one run.

Suites (issue 3):
  a  mean-activation scoring of N samples of T tokens (CPU default: the shipped model, 64 x 128)
  b  all-pairs LLMDcos of 4 domains x 16 samples: the paper's per-pair loop (2 passes per pair)
     against the engine's block plan (exact Gram of every pair sharing a pass)
  c  the same as (a) on a GPU for a LLaMA-2-7B-shaped model with random bf16 weights, 256 tokens,
     mean reduction and Gram reduction

Usage:
  python benchmarks/bench_scoring.py --suite a b            # CPU, shipped model
  python benchmarks/bench_scoring.py --suite c --device cuda # GPU, 7B shapes

Prints samples/s, speed-up and peak memory; --json writes the numbers.  Reference loops
on large sets are measured on a prefix (--ref-samples) and reported per sample: their
cost per sample is constant, so the ratio is what one run measures.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from actpat.engine import plan  # noqa: E402
from actpat.engine.reference import batch1_activations, layer_vectors, llmdcos  # noqa: E402
from actpat.engine.scorer import ActivationScorer, ScoreOptions  # noqa: E402


def sync(dev):
    if dev == "cuda":
        torch.cuda.synchronize()


def peak_gib(dev):
    if dev == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def reset_peak(dev):
    if dev == "cuda":
        torch.cuda.reset_peak_memory_stats()


def timed(fn, dev, repeats=1):
    out = []
    for _ in range(repeats):
        sync(dev)
        t = time.perf_counter()
        fn()
        sync(dev)
        out.append(time.perf_counter() - t)
    return statistics.median(out)


# ----------------------------------------------------------------------------- inputs


def shipped_model(path):
    from actpat.modelio import load_model

    return load_model(path)


def texts_from_assets(n, words, offset=0):
    """Real text: Wikipedia leads from the offline asset, cut to `words` words."""
    p = Path("resources/assets/wiki-offline/summaries_en-us.json")
    docs = [v["extract"] for v in json.loads(p.read_text()).values() if len(v["extract"].split()) >= words]
    return [" ".join(d.split()[:words]) for d in docs[offset:offset + n]]


class IdTokenizer:
    """Random token ids as 'text' for random-weight models (no tokenizer needed)."""

    pad_token_id = 0

    def __init__(self, vocab, T, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.vocab, self.T, self.g = vocab, T, g
        self.cache = {}

    def __call__(self, text, add_special_tokens=True):
        if text not in self.cache:
            self.cache[text] = torch.randint(3, self.vocab, (self.T,), generator=self.g).tolist()
        return {"input_ids": self.cache[text]}


def llama7b_random(dev, layers=32):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=layers, num_attention_heads=32,
                      num_key_value_heads=32, vocab_size=32000, max_position_embeddings=4096,
                      attn_implementation="sdpa")
    torch.manual_seed(0)
    with torch.device(dev):
        torch.set_default_dtype(torch.bfloat16)
        try:
            m = LlamaForCausalLM(cfg)
        finally:
            torch.set_default_dtype(torch.float32)
    m.eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


# ----------------------------------------------------------------------------- suites


def ref_mean(model, tok, weights, texts, max_tokens):
    """The paper's loop: batch 1, .grad * W, |.| accumulated in float32."""
    acc = {w.name: torch.zeros(w.weight.shape, dtype=torch.float32, device=w.weight.device) for w in weights}
    for t in texts:
        a = batch1_activations(model, tok, t, weights, max_tokens=max_tokens)
        for k, v in a.items():
            acc[k] += v.float()
    return acc


def suite_mean(model, tok, texts, dev, max_tokens, batch_size, ref_n, label, flops_per_sample=None, gram=False,
               thresholds=(1e-5, 1e-4), repeats=1, kernel="auto", elementwise="auto"):
    eng = ActivationScorer(model, tok, ScoreOptions(max_tokens=max_tokens, thresholds=thresholds, gram=gram,
                                                    kernel=kernel, elementwise=elementwise))
    ids = [str(i) for i in range(len(texts))]
    # warm-up (allocator, kernels): two batches, since the second compiles the kernels' running-sum variants
    eng.run(texts[:2 * batch_size], ids[:2 * batch_size], batch_size=batch_size, progress=False)
    ref_mean(model, tok, eng.weights, texts[:1], max_tokens)
    reset_peak(dev)
    t_ref = timed(lambda: ref_mean(model, tok, eng.weights, texts[:ref_n], max_tokens), dev, repeats)
    p_ref = peak_gib(dev)
    reset_peak(dev)
    t_eng = timed(lambda: eng.run(texts, ids, batch_size=batch_size, progress=False), dev, repeats)
    p_eng = peak_gib(dev)
    ref_sps = ref_n / t_ref
    eng_sps = len(texts) / t_eng
    row = {"suite": label, "samples": len(texts), "batch_size": batch_size, "ref_samples": ref_n,
           "ref_samples_per_s": ref_sps, "engine_samples_per_s": eng_sps, "speedup": eng_sps / ref_sps,
           "ref_peak_gib": p_ref, "engine_peak_gib": p_eng, "gram": gram}
    if flops_per_sample:
        row["engine_tflops"] = eng_sps * flops_per_sample / 1e12
    return row


def suite_pairs(model, tok, domains, dev, max_tokens, block, ref_pairs):
    """All pairs of 4 domains x 16 samples: per-pair reference vs block plan."""
    texts = [t for d in domains for t in d]
    n = len(texts)
    pairs = list(itertools.combinations(range(n), 2))
    eng = ActivationScorer(model, tok, ScoreOptions(max_tokens=max_tokens, sums=False, stats=False, gram=True))
    batches = plan.pair_cover(pairs, block)
    ids = [str(i) for i in range(n)]
    eng.run(texts[:2], ids[:2], progress=False)
    reset_peak(dev)
    t_eng = timed(lambda: eng.run(texts, ids, batches=batches, progress=False), dev)
    p_eng = peak_gib(dev)

    def ref():
        for a, b in pairs[:ref_pairs]:  # the paper's loop: two batch-1 passes per pair, per-layer cosine
            va = layer_vectors(batch1_activations(model, tok, texts[a], eng.weights, max_tokens=max_tokens),
                               eng.weights, eng.n_layers)
            vb = layer_vectors(batch1_activations(model, tok, texts[b], eng.weights, max_tokens=max_tokens),
                               eng.weights, eng.n_layers)
            [llmdcos(x, y) for x, y in zip(va, vb)]

    reset_peak(dev)
    t_ref = timed(ref, dev)
    p_ref = peak_gib(dev)
    ref_pps = ref_pairs / t_ref
    eng_pps = len(pairs) / t_eng
    return {"suite": "b all-pairs LLMDcos", "texts": n, "pairs": len(pairs), "passes": sum(map(len, batches)),
            "block": block, "ref_pairs_measured": ref_pairs, "ref_pairs_per_s": ref_pps,
            "engine_pairs_per_s": eng_pps, "speedup": eng_pps / ref_pps, "ref_peak_gib": p_ref,
            "engine_peak_gib": p_eng}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", nargs="+", default=["a", "b"], choices=["a", "b", "c"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", default="resources/models/smollm2-135m")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--ref-samples", type=int, default=8)
    ap.add_argument("--ref-pairs", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--gpu-batch-sizes", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument("--gpu-layers", type=int, default=32)
    ap.add_argument("--kernels", nargs="+", default=["unfused", "fused", "split", "auto"],
                    help="scoring.kernel values, each optionally with /eager or /compiled for scoring.elementwise "
                         "(default auto, which compiles no run this short), e.g. auto/compiled auto")
    ap.add_argument("--repeats", type=int, default=1, help="GPU suite: timed runs per row (the median is kept)")
    ap.add_argument("--json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    rows = []
    env = {"torch": torch.__version__, "device": a.device, "threads": a.threads,
           "gpu": torch.cuda.get_device_name() if a.device == "cuda" else None, "cpus": os.cpu_count()}
    print(json.dumps(env))
    if "a" in a.suite or "b" in a.suite:
        model, tok = shipped_model(a.model)
        model.to(a.device)
        if "a" in a.suite:
            texts = texts_from_assets(a.samples, 140)
            rows.append(suite_mean(model, tok, texts, a.device, 128, a.batch_size, a.ref_samples,
                                   "a mean activation, shipped model, 128 tokens"))
            print(json.dumps(rows[-1]), flush=True)
        if "b" in a.suite:
            doms = [texts_from_assets(16, 100, offset=k * 16) for k in range(4)]
            rows.append(suite_pairs(model, tok, doms, a.device, 128, 32, a.ref_pairs))
            print(json.dumps(rows[-1]), flush=True)
        del model
    if "c" in a.suite:
        model = llama7b_random(a.device, a.gpu_layers)
        tok = IdTokenizer(32000, 256)
        n_lin = sum(w.weight.numel() for w in ActivationScorer(model, tok).weights)
        flops = 6 * n_lin * 256  # forward + input gradients + per-sample weight gradients
        for bs in a.gpu_batch_sizes:
            texts = [f"s{i}" for i in range(4 * bs)]
            for spec in a.kernels:
                kernel, _, ew = spec.partition("/")
                for gram in (False, True):
                    r = suite_mean(model, tok, texts, a.device, 256, bs, a.ref_samples,
                                   f"c 7B bf16 256 tok, {spec}, {'Gram' if gram else 'mean'}", flops, gram=gram,
                                   kernel=kernel, elementwise=ew or "auto", repeats=a.repeats)
                    r["ceiling_samples_per_s"] = 790e12 / flops
                    r["pct_of_ceiling"] = 100 * r["engine_samples_per_s"] / r["ceiling_samples_per_s"]
                    rows.append(r)
                    print(json.dumps(r), flush=True)
    print("\n| suite | batch | reference /s | engine /s | speed-up | engine TFLOP/s | % of ceiling | ref peak GiB "
          "| engine peak GiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        unit_ref = r.get("ref_samples_per_s", r.get("ref_pairs_per_s"))
        unit_eng = r.get("engine_samples_per_s", r.get("engine_pairs_per_s"))
        tf = f"{r['engine_tflops']:.0f}" if "engine_tflops" in r else "—"
        pct = f"{r['pct_of_ceiling']:.0f}" if "pct_of_ceiling" in r else "—"
        print(f"| {r['suite']} | {r.get('batch_size', r.get('block'))} | {unit_ref:.3f} | {unit_eng:.3f} | "
              f"{r['speedup']:.2f}x | {tf} | {pct} | {r['ref_peak_gib']:.1f} | {r['engine_peak_gib']:.1f} |")
    if a.json:
        Path(a.json).write_text(json.dumps({"env": env, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
