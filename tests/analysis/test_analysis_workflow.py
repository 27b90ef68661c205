"""The analysis and report rules: lint, formatting, and a run on synthetic engine outputs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from helpers import REPO as ROOT
from helpers.analysis_synth import write_workdir

BIN = Path(sys.executable).parent
MINILM = ROOT / "resources" / "assets" / "minilm"


def run(cmd, cwd, timeout=600):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_rules_are_formatted():
    files = [ROOT / "rules" / n for n in ("analysis.smk", "report.smk", "common.smk")] + [ROOT / "Snakefile"]
    r = run([str(BIN / "snakefmt"), "--check", *map(str, files)], ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


def test_lint(tmp_path):
    r = run([str(BIN / "snakemake"), "--lint", "-s", str(ROOT / "Snakefile"), "-d", str(ROOT)], ROOT)
    assert "Congratulations" in r.stdout + r.stderr, r.stdout + r.stderr


def test_dry_run_of_the_full_default_dag(tmp_path):
    """The default config plans every stage, from fetching assets to the report, in a fresh directory."""
    r = run([str(BIN / "snakemake"), "-n", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path),
             "--configfile", str(ROOT / "config" / "config.yaml")], ROOT)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    for rule in ("fetch_asset", "convert_model", "domain_table", "score_shard", "merge_scores", "score_panel",
                 "density", "relevance", "findings", "prune_evaluate", "pruning_table", "score_pairs", "sts_eval",
                 "report_html"):
        assert f"\n{rule} " in out or f"rule {rule}:" in out, rule


ANALYSIS_RULES = ["density", "density_table", "embed_domains", "similarity", "relevance", "findings",
                  "analysis_figures", "report_html"]


@pytest.mark.slow
@pytest.mark.skipif(not MINILM.exists(), reason="resources/assets/minilm is not fetched")
def test_workflow_builds_the_report(tmp_path):
    """From synthetic stores, gram and sample tables to findings.json, index.html and `--report`."""
    wd = write_workdir(tmp_path / "wd")
    (wd / "resources" / "assets").mkdir(parents=True)
    os.symlink(MINILM.resolve(), wd / "resources" / "assets" / "minilm")
    # the engine's outputs are synthetic here: only the analysis and report rules may run
    base = [str(BIN / "snakemake"), "-s", str(ROOT / "Snakefile"), "-d", str(wd), "--cores", "2"]
    only = ["--allowed-rules", *ANALYSIS_RULES, "--rerun-triggers", "mtime", "params", "--"]
    r = run([*base, *only, "results/report/index.html"], wd)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    f = json.loads((wd / "results/analysis/toy/findings.json").read_text())
    assert f["n_layers"] == 12 and f["windows"]["deep"] == [6, 9] and f["windows"]["shallow"] == [0, 3]
    verdicts = {x["id"]: x["verdict"] for x in f["findings"]}
    # the synthetic data have the Finding-1 hump, a cross-domain drop and flat within-domain pairs
    assert verdicts["F1"] == "holds" and verdicts["F2"] == "holds" and verdicts["F2c"] == "holds"
    emb = pl.read_parquet(wd / "results/analysis/embeddings.parquet")
    assert emb["domain"].to_list() == ["boolq", "c4", "humaneval", "mmlu"] and emb["n_texts"].to_list() == [4] * 4
    page = (wd / "results/report/index.html").read_text()
    assert "Findings summary (toy)" in page and "window.vegaEmbed=" in page
    for name in ("density", "similarity", "similarity_profile", "relevance", "relevance_scatter"):
        for ext in ("svg", "png"):
            assert (wd / f"results/report/toy/{name}.{ext}").stat().st_size > 1000
    r = run([*base, "--report", str(wd / "report.html"), *only, "results/report/index.html"], wd)
    assert r.returncode == 0 and (wd / "report.html").stat().st_size > 100_000, r.stderr[-3000:]
    # editing a window reruns the relevance job (params trigger)
    cfg = wd / "config" / "config.yaml"
    cfg.write_text(cfg.read_text().replace("similarity: {samples: 4, per_batch: 2}",
                                           "similarity: {samples: 4, per_batch: 2, deep_window: [7, 10]}"))
    r = run([*base, "-n", *only, "results/report/index.html"], wd)
    assert "rule relevance" in r.stdout and "rule density:" not in r.stdout, r.stdout[-3000:]
