"""Results tables and the perplexity chart from hand-made evaluation records."""

import json

import numpy as np
import polars as pl
import pytest

from actpat.evaluate.tables import collect, markdown, summarise, write_outputs

TASKS = ["boolq", "mmlu"]


def _record(run, method, alloc, cal, s, seed, ppl, accs):
    zs = {t: {"n": 4, "paper_acc": a[0], "acc": a[1], "acc_norm": a[2]} for t, a in zip(TASKS, accs)}
    r = {"model": "m", "run": run, "method": method, "allocation": alloc, "calibration": cal, "sparsity": s,
         "seed": seed, "perplexity": {"perplexity": ppl}, "zeroshot": zs, "timings_s": {"job": 1.0}}
    if method != "dense":
        r["sparsity_check"] = {"achieved": s - 0.001}
    return r


RECORDS = [
    _record("wanda-uniform-s0.50-c4-seed1", "wanda", "uniform", "c4", 0.5, 1, 30.0, [(0.5, 0.25, 0.75), (0.25, 0.5, 0.5)]),
    _record("dense", "dense", None, None, 0.0, None, 15.0, [(0.75, 0.5, 0.5), (0.5, 0.25, 0.25)]),
    _record("wanda-uniform-s0.50-c4-seed0", "wanda", "uniform", "c4", 0.5, 0, 40.0, [(0.25, 0.25, 0.5), (0.5, 0.75, 0.25)]),
    _record("wanda-paper-s0.50-c4-seed0", "wanda", "paper", "c4", 0.5, 0, 35.0, [(0.5, 0.5, 0.5), (0.5, 0.5, 0.5)]),
    _record("magnitude-uniform-s0.50", "magnitude", "uniform", None, 0.5, None, 900.0, [(0.0, 0.0, 0.0), (1.0, 1.0, 1.0)]),
]


@pytest.fixture
def paths(tmp_path):
    out = []
    for r in RECORDS:
        p = tmp_path / f"{r['run']}.json"
        p.write_text(json.dumps(r))
        out.append(p)
    return out


def test_collect_columns_and_means(paths):
    df = collect(paths, TASKS)
    assert df["run"].to_list() == ["dense", "magnitude-uniform-s0.50", "wanda-paper-s0.50-c4-seed0",
                                   "wanda-uniform-s0.50-c4-seed0", "wanda-uniform-s0.50-c4-seed1"]
    row = df.filter(pl.col("run") == "wanda-uniform-s0.50-c4-seed1").row(0, named=True)
    assert (row["boolq_paper"], row["boolq_acc"], row["boolq_acc_norm"]) == (0.5, 0.25, 0.75)
    assert row["mean_paper"] == pytest.approx((0.5 + 0.25) / 2)  # tasks averaged within one scorer only
    assert row["mean_acc_norm"] == pytest.approx((0.75 + 0.5) / 2)
    assert row["achieved_sparsity"] == pytest.approx(0.499)


def test_summary_mean_and_sample_std_over_seeds(paths):
    s = summarise(collect(paths, TASKS))
    w = s.filter((pl.col("method") == "wanda") & (pl.col("allocation") == "uniform")).row(0, named=True)
    assert w["seeds"] == 2
    assert w["perplexity_mean"] == pytest.approx(35.0)
    assert w["perplexity_std"] == pytest.approx(np.std([30.0, 40.0], ddof=1))
    assert w["mean_acc_mean"] == pytest.approx(np.mean([(0.25 + 0.5) / 2, (0.25 + 0.75) / 2]))
    single = s.filter(pl.col("allocation") == "paper").row(0, named=True)
    assert single["seeds"] == 1 and single["perplexity_std"] is None


def test_markdown_keeps_scorers_apart(paths):
    df = collect(paths, TASKS)
    md = markdown(df, summarise(df), TASKS)
    assert md.count("## Per run:") == 3
    assert "| m | wanda | uniform | c4 | 0.50 | 1 | 30.00 | 50.0 | 25.0 | 37.5 |" in md  # paper scorer table
    assert "| m | wanda | uniform | c4 | 0.50 | 2 | 35.00 ± 7.07 |" in md
    assert "| m | magnitude | uniform | – | 0.50 | – | 900.00 |" in md


def test_write_outputs_writes_everything(paths, tmp_path):
    out = {k: tmp_path / "out" / n for k, n in [("table", "p.parquet"), ("summary", "s.parquet"),
                                                ("markdown_path", "p.md"), ("svg", "c.svg"), ("png", "c.png"),
                                                ("section", "sec.json")]}
    write_outputs(paths, TASKS, **out)
    from actpat.report.html import load_sections

    (sec,) = load_sections(out["section"])
    assert sec["id"] == "pruning" and len(sec["tables"]) == 2 and sec["charts"][0]["spec"]["data"]
    assert pl.read_parquet(out["table"]).height == 5
    assert out["svg"].read_text().lstrip().startswith("<svg")
    assert out["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list((tmp_path / "out").glob(".*"))  # no temporary files left behind
