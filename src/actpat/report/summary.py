"""results/summary.md: what the run finds, in a few tables, every number read from its outputs.

The README's results section is this file verbatim between two markers; ``actpat readme --check``
says whether the README matches a run (``make check-readme``) and ``--write`` copies it in.
Numbers are printed at a precision a rerun on another machine reproduces (seeded bootstraps,
deterministic CPU kernels); nothing here is typed by hand.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import polars as pl

from .analysis import n_text

BEGIN = "<!-- results:begin (generated from results/summary.md by `make check-readme`; do not edit) -->"
END = "<!-- results:end -->"


def _f(x, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)


def _md(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return out + ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]


def findings_lines(findings: Mapping) -> list[str]:
    rows, level, resamples = [], None, None
    for f in findings["findings"]:
        iv = f.get("interval") or {}
        per = (f.get("ours") or {}).get("per_sparsity") if isinstance(f.get("ours"), dict) else None
        if per:  # one row per sparsity (V1-depth), then the overall verdict
            for p in per:
                rows.append([f"{f['id']} {p['sparsity']:.0%}", f"{iv['quantity']}, {p['method']}, calibration "
                             f"{p['calibration']}", _f(p["log_ppl_diff"], "+.3f"), f"[{p['lo']:+.3f}, {p['hi']:+.3f}]",
                             n_text({"seeds": len(p["seeds"]), "token blocks": p["blocks"]}), p["verdict"], "n/a"])
            rows.append([f["id"], "holds only if it holds at every sparsity", "", "", "", f"**{f['verdict']}**",
                         f.get("paper_verdict") or "n/a"])
            continue
        level, resamples = iv.get("level", level), iv.get("resamples", resamples)
        ci = "n/a" if iv.get("lo") is None else f"[{iv['lo']:+.3f}, {iv['hi']:+.3f}]"
        rows.append([f["id"], iv.get("quantity", "n/a"), _f(iv.get("value"), "+.3f"), ci, n_text(iv.get("n")),
                     f"**{f['verdict']}**", f.get("paper_verdict") or "n/a"])
    head = (f"Model `{findings['model']}`, {findings['n_layers']} blocks, γ = {findings['threshold']:g}. "
            + (f"Intervals: {100 * level:.0f}% bootstrap, {resamples} resamples. " if level else "")
            + findings.get("verdict_rule", ""))
    return [head, ""] + _md(["finding", "tested quantity (> 0 is the paper's claim)", "value", "interval", "n",
                             "verdict", "verdict on the paper's own numbers"], rows)


def cross_model_lines(findings: Sequence[Mapping]) -> list[str]:
    """One row per finding, one column per model: value [interval] verdict, side by side."""
    ids = list(dict.fromkeys(f["id"] for run in findings for f in run["findings"]))
    rows = []
    for fid in ids:
        cells = []
        for run in findings:
            f = next((f for f in run["findings"] if f["id"] == fid), None)
            iv = (f or {}).get("interval") or {}
            if f is None:
                cells.append("–")
            elif iv.get("lo") is None:
                cells.append(f"**{f['verdict']}**")
            else:
                cells.append(f"{iv['value']:+.3f} [{iv['lo']:+.3f}, {iv['hi']:+.3f}] **{f['verdict']}**")
        paper = next((f.get("paper_verdict") for run in findings for f in run["findings"] if f["id"] == fid), None)
        rows.append([fid, *cells, paper or "n/a"])
    models = [f"`{run['model']}` (γ = {run['threshold']:g})" for run in findings]
    return ["Findings side by side (value [interval] verdict; details per model below):", ""] + \
        _md(["finding", *models, "verdict on the paper's own numbers"], rows)


def _cell(r: Mapping) -> str:
    m, s, n = r["perplexity_mean"], r["perplexity_std"], r["seeds"]
    return f"{m:.2f}" + ("" if s is None else f" ± {s:.2f}") + f" ({n})"


def _accuracy(r: Mapping) -> str:
    from ..analysis.uncertainty import wilson

    n, k = r.get("zs_questions"), r.get("zs_correct")
    if not n:
        return "n/a"
    lo, hi = wilson(int(k), int(n))
    return f"{100 * k / n:.1f} [{100 * lo:.1f}, {100 * hi:.1f}] ({n})"


def _delta(d: Mapping | None, x: str, lo: str, hi: str, verdict: str, pct: bool = False) -> str:
    if d is None or d[x] is None:
        return "n/a"
    k, spec = (100, "+.1f") if pct else (1, "+.3f")
    return f"{format(k * d[x], spec)} [{format(k * d[lo], spec)}, {format(k * d[hi], spec)}] {d[verdict]}"


def pruning_lines(summary: pl.DataFrame, comparisons: pl.DataFrame) -> list[str]:
    out = []
    dense = summary.filter(pl.col("method") == "dense")
    pruned = summary.filter(pl.col("method") != "dense")
    for (model, method, cal), g in pruned.group_by(["model", "method", "calibration"], maintain_order=True):
        sps = sorted(g["sparsity"].unique().to_list())
        if len(g["allocation"].unique()) < 2 and method != "magnitude":
            continue  # a lone configuration (the calibration swap) is shown below
        d = dense.filter(pl.col("model") == model)
        dense_txt = f", dense {d['perplexity_mean'][0]:.2f}" if d.height else ""
        out += ["", f"Perplexity of `{model}` pruned with {method}, calibration {cal or 'none'} "
                    f"(mean ± sample std over calibration seeds, their number in brackets{dense_txt}):", ""]
        rows = []
        for alloc in g["allocation"].unique(maintain_order=True).to_list():
            cells = []
            for sp in sps:
                r = g.filter((pl.col("allocation") == alloc) & (pl.col("sparsity") == sp))
                cells.append(_cell(r.row(0, named=True)) if r.height else "–")
            a = g.filter(pl.col("allocation") == alloc).row(0, named=True)
            rho = "–" if a["depth_spearman"] is None else f"{a['depth_spearman']:+.2f}"
            rows.append([alloc, *cells, rho])
        out += _md(["allocation", *[f"{sp:.0%}" for sp in sps], "ρ(per-layer sparsity, depth)"], rows)
        c = comparisons.filter((pl.col("kind") == "allocation") & (pl.col("model") == model)
                               & (pl.col("method") == method) & pl.col("calibration").eq_missing(cal))
        if c.height:
            lvl = int(round(100 * c["level"][0]))
            out += ["", f"Each allocation against the paper rule: Δ log PPL = log PPL(allocation) − log PPL(paper) "
                        f"[{lvl}% paired bootstrap over the calibration seeds and {c['blocks'][0]} token blocks of "
                        f"{c['windows'][0]} evaluation windows]; verdict on \"the paper rule is better\":", ""]
            rows = []
            for alloc in c["allocation"].unique(maintain_order=True).to_list():
                cells = []
                for sp in sps:
                    r = c.filter((pl.col("allocation") == alloc) & (pl.col("sparsity") == sp))
                    if r.height:
                        r = r.row(0, named=True)
                        cells.append(f"{r['log_ppl_diff']:+.3f} [{r['lo']:+.3f}, {r['hi']:+.3f}] {r['verdict']}")
                    else:
                        cells.append("–")
                rows.append([alloc, *cells])
            out += _md(["allocation", *[f"{sp:.0%}" for sp in sps]], rows)
    swap = pruned.filter(pl.col("allocation") == "paper").group_by(["model", "method", "sparsity"]).agg(
        pl.col("calibration").n_unique().alias("k")).filter(pl.col("k") > 1)
    for model, method, sp, _ in swap.sort(["model", "method", "sparsity"]).iter_rows():
        g = pruned.filter((pl.col("model") == model) & (pl.col("method") == method) & (pl.col("sparsity") == sp)
                          & (pl.col("allocation") == "paper")).sort("calibration")
        c = comparisons.filter((pl.col("kind") == "calibration") & (pl.col("model") == model)
                               & (pl.col("method") == method) & (pl.col("sparsity") == sp)
                               & (pl.col("allocation") == "paper"))
        base = c["baseline"][0] if c.height else None
        out += ["", f"Validation 2, the calibration domain ({method}, paper rule, {sp:.0%}; accuracy: 95% Wilson "
                    "interval over the questions of all zero-shot tasks, paper scorer; Δ against "
                    f"{base or 'the configured domain'}: paired bootstrap as above, verdict on \"{base} is "
                    "better\"):", ""]
        rows = []
        for r in g.iter_rows(named=True):
            d = c.filter(pl.col("calibration") == r["calibration"])
            d = d.row(0, named=True) if d.height else None
            rows.append([r["calibration"], _cell(r), _accuracy(r),
                         "baseline" if r["calibration"] == base else _delta(d, "log_ppl_diff", "lo", "hi", "verdict"),
                         "baseline" if r["calibration"] == base else _delta(d, "acc_diff", "acc_lo", "acc_hi",
                                                                             "acc_verdict", pct=True)])
        out += _md(["calibration", "perplexity", "mean zero-shot accuracy (%) [interval] (questions)",
                    "Δ log PPL [interval] verdict", "Δ accuracy, points [interval] verdict"], rows)
    return out


def sts_lines(sts: Mapping[str, pl.DataFrame]) -> list[str]:
    rows = []
    for name, res in sorted(sts.items()):
        for r in res.filter(pl.col("kind").is_in(["window", "baseline"])).iter_rows(named=True):
            rows.append([name, r["label"], str(r["n"]), _f(r["spearman"], "+.3f"),
                         f"[{_f(r['ci_low'], '+.3f')}, {_f(r['ci_high'], '+.3f')}]", r["verdict"]])
    if not rows:
        return []
    return ["", "Validation 3, sentence similarity (Spearman ρ with human scores, 95% bootstrap over pairs):", ""] + \
        _md(["pairs", "measure", "n", "ρ", "interval", "ρ > 0"], rows)


def summary_markdown(findings: Sequence[Mapping], summary: pl.DataFrame | None, comparisons: pl.DataFrame | None,
                     sts: Mapping[str, pl.DataFrame]) -> str:
    lines = cross_model_lines(findings) + [""] if len(findings) > 1 else []
    for f in findings:
        lines += findings_lines(f) + [""]
    if summary is not None:
        lines += pruning_lines(summary, comparisons if comparisons is not None else pl.DataFrame())
    lines += sts_lines(sts)
    return "\n".join(lines).strip() + "\n"


def write_summary(findings_paths, summary_path, comparisons_path, sts_paths, out) -> str:
    from ..atomic import write_text

    findings = [json.loads(Path(p).read_text()) for p in findings_paths]
    summary = pl.read_parquet(summary_path) if summary_path else None
    comp = pl.read_parquet(comparisons_path) if comparisons_path else None
    sts = {Path(p).name.split(".")[0] + (f" ({Path(p).parent.name})" if len(findings) > 1 else ""):
           pl.read_parquet(p) for p in sts_paths}
    text = summary_markdown(findings, summary, comp, sts)
    write_text(text, out)
    return text


# ----------------------------------------------------------------------------- README


def readme_section(readme: str) -> str:
    """The text between the README's results markers."""
    if BEGIN not in readme or END not in readme:
        raise ValueError(f"the README has no results markers ({BEGIN!r} ... {END!r})")
    return readme.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n") + "\n"


def with_section(readme: str, summary: str) -> str:
    head, rest = readme.split(BEGIN, 1)
    return head + BEGIN + "\n" + summary.rstrip("\n") + "\n" + END + rest.split(END, 1)[1]


def check_readme(readme_path: str | Path, summary_path: str | Path, write: bool = False) -> list[str]:
    """Lines of the README's results section that differ from the run's summary (empty: they match)."""
    import difflib

    readme, summary = Path(readme_path).read_text(), Path(summary_path).read_text()
    diff = list(difflib.unified_diff(readme_section(readme).splitlines(), summary.splitlines(), "README.md",
                                     str(summary_path), lineterm="", n=0))
    if diff and write:
        Path(readme_path).write_text(with_section(readme, summary))
    return diff
