"""Config files mean what they say: the real command lines, run from the repository root.

`snakemake` alone runs config/config.yaml; `--configfile X` runs exactly X (no merge with the
default, so a user config can drop domains, models and pruning runs); `--config key=value`
still overrides.  Each case is a forced dry run (`-n -F`), so the DAG is the whole workflow
whatever results/ holds; nothing is fetched (the paper's hub models and data are never read).
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys

import pytest
import yaml

from helpers.smkrun import REPO, parse_jobs

SNAKEMAKE = os.path.join(os.path.dirname(sys.executable), "snakemake")


def dag(*args: str):
    """(jobs per rule, models, domains) of a forced dry run from the repository root."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([SNAKEMAKE, "-n", "-F", "--cores", "2", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    jobs = parse_jobs(out)
    counts = collections.Counter(j.rule for j in jobs)
    models = {j.wildcards["model"] for j in jobs if "model" in j.wildcards}
    domains = {j.wildcards["domain"] for j in jobs if "domain" in j.wildcards}
    return counts, models, domains


def _default():
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_no_configfile_runs_the_default():
    cfg = _default()
    counts, models, domains = dag()
    assert models == set(cfg["models"]) and domains == set(cfg["domains"])
    assert counts["prune_evaluate"] == 45 and counts["score_shard"] == len(cfg["domains"])


def test_the_paper_command_runs_the_paper_config_only():
    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    counts, models, domains = dag("--configfile", "config/paper.yaml")
    assert models == {"llama2-7b"}  # not merged with the default's smollm2-135m
    assert domains == set(paper["domains"])
    # 64 samples per domain in shards of 16, 88 pruning runs, hub data: no converted model, no registry assets
    assert counts["score_shard"] == 4 * len(paper["domains"]) and counts["prune_evaluate"] == 88
    assert counts["convert_model"] == 0 and counts["calibration_source"] == 3  # c4, mmlu and siqa calibrate


def test_a_user_config_drops_domains_models_and_runs(tmp_path):
    cfg = _default()
    keep = ["c4", "mmlu", "siqa", "wikitext"]
    cfg["domains"] = {d: cfg["domains"][d] for d in keep}
    cfg["similarity"]["pairs"] = [["mmlu", "siqa"], ["c4", "wikitext"]]
    cfg["evaluation"]["zeroshot"]["domains"] = ["siqa", "mmlu"]
    cfg["prune"]["runs"] = [{"method": "wanda", "allocation": ["uniform", "paper"], "sparsity": [0.5]}]
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(cfg))
    counts, models, domains = dag("--configfile", str(path))
    assert models == set(cfg["models"]) and domains == set(keep)
    assert counts["prune_evaluate"] == 2 * len(cfg["prune"]["calibration"]["seeds"])
    assert counts["score_shard"] == 4 and counts["domain_table"] == 4
    # --config still overrides a value of the given file
    counts, _, _ = dag("--configfile", str(path), "--config", "prune={'calibration': {'domain': 'mmlu'}}")
    assert counts["calibration_source"] == 0  # mmlu calibrates on its own table, not on c4's documents
    assert counts["prune_evaluate"] == 2 * len(cfg["prune"]["calibration"]["seeds"])


@pytest.mark.skipif(not (REPO / "config" / "gpu.yaml").exists(), reason="config/gpu.yaml does not exist yet")
def test_the_gpu_config_runs_its_models_only():
    gpu = yaml.safe_load((REPO / "config" / "gpu.yaml").read_text())
    _, models, domains = dag("--configfile", "config/gpu.yaml")
    assert models == set(gpu["models"]) and domains == set(gpu["domains"])


def test_the_pruning_grid_overlays_the_default():
    """config/pruning-grid.yaml replaces only the default's pruning runs (Snakemake merges the files in order)."""
    grid = yaml.safe_load((REPO / "config" / "pruning-grid.yaml").read_text())
    assert set(grid) == {"prune"} and set(grid["prune"]) == {"runs"}
    counts, models, domains = dag("--configfile", "config/config.yaml", "config/pruning-grid.yaml")
    cfg = _default()
    assert models == set(cfg["models"]) and domains == set(cfg["domains"])
    # magnitude 3 + Wanda 6 allocations x 3 sparsities x 2 seeds + permuted 9 + calibration swap 2 + SparseGPT 12
    # + activation 6 + Wanda-activation 2 + N:M (magnitude 2, Wanda 4, SparseGPT 4, activation 2, Wanda-activation 2)
    assert counts["prune_evaluate"] == 3 + 36 + 9 + 2 + 12 + 6 + 2 + 14 == 84


def test_footprint_merges_config_files_as_snakemake_does(tmp_path):
    """actpat footprint with an overlay: the merged config's jobs (the dry run gets both files) and its
    storage dtype (float16 merged stores: half the bytes of float32 times the measured compression ratios)."""
    from actpat.footprint import STORE_RATIO, footprint

    over = tmp_path / "f16.yaml"
    over.write_text("scoring:\n  store_dtype: float16\n")
    base = footprint(REPO / "config" / "paper.yaml", REPO / "Snakefile", REPO)
    half = footprint([REPO / "config" / "paper.yaml", over], REPO / "Snakefile", REPO)
    assert half["rules"]["merge_scores"]["jobs"] == base["rules"]["merge_scores"]["jobs"] == 9
    w = base["models"]["llama2-7b"]["scored_weights"]
    drop = base["rules"]["merge_scores"]["final_bytes"] - half["rules"]["merge_scores"]["final_bytes"]
    assert drop == pytest.approx(9 * w * (4 * STORE_RATIO["float32"] - 2 * STORE_RATIO["float16"]))
    assert base["rules"]["merge_scores"]["max_mem_mb"] < 8 * 1024  # the streaming merge at 7B
