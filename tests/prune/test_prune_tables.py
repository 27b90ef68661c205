"""Results tables and the perplexity chart from hand-made evaluation records."""

import json

import numpy as np
import polars as pl
import pytest

from actpat.evaluate.results import collect, summarise
from actpat.report.pruning import markdown, write_outputs

TASKS = ["boolq", "mmlu"]


def _record(run, method, alloc, cal, s, seed, ppl, accs):
    zs = {t: {"n": 4, "paper_acc": a[0], "acc": a[1], "acc_norm": a[2]} for t, a in zip(TASKS, accs)}
    r = {"model": "m", "run": run, "method": method, "allocation": alloc, "calibration": cal, "sparsity": s,
         "seed": seed, "perplexity": {"perplexity": ppl}, "zeroshot": zs, "timings_s": {"job": 1.0}}
    if method != "dense":
        r["sparsity_check"] = {"achieved": s - 0.001}
    return r


RECORDS = [
    _record("wanda-uniform-s0.50-c4-seed1", "wanda", "uniform", "c4", 0.5, 1, 30.0,
            [(0.5, 0.25, 0.75), (0.25, 0.5, 0.5)]),
    _record("dense", "dense", None, None, 0.0, None, 15.0, [(0.75, 0.5, 0.5), (0.5, 0.25, 0.25)]),
    _record("wanda-uniform-s0.50-c4-seed0", "wanda", "uniform", "c4", 0.5, 0, 40.0,
            [(0.25, 0.25, 0.5), (0.5, 0.75, 0.25)]),
    _record("wanda-paper-s0.50-c4-seed0", "wanda", "paper", "c4", 0.5, 0, 35.0, [(0.5, 0.5, 0.5), (0.5, 0.5, 0.5)]),
    _record("magnitude-uniform-s0.50", "magnitude", "uniform", None, 0.5, None, 900.0,
            [(0.0, 0.0, 0.0), (1.0, 1.0, 1.0)]),
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
    assert "| m | wanda | uniform | c4 | 0.50 | 2 (0, 1) | 35.00 ± 7.07 | [30.00, 40.00] |" in md
    assert "| m | magnitude | uniform | – | 0.50 | – | 900.00 |" in md


def test_write_outputs_writes_everything(paths, tmp_path):
    out = {k: tmp_path / "out" / n for k, n in [("table", "p.parquet"), ("summary", "s.parquet"),
                                                ("markdown_path", "p.md"), ("svg", "c.svg"), ("png", "c.png"),
                                                ("section", "sec.json")]}
    write_outputs(paths, TASKS, **out)
    from actpat.report.html import load_sections

    (sec,) = load_sections(out["section"])
    # no nll: no comparisons
    assert sec["id"] == "pruning" and len(sec["tables"]) == 2 and sec["charts"][0]["spec"]["data"]
    assert pl.read_parquet(out["table"]).height == 5
    assert out["svg"].read_text().lstrip().startswith("<svg")
    assert out["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list((tmp_path / "out").glob(".*"))  # no temporary files left behind


def test_zero_shot_wilson_intervals_match_scipy(paths):
    from scipy.stats import binomtest

    df = collect(paths, TASKS)
    r = df.filter(pl.col("run") == "wanda-uniform-s0.50-c4-seed1").row(0, named=True)
    ci = binomtest(2, 4).proportion_ci(0.95, method="wilson")  # boolq: paper_acc 0.5 of 4 questions
    assert (r["boolq_paper_lo"], r["boolq_paper_hi"]) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_comparisons_against_numpy(tmp_path):
    """Paired two-level bootstrap (seeds, then token blocks) of log PPL(allocation) - log PPL(paper), recomputed
    independently with plain loops."""
    from actpat.evaluate.results import comparisons

    rng = np.random.default_rng(5)
    T, size, W = 10, 4, 3  # 9 predicted tokens per window in blocks of 4, 4, 1; 3 windows
    ntok = np.array([4, 4, 1] * W, dtype=float)
    nll = {(a, k): rng.normal(3.0 + (0.3 if a == "depth_ramp" else 0.0), 0.2, 3 * W) * ntok
           for a in ("paper", "depth_ramp") for k in (0, 1)}
    paths = []
    for (a, k), b in nll.items():
        blocks = b.reshape(W, 3)
        r = {"model": "m", "run": f"wanda-{a}-s0.50-c4-seed{k}", "method": "wanda", "allocation": a,
             "calibration": "c4", "sparsity": 0.5, "seed": k,
             "perplexity": {"perplexity": float(np.exp(b.sum() / (W * (T - 1)))), "window_nll": blocks.sum(1).tolist(),
                            "block_nll": blocks.tolist(), "block_tokens": size, "windows": W, "seq_len": T}}
        p = tmp_path / f"{r['run']}.json"
        p.write_text(json.dumps(r))
        paths.append(p)
    comp = comparisons(paths, n_boot=2000, seed=3)
    (row,) = comp.iter_rows(named=True)
    per_seed = [(nll[("depth_ramp", k)].sum() - nll[("paper", k)].sum()) / (W * (T - 1)) for k in (0, 1)]
    assert row["log_ppl_diff"] == pytest.approx(np.mean(per_seed), abs=1e-12)
    assert row["per_seed"] == pytest.approx(per_seed, abs=1e-12)
    assert row["blocks"] == 3 * W and row["windows"] == W
    # the same draws as the implementation: block indices first, then seed indices
    g = np.random.default_rng(3)
    bidx = g.integers(0, 3 * W, size=(2000, 3 * W))
    sidx = g.integers(0, 2, size=(2000, 2))
    boot = []
    for r in range(2000):
        d = [sum(nll[("depth_ramp", k)][i] - nll[("paper", k)][i] for i in bidx[r]) / sum(ntok[i] for i in bidx[r])
             for k in (0, 1)]
        boot.append(np.mean([d[k] for k in sidx[r]]))
    assert (row["lo"], row["hi"]) == pytest.approx(tuple(np.quantile(boot, [0.025, 0.975])), abs=1e-12)
    assert row["verdict"] == ("holds" if row["lo"] > 0 else "inconclusive" if row["hi"] >= 0 else "does not hold")
    assert row["lo"] > 0  # a 0.3-nat gap over 0.2-nat noise: the paper rule is better here


def test_calibration_comparisons_and_accuracy_differences_against_numpy(tmp_path):
    """kind calibration: each calibration domain against the configured one; accuracy difference over the shared
    questions with the questions resampled, recomputed with plain loops."""
    from actpat.evaluate.results import comparisons

    rng = np.random.default_rng(7)
    T, W = 10, 2  # 9 predicted tokens per window, blocks of 4, 4, 1
    ntok = np.array([4, 4, 1] * W, dtype=float)
    correct = {"c4": rng.integers(0, 2, 12), "mmlu": rng.integers(0, 2, 12)}
    paths = []
    for cal in ("c4", "mmlu"):
        b = rng.normal(3.0, 0.2, 3 * W) * ntok
        items = [{"id": f"q{i}", "answer": 1, "paper": int(correct[cal][i]), "acc": 0, "acc_norm": 0}
                 for i in range(12)]
        r = {"model": "m", "run": f"wanda-paper-s0.50-{cal}-seed0", "method": "wanda", "allocation": "paper",
             "calibration": cal, "sparsity": 0.5, "seed": 0,
             "perplexity": {"perplexity": 1.0, "block_nll": b.reshape(W, 3).tolist(), "block_tokens": 4, "windows": W,
                            "seq_len": T},
             "zeroshot": {"mmlu": {"n": 12, "paper_acc": float(correct[cal].mean()), "items": items}}}
        p = tmp_path / f"{r['run']}.json"
        p.write_text(json.dumps(r))
        paths.append(p)
    comp = comparisons(paths, calibration="c4", n_boot=500, seed=1)
    (row,) = comp.iter_rows(named=True)
    assert (row["kind"], row["calibration"], row["baseline"], row["questions"]) == ("calibration", "mmlu", "c4", 12)
    d = correct["c4"] - correct["mmlu"]  # baseline - other, per question
    assert row["acc_diff"] == pytest.approx(d.mean(), abs=1e-12)
    # the accuracy bootstrap draws its own generator from the same seed
    idx = np.random.default_rng(1).integers(0, 12, size=(500, 12))
    boot = [d[i].mean() for i in idx]
    assert (row["acc_lo"], row["acc_hi"]) == pytest.approx(tuple(np.quantile(boot, [0.025, 0.975])), abs=1e-12)
    assert comparisons(paths, calibration=None).height == 0  # no configured domain: nothing to compare with


def test_pattern_comparisons_of_runs_without_calibration_seeds(tmp_path):
    """kind pattern: each N:M run against unstructured uniform pruning at its sparsity, same method; a method
    without calibration data (one run, seed None) is compared over the token blocks alone."""
    from actpat.evaluate.results import comparisons

    rng = np.random.default_rng(11)
    T, W = 10, 3
    ntok = np.array([4, 4, 1] * W, dtype=float)
    nll = {}
    paths = []
    for label, nm, alloc in (("uniform", None, "uniform"), ("2:4", "2:4", "uniform"), ("4:8", "4:8", "uniform"),
                             ("paper", None, "paper")):
        nll[label] = rng.normal(3.0 + (0.4 if nm else 0.0), 0.1, 3 * W) * ntok
        name = f"magnitude-{alloc}" + (f"-{nm.replace(':', 'of')}" if nm else "-s0.50")
        r = {"model": "m", "run": name, "method": "magnitude", "allocation": alloc, "nm": nm, "calibration": None,
             "sparsity": 0.5, "seed": None,
             "perplexity": {"perplexity": 1.0, "block_nll": nll[label].reshape(W, 3).tolist(), "block_tokens": 4,
                            "windows": W, "seq_len": T}}
        p = tmp_path / f"{name}.json"
        p.write_text(json.dumps(r))
        paths.append(p)
    comp = comparisons(paths, calibration="c4", n_boot=300, seed=2)
    pat = comp.filter(pl.col("kind") == "pattern").sort("allocation")
    assert pat["allocation"].to_list() == ["2:4", "4:8"] and set(pat["baseline"]) == {"uniform"}
    g = np.random.default_rng(2)
    idx = g.integers(0, 3 * W, size=(300, 3 * W))
    for row in pat.iter_rows(named=True):
        d = nll[row["allocation"]] - nll["uniform"]
        assert row["seeds"] == [] and row["log_ppl_diff"] == pytest.approx(d.sum() / (W * (T - 1)), abs=1e-12)
        boot = [d[i].sum() / ntok[i].sum() for i in idx]
        assert (row["lo"], row["hi"]) == pytest.approx(tuple(np.quantile(boot, [0.025, 0.975])), abs=1e-12)
        assert row["verdict"] == "holds"  # 0.4 nats worse than unstructured over 0.1-nat noise
    alloc = comp.filter(pl.col("kind") == "allocation")
    assert alloc["allocation"].to_list() == ["uniform"] and alloc["baseline"].to_list() == ["paper"]  # no N:M here
    assert comp.filter(pl.col("kind") == "calibration").height == 0  # seedless runs have no calibration domain


def test_nm_runs_reach_the_tables_and_the_report(tmp_path):
    """N:M runs next to unstructured uniform runs, through every output of the pruning_table rule."""
    from actpat.report.pruning import write_outputs

    rng = np.random.default_rng(4)
    T, W = 10, 2
    ntok = np.array([4, 4, 1] * W, dtype=float)
    paths = []
    for method, seed in (("magnitude", None), ("wanda", 0)):
        for nm, shift in ((None, 0.0), ("2:4", 0.3), ("4:8", 0.2)):
            b = rng.normal(3.0 + shift, 0.05, 3 * W) * ntok
            name = f"{method}-uniform" + (f"-{nm.replace(':', 'of')}" if nm else "-s0.50") + (
                "" if seed is None else f"-c4-seed{seed}")
            r = {"model": "m", "run": name, "method": method, "allocation": "uniform", "nm": nm,
                 "calibration": None if seed is None else "c4", "sparsity": 0.5, "seed": seed,
                 "perplexity": {"perplexity": float(np.exp(b.sum() / (W * (T - 1)))),
                                "block_nll": b.reshape(W, 3).tolist(), "block_tokens": 4, "windows": W, "seq_len": T},
                 "sparsity_check": {"achieved": 0.5}}
            p = tmp_path / f"{name}.json"
            p.write_text(json.dumps(r))
            paths.append(p)
    out = tmp_path / "out"
    write_outputs(paths, [], table=out / "t.parquet", summary=out / "s.parquet", markdown_path=out / "t.md",
                  svg=out / "p.svg", png=out / "p.png", section=out / "section.json",
                  comparisons_path=out / "c.parquet", calibration="c4", n_boot=200)
    md = (out / "t.md").read_text()
    assert "## N:M semi-structured sparsity (50%)" in md
    assert "## Each N:M pattern against unstructured uniform pruning at its sparsity" in md
    comp = pl.read_parquet(out / "c.parquet").filter(pl.col("kind") == "pattern")
    assert comp.height == 4 and set(comp["verdict"]) == {"holds"}  # 0.2-0.3 nats worse, 0.05-nat noise
    for r in comp.iter_rows(named=True):
        assert f"| {r['model']} | {r['method']} | {r['allocation']} | 0.50 | uniform | {r['ppl_ratio']:.3f} |" in md
    ids = [t["id"] for s in json.loads((out / "section.json").read_text())["sections"] for t in s["tables"]]
    assert "nm" in ids and "vs-pattern" in ids
