"""actpat.resources: the memory, runtime and GPU requests, and the shard arithmetic, by hand."""

import math

import pytest

from actpat import resources as R

LLAMA7B = {"source": "hub", "dtype": "bfloat16", "device": "cuda", "size_b": 6.7}
SMOL = {"source": "gguf_asset", "dtype": "float32", "device": "cpu", "size_b": 0.135}
SPLIT70B = {"source": "hub", "dtype": "bfloat16", "device": "cuda", "device_map": "auto", "size_b": 70.0}


def test_memory_of_each_job_kind():
    # GPU scoring: the host holds the bf16 weights while loading (x1.5) + 4 GB of libraries
    assert R.mem_mb(LLAMA7B, "score") == int((1.5 * 6.7 * 2 + 4) * 1024)
    # CPU scoring: weights twice (activations, gradients) + float32 sums + 2 GB
    assert R.mem_mb(SMOL, "score") == int((2 * 0.135 * 4 + 0.135 * 4 + 2) * 1024)
    # merge: streams one matrix: 24 bytes per element of the largest (28% of a block) + 1 GB, any depth
    assert R.mem_mb({**LLAMA7B, "layers": 32}, "merge") == int((24 * 0.28 * 6.7e9 / 32 / 1e9 + 1) * 1024)
    assert R.largest_matrix({"size_b": 68.98, "layers": 80}) > 28672 * 8192  # LLaMA-2-70B's MLP matrices
    assert R.largest_matrix({"size_b": 6.74, "layers": 32}) > 11008 * 4096  # and LLaMA-2-7B's
    assert R.mem_mb({"size_b": 70.0, "layers": 80}, "merge") < 8 * 1024  # the bound at 70B
    assert R.mem_mb(LLAMA7B, "prune") == int((6.7 * 4 * 2.5 + 2) * 1024)
    assert R.mem_mb(LLAMA7B, "eval") == int((6.7 * 4 * 1.5 + 2) * 1024)
    assert R.mem_mb(LLAMA7B, "density") == int(1024 + 6.7 * 800)


def test_gpus_per_job():
    assert R.gpus(SMOL) == 0 and R.gpus(LLAMA7B) == 1
    # device_map auto: 1.7 x (140 GB of bf16 weights + 280 GB of float32 sums) + 4 GB over 80 GB cards
    assert R.gpus(SPLIT70B) == -(-(1.7 * (70 * 2 + 70 * 4) + 4) // 80) == 9


def test_runtime_minutes():
    # 13.4 GB at 0.2 GB/s = 67 s to load; 16 samples x 6.7 x 0.15 s; doubled, + 10 min
    assert R.runtime_min(LLAMA7B, 16) == 10 + math.ceil((6.7 * 2 / 0.2 + 16 * 6.7 * 0.15) / 60 * 2)
    assert R.runtime_min(SMOL, 16) == 10 + math.ceil((0.135 * 4 / 0.2 + 16 * 0.135 * 10) / 60 * 2)
    assert R.runtime_min(LLAMA7B, 1000, "eval") == 10 + math.ceil((6.7 * 2 / 0.2 + 1000 * 6.7 * 0.15 * 0.5) / 60 * 2)
    # the prediction behind a request comes back to within the 30 s of its rounding
    s = R.job_seconds(LLAMA7B, 16)
    assert s <= R.job_seconds_from_runtime(R.runtime_min(LLAMA7B, 16)) <= s + 30


@pytest.mark.parametrize("samples,size,want", [(16, 16, [[0, 16]]), (64, 16, [[0, 16], [16, 32], [32, 48], [48, 64]]),
                                               (20, 8, [[0, 8], [8, 16], [16, 20]])])
def test_shards_cover_the_samples_once(samples, size, want):
    assert [R.shard_range(k, size, samples) for k in range(R.n_shards(samples, size))] == want


def test_panel_shards_hold_whole_mixed_batches():
    assert R.panel_shard_size(16, 3) == 15 and R.panel_shard_size(16, 4) == 16 and R.panel_shard_size(2, 3) == 3
