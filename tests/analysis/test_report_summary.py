"""results/summary.md and the README check: the numbers printed are the inputs' numbers."""

import json

import polars as pl
import pytest

from actpat.cli import main
from actpat.report.summary import BEGIN, END, check_readme, readme_section, summary_markdown, write_summary
from helpers import REPO


def _findings():
    return {"model": "m", "n_layers": 6, "threshold": 1e-3, "verdict_rule": "holds if lo > 0.",
            "findings": [
                {"id": "F1", "verdict": "holds", "paper_verdict": "holds",
                 "interval": {"quantity": "q1", "value": 0.1234, "lo": 0.05, "hi": 0.2, "level": 0.95,
                              "resamples": 1000, "n": {"samples_per_domain": {"a": 4, "b": 4}, "domains": 2}}},
                {"id": "V1-depth", "verdict": "inconclusive", "paper_verdict": None,
                 "ours": {"per_sparsity": [
                     {"method": "wanda", "calibration": "c4", "sparsity": s, "log_ppl_diff": d, "lo": lo, "hi": hi,
                      "seeds": [0, 1], "windows": 6, "blocks": 24, "verdict": v}
                     for s, d, lo, hi, v in ((0.5, 0.0171, 0.009, 0.024, "holds"),
                                             (0.7, 0.006, -0.01, 0.027, "inconclusive"))]},
                 "interval": {"quantity": "ramp - paper", "verdict": "inconclusive", "n": {"runs": 2}}},
            ]}


def _summary():
    rows = [("dense", None, None, 0.0, 1, 15.8, None), ("wanda", "uniform", "c4", 0.5, 2, 41.04, 0.07),
            ("wanda", "paper", "c4", 0.5, 2, 38.9, 0.2), ("wanda", "uniform", "c4", 0.6, 2, 130.0, 3.0),
            ("wanda", "paper", "c4", 0.6, 2, 96.0, 1.5), ("wanda", "paper", "mmlu", 0.5, 1, 40.8, None)]
    return pl.DataFrame([{"model": "m", "method": m, "allocation": a, "calibration": c, "sparsity": s, "seeds": n,
                          "perplexity_mean": p, "perplexity_std": sd, "depth_spearman": None if a != "paper" else 0.9,
                          "mean_paper_mean": 0.31 if s == 0.5 else None,
                          "zs_questions": 80 if s == 0.5 else None, "zs_correct": 25 if s == 0.5 else None}
                         for m, a, c, s, n, p, sd in rows])


def _comparisons():
    alloc = [{"kind": "allocation", "model": "m", "method": "wanda", "calibration": "c4", "sparsity": s,
              "allocation": "uniform", "baseline": "paper", "windows": 6, "blocks": 24, "log_ppl_diff": d, "lo": lo,
              "hi": hi, "verdict": v, "level": 0.95, "acc_diff": None, "acc_lo": None, "acc_hi": None,
              "acc_verdict": None}
             for s, d, lo, hi, v in ((0.5, 0.0538, 0.01, 0.09, "holds"), (0.6, 0.3, -0.02, 0.61, "inconclusive"))]
    cal = [{"kind": "calibration", "model": "m", "method": "wanda", "calibration": "mmlu", "sparsity": 0.5,
            "allocation": "paper", "baseline": "c4", "windows": 6, "blocks": 24, "log_ppl_diff": 0.0745, "lo": 0.0485,
            "hi": 0.0993, "verdict": "holds", "level": 0.95, "acc_diff": 0.0375, "acc_lo": -0.0875, "acc_hi": 0.15,
            "acc_verdict": "inconclusive"}]
    return pl.DataFrame(alloc + cal)


def _sts():
    return pl.DataFrame([{"kind": "window", "label": "LLMDcos 19..27", "n": 256, "spearman": 0.128, "ci_low": -0.002,
                          "ci_high": 0.248, "verdict": "inconclusive"}])


def test_summary_prints_the_inputs_numbers():
    text = summary_markdown([_findings()], _summary(), _comparisons(), {"lee": _sts()})
    lines = text.splitlines()
    f1 = next(ln for ln in lines if ln.startswith("| F1 |"))
    assert f1 == "| F1 | q1 | +0.123 | [+0.050, +0.200] | samples per domain 4, domains 2 | **holds** | holds |"
    assert ("| V1-depth 50% | ramp - paper, wanda, calibration c4 | +0.017 | [+0.009, +0.024] "
            "| seeds 2, token blocks 24 | holds | n/a |") in lines
    assert "| V1-depth 70% | ramp - paper, wanda, calibration c4 | +0.006 | [-0.010, +0.027] " \
           "| seeds 2, token blocks 24 | inconclusive | n/a |" in lines
    assert "| V1-depth | holds only if it holds at every sparsity |  |  |  | **inconclusive** | n/a |" in lines
    assert "95% bootstrap, 1000 resamples" in text and "holds if lo > 0." in text
    assert "| uniform | 41.04 ± 0.07 (2) | 130.00 ± 3.00 (2) | – |" in lines
    assert "| paper | 38.90 ± 0.20 (2) | 96.00 ± 1.50 (2) | +0.90 |" in lines
    assert "dense 15.80" in text
    assert "| uniform | +0.054 [+0.010, +0.090] holds | +0.300 [-0.020, +0.610] inconclusive |" in lines
    # Validation 2: accuracy 25/80 with its Wilson interval (scipy), differences against c4 as given
    from scipy.stats import binomtest

    ci = binomtest(25, 80).proportion_ci(0.95, method="wilson")
    acc = f"31.2 [{100 * ci.low:.1f}, {100 * ci.high:.1f}] (80)"
    assert f"| c4 | 38.90 ± 0.20 (2) | {acc} | baseline | baseline |" in lines
    assert f"| mmlu | 40.80 (1) | {acc} | +0.074 [+0.049, +0.099] holds | +3.8 [-8.8, +15.0] inconclusive |" in lines
    assert "| lee | LLMDcos 19..27 | 256 | +0.128 | [-0.002, +0.248] | inconclusive |" in lines


def test_summary_without_pruning_or_sts():
    text = summary_markdown([_findings()], None, None, {})
    assert "Perplexity" not in text and "Validation 3" not in text and "| F1 |" in text


def test_readme_check_finds_and_fixes_a_stale_section(tmp_path, capsys):
    paths = {}
    for name, obj in (("findings.json", _findings()),):
        paths[name] = tmp_path / name
        paths[name].write_text(json.dumps(obj))
    _summary().write_parquet(tmp_path / "s.parquet")
    _comparisons().write_parquet(tmp_path / "c.parquet")
    _sts().write_parquet(tmp_path / "lee.spearman.parquet")
    out = tmp_path / "summary.md"
    text = write_summary([paths["findings.json"]], tmp_path / "s.parquet", tmp_path / "c.parquet",
                         [tmp_path / "lee.spearman.parquet"], out)
    assert out.read_text() == text
    readme = tmp_path / "README.md"
    stale = text.replace("41.04", "41.00")
    readme.write_text(f"# Title\n\nintro\n\n{BEGIN}\n{stale}{END}\n\n## After\n")
    diff = check_readme(readme, out)
    assert "-| uniform | 41.00 ± 0.07 (2) | 130.00 ± 3.00 (2) | – |" in diff
    assert "+| uniform | 41.04 ± 0.07 (2) | 130.00 ± 3.00 (2) | – |" in diff
    assert main(["readme", "--readme", str(readme), "--summary", str(out)]) == 1
    assert main(["readme", "--readme", str(readme), "--summary", str(out), "--write"]) == 0
    assert check_readme(readme, out) == [] and readme_section(readme.read_text()) == text
    assert readme.read_text().startswith("# Title\n\nintro\n\n") and readme.read_text().endswith("\n\n## After\n")
    assert main(["readme", "--readme", str(readme), "--summary", str(out)]) == 0
    assert main(["readme", "--readme", str(readme), "--summary", str(tmp_path / "none.md")]) == 2
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="no results markers"):
        check_readme(readme, out)


def test_the_committed_readme_holds_a_generated_results_section():
    section = readme_section((REPO / "README.md").read_text())
    assert any(ln.startswith("| F1 |") for ln in section.splitlines()), "run make run, then actpat readme --write"


def test_two_models_side_by_side():
    """With two models a side-by-side table comes first: each model's value, interval and verdict per finding."""
    a, b = _findings(), _findings()
    b["model"], b["threshold"] = "g", 2e-4
    b["findings"][0] = dict(b["findings"][0], verdict="inconclusive",
                            interval=dict(b["findings"][0]["interval"], value=-0.01, lo=-0.2, hi=0.3))
    lines = summary_markdown([a, b], None, None, {}).splitlines()
    assert lines[2] == "| finding | `m` (γ = 0.001) | `g` (γ = 0.0002) | verdict on the paper's own numbers |"
    assert "| F1 | +0.123 [+0.050, +0.200] **holds** | -0.010 [-0.200, +0.300] **inconclusive** | holds |" in lines
    assert "| V1-depth | **inconclusive** | **inconclusive** | n/a |" in lines
    assert summary_markdown([a], None, None, {}).splitlines()[0].startswith("Model `m`")
