"""What a job asks the scheduler for: host memory (MB), runtime (minutes) and GPUs.

Generic resources only; cluster specifics (partitions, accounts) live in profiles/.  Sizes
follow the scorer's design: weights in the configured dtype, the per-weight sums in float32
(float64 for float64 models) on the scoring device, plus activations and per-sample gradient
tiles of the batch.  ``spec`` is one ``models.<name>`` entry of the checked config;
docs/cluster.md has a worked 7B example.
"""

from __future__ import annotations

import math

DTYPE_BYTES = {"float64": 8, "float32": 4, "bfloat16": 2, "float16": 2}
GPU_GB = 80  # usable memory of one GPU (A100/H100 80 GB); larger GPUs: set gpu in the profile
LOAD_GB_PER_S = 0.2  # weights read from a slow shared file system


def size_b(spec: dict) -> float:
    return float(spec.get("size_b", 1.0))


def on_gpu(spec: dict) -> bool:
    return spec.get("device") in ("cuda", "auto") or spec.get("device_map") == "auto"


def weight_gb(spec: dict) -> float:
    """GB of the model's weights in its configured dtype."""
    return size_b(spec) * DTYPE_BYTES[spec.get("dtype", "float32")]


def sums_gb(spec: dict) -> float:
    """GB of one accumulator per weight (float32, float64 for float64 models)."""
    return size_b(spec) * (8 if spec.get("dtype") == "float64" else 4)


def largest_matrix(spec: dict) -> float:
    """Elements of the largest scored matrix, from size and depth: an MLP matrix is at most 28%
    of a block's weights (LLaMA-2-7B 21%, LLaMA-2-70B 27.5%)."""
    return 0.28 * size_b(spec) * 1e9 / max(int(spec.get("layers") or 1), 1)


def mem_mb(spec: dict, kind: str = "score") -> int:
    """Host memory (MB) of one job of ``kind``.

    score: on CPU the weights, the sums and as much again for activations and gradients;
           on GPU those live on the GPU and the host only holds the weights while loading
           (transformers loads on CPU, then moves them) plus about 4 GB of libraries.
    merge: streams one matrix at a time: its float64 sum, a float32 read and the float32 mean and
           its encoded shard file (24 bytes per element of the largest matrix), plus 1 GB of
           libraries; measured 1.5 GB at LLaMA-2-7B shapes whatever the depth
           (benchmarks/bench_merge.py).
    density: streams one layer at a time: about four copies of a layer plus the top-k buffer.
    Other kinds (prune, eval, ...): float32 weights times a working-memory factor.
    """
    if kind == "density":
        return int(1024 + size_b(spec) * 1000 * 0.8)
    if kind == "score":
        gb = 1.5 * weight_gb(spec) + 4 if on_gpu(spec) else 2 * weight_gb(spec) + sums_gb(spec) + 2
    elif kind == "merge":
        gb = 24 * largest_matrix(spec) / 1e9 + 1
    else:
        gb = size_b(spec) * 4 * {"prune": 2.5, "eval": 1.5}.get(kind, 2.0) + 2
    return int(gb * 1024)


def gpus(spec: dict) -> int:
    """GPUs of a model job: 0 on CPU; 1 with device cuda/auto (a model runs on one device);
    with device_map auto, enough GPUs for the weights, the float32 sums and the activations
    kept for the backward pass (x1.7 + 4 GB: 7B bf16 at batch 16 peaked at 67 GiB on an H200,
    benchmarks/NOTES.md)."""
    if not on_gpu(spec):
        return 0
    if spec.get("device_map") != "auto":
        return 1
    need_gb = 1.7 * (weight_gb(spec) + sums_gb(spec)) + 4
    return max(1, int(-(-need_gb // GPU_GB)))


def job_seconds(spec: dict, samples: int, kind: str = "score") -> float:
    """Predicted seconds of a model job: loading the weights plus samples x a per-sample cost
    scaled by size (CPU ~1 s per 0.1B parameters at 256 tokens)."""
    per_sample_s = size_b(spec) * (0.15 if on_gpu(spec) else 10.0) * {"score": 1.0, "eval": 0.5}.get(kind, 1.0)
    return weight_gb(spec) / LOAD_GB_PER_S + samples * per_sample_s


def runtime_min(spec: dict, samples: int, kind: str = "score") -> int:
    """Minutes requested: the predicted time doubled for safety (whole minutes, rounded up), plus 10."""
    return 10 + math.ceil(job_seconds(spec, samples, kind) / 60 * 2)


def job_seconds_from_runtime(runtime: int) -> float:
    """The prediction behind a runtime request (runtime_min inverted: at most 30 s above it)."""
    return max(runtime - 10, 0) * 30.0


def n_shards(samples: int, shard_size: int) -> int:
    return -(-samples // shard_size)


def shard_range(shard: int, shard_size: int, samples: int) -> list[int]:
    """Rows [start, stop) of scoring shard ``shard``."""
    start = shard * shard_size
    return [start, min(start + shard_size, samples)]


def panel_shard_size(shard_size: int, per_batch: int) -> int:
    """Rows per domain in one panel shard: whole mixed batches of ``per_batch`` rows per domain."""
    return max(shard_size - shard_size % per_batch, per_batch)
