"""Validation 3 analysis (actpat.analysis.sts): every number checked against scipy, a direct
reimplementation or a hand-computed table."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from actpat.analysis import sts  # noqa: E402
from actpat.report import sts as sts_report  # noqa: E402
from actpat.config import ConfigError, paper_sts_window, resolve_window  # noqa: E402
from helpers import REPO  # noqa: E402

MINILM = REPO / "resources" / "assets" / "minilm"
need_minilm = pytest.mark.skipif(not (MINILM / "model" / "config.json").is_file(),
                                 reason="resources/assets/minilm absent (run the fetch_asset rule for minilm)")

# Human scores and a measure with ties on both sides (Lee-style scores repeat often).
X_TIES = np.array([0.1, 0.4, 0.4, 0.2, 0.9, 0.4, 0.7, 0.1, 0.5, 0.8, 0.3, 0.6])
Y_TIES = np.array([1.0, 2.0, 2.0, 1.0, 5.0, 3.0, 4.0, 2.0, 3.0, 4.5, 1.0, 3.0])


def make_inputs(n=40, L=8, seed=0, noise=0.15):
    """Synthetic pair table, llmdcos table (signal grows with depth) and hidden-state table."""
    rng = np.random.default_rng(seed)
    ids = [f"pair{i:03d}" for i in range(n)]
    score = np.round(rng.uniform(0, 5, n), 1)
    pairs = pl.DataFrame({"id": ids, "text_a": [f"a {i}" for i in range(n)], "text_b": [f"b {i}" for i in range(n)],
                          "score": score, "source": ["test"] * n})
    rows = [(ids[i], layer, float(np.clip(0.5 + (layer / L) * (score[i] - 2.5) / 10 + rng.normal(0, noise), 0, 1)))
            for i in range(n) for layer in range(L)]
    llm = pl.DataFrame(rows, schema=["id", "layer", "llmdcos"], orient="row")
    llm = llm.with_columns(dot=pl.col("llmdcos"), norm2_a=pl.lit(1.0), norm2_b=pl.lit(1.0))
    hidden = pl.DataFrame({"id": ids, "hidden_cos": score / 5 + rng.normal(0, 0.4, n)})
    return pairs, llm, hidden


# ------------------------------------------------------------------------ statistics


def test_correlate_matches_scipy_with_ties():
    c = sts.correlate(X_TIES, Y_TIES)
    rho = stats.spearmanr(X_TIES, Y_TIES)
    r = stats.pearsonr(X_TIES, Y_TIES)
    assert c["n"] == 12 and c["n_excluded"] == 0 and c["note"] is None
    assert c["spearman"] == pytest.approx(rho.statistic, abs=1e-12)
    assert c["spearman_p"] == pytest.approx(rho.pvalue, rel=1e-10)
    assert c["pearson"] == pytest.approx(r.statistic, abs=1e-12)
    assert c["pearson_p"] == pytest.approx(r.pvalue, rel=1e-10)
    # Independent check of tie handling: Pearson of average ranks.
    ra, rb = stats.rankdata(X_TIES), stats.rankdata(Y_TIES)
    assert c["spearman"] == pytest.approx(np.corrcoef(ra, rb)[0, 1], abs=1e-12)


def test_correlate_drops_nan_pairs_and_counts_them():
    x = X_TIES.copy()
    x[[2, 7]] = np.nan
    c = sts.correlate(x, Y_TIES)
    keep = np.isfinite(x)
    assert c["n"] == 10 and c["n_excluded"] == 2
    assert c["spearman"] == pytest.approx(stats.spearmanr(x[keep], Y_TIES[keep]).statistic, abs=1e-12)


def direct_bootstrap(x, y, n_boot, seed, level=0.95):
    """Row by row with scipy's spearmanr, as an independent reference."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), size=(n_boot, len(x)))
    vals = []
    for row in idx:
        xs, ys = x[row], y[row]
        if np.all(xs == xs[0]) or np.all(ys == ys[0]):
            continue
        vals.append(stats.spearmanr(xs, ys).statistic)
    a = (1 - level) / 2 * 100
    return np.percentile(vals, [a, 100 - a]), len(vals)


def test_bootstrap_matches_direct_reimplementation_and_contains_estimate():
    pairs, llm, _ = make_inputs(n=30, L=4)
    y = pairs["score"].to_numpy()
    x = llm.filter(pl.col("layer") == 3).sort("id")["llmdcos"].to_numpy()
    lo, hi, used = sts.bootstrap_spearman(x, y, 500, seed=7)
    (ref_lo, ref_hi), ref_used = direct_bootstrap(x, y, 500, 7)
    assert used == ref_used == 500
    assert lo == pytest.approx(ref_lo, abs=1e-12) and hi == pytest.approx(ref_hi, abs=1e-12)
    rho = stats.spearmanr(x, y).statistic
    assert lo < rho < hi
    # Same seed, same interval; another seed, another interval.
    assert sts.bootstrap_spearman(x, y, 500, seed=7)[:2] == (lo, hi)
    assert sts.bootstrap_spearman(x, y, 500, seed=8)[:2] != (lo, hi)


def test_bootstrap_with_ties_and_skipped_constant_resamples():
    # 5 pairs with heavy ties: some resamples are constant on one side and must be skipped.
    x = np.array([0.1, 0.1, 0.1, 0.2, 0.3])
    y = np.array([1.0, 1.0, 2.0, 2.0, 3.0])
    lo, hi, used = sts.bootstrap_spearman(x, y, 400, seed=3)
    (ref_lo, ref_hi), ref_used = direct_bootstrap(x, y, 400, 3)
    assert used == ref_used and used < 400
    assert lo == pytest.approx(ref_lo, abs=1e-12) and hi == pytest.approx(ref_hi, abs=1e-12)


def test_bootstrap_zero_resamples_gives_nan():
    lo, hi, used = sts.bootstrap_spearman(X_TIES, Y_TIES, 0, seed=1)
    assert np.isnan(lo) and np.isnan(hi) and used == 0


# --------------------------------------------------------------------------- windows


@pytest.mark.parametrize("L, expected", [(12, (8, 9)), (24, (15, 21)), (30, (19, 27)), (32, (20, 29)),
                                         (40, (25, 37)), (80, (50, 77))])
def test_paper_sts_window_by_depth(L, expected):
    # Hand-computed from the rule: first = min(round(20 * L / 32), L - 3), last = L - 3
    # (llama_sts.py's range(20, L - 2) for 32 layers).  NB: the paper's 40-layer Llama2-13B used
    # 20..37 unscaled; set sts.window: [20, 37] to reproduce that exactly.
    assert paper_sts_window(L) == expected
    first, last = expected
    assert last == L - 3
    assert abs(first - 20 * L / 32) <= 0.5
    assert resolve_window(None, L, paper_sts_window) == expected


def test_posthoc_windows_for_32_layers_are_the_codes_ranges():
    # llama_sts.py: [12, L-2), [12, L), [16, L-2), [16, L), [20, L) -> inclusive 0-indexed ranges.
    assert [(lo, hi) for _, lo, hi in sts.posthoc_windows(32)] == [(12, 29), (12, 31), (16, 29), (16, 31), (20, 31)]
    assert [(lo, hi) for _, lo, hi in sts.posthoc_windows(30)] == [(11, 27), (11, 29), (15, 27), (15, 29), (19, 29)]


def test_configured_window_outside_depth_is_rejected():
    with pytest.raises(ConfigError, match="outside the model's 8 layers"):
        resolve_window([5, 8], 8, paper_sts_window)


def test_window_sums_from_hand_made_table():
    # 3 pairs x 4 layers, rows shuffled; window 1..2.
    llm = pl.DataFrame({
        "id": ["b", "a", "c", "a", "b", "c", "a", "c", "b", "a", "b", "c"],
        "layer": [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3],
        "llmdcos": [0.9, 0.1, 0.5, 0.2, 0.3, 0.4, 0.25, 0.6, 0.35, 0.0, 1.0, 0.7],
    })
    mat, missing = sts.llmdcos_matrix(llm, ["a", "b", "c"])
    assert missing == []
    np.testing.assert_allclose(sts.window_sum(mat, (1, 2)), [0.45, 0.65, 1.0])
    np.testing.assert_allclose(sts.window_sum(mat, (0, 3)), [0.55, 2.55, 2.2])
    np.testing.assert_allclose(sts.window_sum(mat, (3, 3)), [0.0, 1.0, 0.7])


def test_evaluate_rows_match_independent_computation():
    pairs, llm, hidden = make_inputs(n=40, L=8)
    emb = pairs["score"].to_numpy() / 5 + np.random.default_rng(5).normal(0, 0.3, 40)
    res = sts.measure(pairs, llm, hidden, emb, window=None, n_boot=200, seed=1, model="m", pairset="p")
    y = pairs["score"].to_numpy()
    wide = llm.pivot(on="layer", index="id", values="llmdcos").sort("id")
    lo, hi = paper_sts_window(8)  # (5, 5)
    win = res.filter(pl.col("kind") == "window").row(0, named=True)
    assert (win["first"], win["last"]) == (lo, hi)
    ref = sum(wide[str(k)].to_numpy() for k in range(lo, hi + 1))
    assert win["spearman"] == pytest.approx(stats.spearmanr(ref, y).statistic, abs=1e-12)
    assert win["pearson"] == pytest.approx(stats.pearsonr(ref, y).statistic, abs=1e-12)
    assert win["ci_low"] <= win["spearman"] <= win["ci_high"]
    layers = res.filter(pl.col("kind") == "layer").sort("first")
    assert layers["first"].to_list() == list(range(8))
    for k in range(8):
        assert layers["spearman"][k] == pytest.approx(stats.spearmanr(wide[str(k)].to_numpy(), y).statistic,
                                                      abs=1e-12)
    base = {r["measure"]: r for r in res.filter(pl.col("kind") == "baseline").iter_rows(named=True)}
    assert base["hidden_cos"]["spearman"] == pytest.approx(
        stats.spearmanr(hidden["hidden_cos"].to_numpy(), y).statistic, abs=1e-12)
    assert base["embedding_cos"]["spearman"] == pytest.approx(stats.spearmanr(emb, y).statistic, abs=1e-12)
    post = res.filter(pl.col("kind") == "posthoc_window")
    for r in post.iter_rows(named=True):
        ref = sum(wide[str(k)].to_numpy() for k in range(r["first"], r["last"] + 1))
        assert r["spearman"] == pytest.approx(stats.spearmanr(ref, y).statistic, abs=1e-12)
    assert (lo, hi) not in list(zip(post["first"], post["last"]))  # the main window is not repeated


def test_configured_window_is_used():
    pairs, llm, hidden = make_inputs(n=20, L=6)
    res = sts.measure(pairs, llm, hidden, None, window=[1, 4], n_boot=50, seed=1)
    w = res.filter(pl.col("kind") == "window").row(0, named=True)
    assert (w["first"], w["last"]) == (1, 4)
    assert "embedding_cos" not in res["measure"].to_list()


def test_same_input_in_another_row_order_gives_same_table():
    pairs, llm, hidden = make_inputs(n=25, L=5)
    a = sts.measure(pairs, llm, hidden, None, n_boot=100, seed=2)
    b = sts.measure(pairs, llm.sample(fraction=1.0, shuffle=True, seed=4), hidden.reverse(), None,
                     n_boot=100, seed=2)
    assert a.equals(b)


# ------------------------------------------------------------- degenerate and bad input


def test_constant_scores_give_nan_with_logged_reason(caplog):
    pairs, llm, hidden = make_inputs(n=10, L=4)
    pairs = pairs.with_columns(score=pl.lit(3.0))
    with caplog.at_level(logging.WARNING, logger="actpat.analysis.sts"):
        res = sts.measure(pairs, llm, hidden, None, n_boot=50, seed=1)
    assert res["spearman"].is_nan().all() and res["ci_low"].is_nan().all()
    assert set(res["note"].to_list()) == {"human score is constant over all 10 pairs"}
    assert "human score is constant" in caplog.text


def test_fewer_than_three_pairs_gives_nan(caplog, tmp_path):
    pairs, llm, hidden = make_inputs(n=2, L=4)
    with caplog.at_level(logging.WARNING, logger="actpat.analysis.sts"):
        res = sts.measure(pairs, llm, hidden, None, n_boot=50, seed=1, model="m", pairset="p")
    assert res["spearman"].is_nan().all()
    assert res["note"][0] == "fewer than 3 usable pairs (2)"
    assert "fewer than 3 usable pairs" in caplog.text
    # The outputs are still written (a figure with no curve, a report section with the reason).
    out = {k: tmp_path / f"o.{k}" for k in ("table", "md", "svg", "png", "section")}
    sts_report.write_outputs(res, model="m", pairset="p", n_boot=50, seed=1, table=out["table"], md=out["md"],
                      svg=out["svg"], png=out["png"], section_json=out["section"])
    assert "no defined correlation: fewer than 3 usable pairs" in out["md"].read_text()


def test_constant_measure_in_one_layer_is_nan_only_there():
    pairs, llm, hidden = make_inputs(n=12, L=4)
    llm = llm.with_columns(llmdcos=pl.when(pl.col("layer") == 0).then(0.5).otherwise(pl.col("llmdcos")))
    res = sts.measure(pairs, llm, hidden, None, n_boot=50, seed=1)
    lay = res.filter(pl.col("kind") == "layer").sort("first")
    assert np.isnan(lay["spearman"][0]) and lay["note"][0] == "measure is constant over all 12 pairs"
    assert np.isfinite(lay["spearman"][1:].to_numpy()).all()


def test_undefined_llmdcos_excludes_pair_from_window_only(caplog):
    pairs, llm, hidden = make_inputs(n=15, L=4)
    llm = llm.with_columns(llmdcos=pl.when((pl.col("id") == "pair003") & (pl.col("layer") == 3))
                           .then(float("nan")).otherwise(pl.col("llmdcos")))
    with caplog.at_level(logging.WARNING, logger="actpat.analysis.sts"):
        res = sts.measure(pairs, llm, hidden, None, window=[2, 3], n_boot=50, seed=1)
    w = res.filter(pl.col("kind") == "window").row(0, named=True)
    assert (w["n"], w["n_excluded"]) == (14, 1)
    l2 = res.filter((pl.col("kind") == "layer") & (pl.col("first") == 2)).row(0, named=True)
    assert (l2["n"], l2["n_excluded"]) == (15, 0)
    assert "1 pair(s) excluded" in caplog.text


def test_unscored_pairs_are_excluded_and_logged(caplog):
    pairs, llm, hidden = make_inputs(n=12, L=4)
    llm = llm.filter(pl.col("id") != "pair005")
    with caplog.at_level(logging.WARNING, logger="actpat.analysis.sts"):
        res = sts.measure(pairs, llm, hidden, None, n_boot=50, seed=1)
    assert set(res["n"]) == {11} and set(res["n_excluded"]) == {0}  # baselines use the same 11 pairs
    assert "1 of 12 pairs have no LLMDcos" in caplog.text and "pair005" in caplog.text
    keep = pairs["id"] != "pair005"
    hid = res.filter(pl.col("measure") == "hidden_cos").row(0, named=True)
    assert hid["spearman"] == pytest.approx(
        stats.spearmanr(hidden.filter(keep)["hidden_cos"], pairs.filter(keep)["score"]).statistic, abs=1e-12)


@pytest.mark.parametrize("mutate, message", [
    (lambda p, l, h: (p, pl.concat([l, l.head(1)]), h), r"\(id, layer\) = \('pair000', 0\) appears more than once"),
    (lambda p, l, h: (p.filter(pl.col("id") != "pair002"), l, h), r"pair id\(s\) \['pair002'\] are not in the pair"),
    (lambda p, l, h: (p, l.filter(~((pl.col("id") == "pair001") & (pl.col("layer") == 2))), h),
     "pair 'pair001' has 3 layers, expected 4"),
    (lambda p, l, h: (p, l.filter(pl.col("layer") != 1), h), r"layers must be 0..L-1 without gaps"),
    (lambda p, l, h: (p.with_columns(score=pl.when(pl.col("id") == "pair004").then(None).otherwise("score")), l, h),
     r"score missing or not finite for pair id\(s\) \['pair004'\]"),
    (lambda p, l, h: (p, l.with_columns(llmdcos=pl.when(pl.col("layer") == 1).then(1.5).otherwise("llmdcos")), h),
     r"llmdcos 1.5 outside \[0, 1\] at id 'pair000', layer 1"),
    (lambda p, l, h: (pl.concat([p, p.head(1)]), l, h), r"duplicate pair id\(s\) \['pair000'\]"),
    (lambda p, l, h: (p, l, h.with_columns(id=pl.lit("zzz"))), r"duplicate pair id"),
])
def test_bad_input_is_rejected_with_the_row_named(mutate, message):
    pairs, llm, hidden = mutate(*make_inputs(n=8, L=4))
    with pytest.raises(ValueError, match=message):
        sts.measure(pairs, llm, hidden, None, n_boot=10, seed=1)


# ------------------------------------------------------------------------- outputs


def test_write_outputs(tmp_path):
    pairs, llm, hidden = make_inputs(n=30, L=6)
    emb = np.linspace(0, 1, 30)
    res = sts.measure(pairs, llm, hidden, emb, n_boot=100, seed=1, model="tiny", pairset="toy")
    out = {k: tmp_path / "sub" / f"o.{k}" for k in ("table", "md", "svg", "png", "section")}
    sts_report.write_outputs(res, model="tiny", pairset="toy", n_boot=100, seed=1, table=out["table"], md=out["md"],
                      svg=out["svg"], png=out["png"], section_json=out["section"])
    assert pl.read_parquet(out["table"]).equals(res)
    assert out["svg"].read_text().lstrip().startswith("<svg")
    assert out["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = out["md"].read_text()
    w = res.row(0, named=True)
    assert f"| {w['label']} | 30 | {w['spearman']:.3f} | [{w['ci_low']:.3f}, {w['ci_high']:.3f}]" in md
    assert "**paper** Llama2-7B, STS-B / SICK (other models and data) | 256 | 0.66 / 0.51" in md
    assert "## Other windows (post-hoc)" in md
    from actpat.report.html import load_sections

    sec = load_sections(out["section"])[0]  # validates the section format of the standalone report
    assert sec["id"] == "sts-tiny-toy"
    assert sec["charts"][0]["spec"]["$schema"].startswith("https://vega.github.io/schema/vega-lite/")
    n_post = sum((lo, hi) != paper_sts_window(6) for _, lo, hi in sts.posthoc_windows(6))  # 16..L-2 = main here
    assert n_post == 4
    assert [len(t["rows"]) for t in sec["tables"]] == [3 + 3, n_post, 6]
    assert all(len(r) == len(t["columns"]) for t in sec["tables"] for r in t["rows"])
    assert not list((tmp_path / "sub").glob(".*tmp"))  # no temporary files left behind


def test_shared_text_caveat():
    assert sts.shared_text_note(["a", "b"], ["c", "d"]) is None
    note = sts.shared_text_note(["a", "a", "b"], ["b", "c", "c"])
    assert note.startswith("The 3 pairs are built from 3 distinct texts")


def test_caveat_reaches_markdown_and_section(tmp_path):
    pairs, llm, hidden = make_inputs(n=10, L=4)
    res = sts.measure(pairs, llm, hidden, None, n_boot=20, seed=1)
    out = {k: tmp_path / f"o.{k}" for k in ("table", "md", "svg", "png", "section")}
    sts_report.write_outputs(res, model="m", pairset="p", n_boot=20, seed=1, table=out["table"], md=out["md"],
                      svg=out["svg"], png=out["png"], section_json=out["section"], caveat="CAVEAT-XYZ")
    assert "CAVEAT-XYZ" in out["md"].read_text()
    assert "CAVEAT-XYZ" in json.loads(out["section"].read_text())["sections"][0]["text"][-1]


# ------------------------------------------------------------------ MiniLM baseline


@need_minilm
def test_embedding_cosine_matches_direct_embedding():
    from actpat.embeddings import embed_texts

    a = ["A man is playing a guitar.", "The cat sleeps.", "Stocks fell sharply today."]
    b = ["Someone plays the guitar.", "A man is playing a guitar.", "Stocks fell sharply today."]
    cos = sts.embedding_cosine(a, b, MINILM)
    ea, eb = embed_texts(a, MINILM).astype(np.float64), embed_texts(b, MINILM).astype(np.float64)
    ref = (ea * eb).sum(1) / np.linalg.norm(ea, axis=1) / np.linalg.norm(eb, axis=1)
    np.testing.assert_allclose(cos, ref, atol=1e-5)
    assert cos[2] == pytest.approx(1.0, abs=1e-5)
    assert cos[0] > cos[1]  # paraphrase closer than an unrelated sentence


# --------------------------------------------------------------- workflow rule


@need_minilm
@pytest.mark.skipif(shutil.which("snakemake") is None and not (Path(sys.executable).parent / "snakemake").exists(),
                    reason="snakemake not installed")
def test_sts_eval_rule_end_to_end(tmp_path):
    """The rule runs on synthetic engine outputs and writes every declared output."""
    import yaml

    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["sts"]["pairsets"] = {"toy": {"source": "gensim_lee", "pairs": 12}}
    cfg["sts"]["bootstrap"] = 50
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    model = sorted(cfg["models"])[0]
    pairs, llm, hidden = make_inputs(n=12, L=30)
    (tmp_path / "results" / "sts" / model).mkdir(parents=True)
    pairs.write_parquet(tmp_path / "results/sts/toy.parquet")
    llm.write_parquet(tmp_path / f"results/sts/{model}/toy.llmdcos.parquet")
    hidden.write_parquet(tmp_path / f"results/sts/{model}/toy.hidden.parquet")
    (tmp_path / "resources" / "assets").mkdir(parents=True)
    (tmp_path / "resources" / "assets" / "minilm").symlink_to(MINILM.resolve())
    smk = shutil.which("snakemake") or str(Path(sys.executable).parent / "snakemake")
    target = f"results/sts/{model}/toy.spearman.parquet"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([smk, "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "--configfile",
                           str(tmp_path / "config" / "config.yaml"), "-c1", target],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = pl.read_parquet(tmp_path / target)
    w = res.row(0, named=True)
    assert (w["kind"], w["first"], w["last"], w["n"]) == ("window", 19, 27, 12)
    assert set(res["measure"]) == {"llmdcos_sum", "llmdcos", "hidden_cos", "embedding_cos"}
    for suffix in ("md", "svg", "png"):
        assert (tmp_path / f"results/sts/{model}/toy.spearman.{suffix}").stat().st_size > 0
    assert json.loads((tmp_path / f"results/report/sections/sts-{model}-toy.json").read_text())["sections"][0]["title"]
    assert "rule sts_eval finished" in (tmp_path / f"logs/sts_eval/{model}/toy.log").read_text()
