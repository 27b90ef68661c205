"""Figures and report sections of the analysis stage (Findings 1-3) for one model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import altair as alt
import polars as pl

from ..analysis.findings import fmt as _fmt
from ..analysis.similarity import figure_pairs, select_pairs, window_means
from . import charts
from .html import make_section, write_sections

FIGURES = ("density", "similarity", "similarity_profile", "relevance", "relevance_scatter")
CAPTIONS = {
    "density": "Activation density per layer for each domain: fraction of weights whose mean activation exceeds each "
               "threshold γ (the paper's N_i, Figs 1, 2, 4), the share of the model-wide top-k% activations "
               "(threshold-free) and the Gini coefficient of each layer's activations. Dashed: general text domains.",
    "similarity": "LLMDcos per layer for pairs of samples from the same or different domains (paper Fig. 3 style): "
                  "boxes span the quartiles, whiskers reach the most extreme values within 1.5·IQR, circles are "
                  "outliers.",
    "similarity_profile": "Mean LLMDcos per layer for every domain pair (thin) and averaged over within- and "
                          "cross-domain pairs (bold); the shaded bands are the shallow and deep windows.",
    "relevance": "Relevance map (paper Fig. 6): mean LLMDcos over the deep and the shallow window for every domain "
                 "pair, next to the cosine of the domains' mean MiniLM sentence embeddings.",
    "relevance_scatter": "Each point is a pair of different domains: window-mean LLMDcos against the mean-embedding "
                         "cosine; the title gives Spearman's rho over the pairs (Finding 3 as a number).",
}


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _placeholder(text: str) -> alt.Chart:
    return alt.Chart(pl.DataFrame({"t": [text]})).mark_text(fontSize=14).encode(text="t:N").properties(
        width=400, height=60)


def build_charts(density: pl.DataFrame, similarity: pl.DataFrame, relevance: pl.DataFrame, correlations: Mapping,
                 *, windows: Mapping[str, tuple[int, int]], text_domains: Sequence[str] = (),
                 pairs: Sequence[Sequence[str]] | None = None) -> dict[str, alt.TopLevelMixin]:
    domains = sorted(set(similarity["domain_a"].to_list()) | set(similarity["domain_b"].to_list()))
    sel = select_pairs(similarity, figure_pairs(domains, pairs))
    scatter = charts.relevance_scatter(relevance, correlations)
    return {
        "density": charts.density_chart(density, text_domains),
        "similarity": charts.similarity_boxplot(sel),
        "similarity_profile": charts.similarity_profile_chart(similarity, windows["shallow"], windows["deep"]),
        "relevance": charts.relevance_chart(relevance),
        "relevance_scatter": scatter if scatter is not None else _placeholder(
            "embedding similarity disabled (relevance.embedding_asset: null)"),
    }


def build_sections(model: str, chart_objs: Mapping[str, alt.TopLevelMixin], findings: dict,
                   similarity: pl.DataFrame, relevance: pl.DataFrame, correlations: Mapping,
                   windows: Mapping[str, tuple[int, int]], order: int = 20) -> list[dict]:
    items = {f["id"]: f for f in findings["findings"]}
    L = findings["n_layers"]

    def chart(name):
        return {"id": name, "title": None, "caption": CAPTIONS[name], "spec": chart_objs[name]}

    summary = make_section(
        f"analysis-{model}-summary", f"Findings summary ({model})", order=order,
        text=[f"Model {model}: {L} decoder layers, primary threshold γ = {findings['threshold']:g}; windows "
              f"(0-indexed, inclusive): shallow {windows['shallow'][0]}..{windows['shallow'][1]}, deep "
              f"{windows['deep'][0]}..{windows['deep'][1]}. Each row states the paper's claim, the quantity measured "
              "here, our value and the same quantity computed from the paper's printed numbers where they exist "
              "(paper.md §3 and Appendix B), and whether the claim holds (strict inequalities; see "
              "actpat.analysis.findings)."],
        tables=[{"id": "findings", "title": "Findings", **findings_table(findings), "digits": 3}])

    f1 = items.get("F1", {})
    per_domain = f1.get("ours", {}).get("per_domain", {})
    f1k = items.get("F1 (top-k)", {}).get("ours", {}).get("per_domain", {})
    rows = [[d, p["first"], p["mid"], p["deep_half"], "holds" if p["holds"] else "does not hold",
             f1k.get(d, {}).get("mid"), f1k.get(d, {}).get("deep_half")] for d, p in sorted(per_domain.items())]
    sec1 = make_section(
        f"analysis-{model}-density", f"Finding 1: activation density by layer ({model})", order=order + 1,
        text=[f"{f1.get('claim', '')} Measured: {f1.get('detail', 'n/a')}."],
        tables=[{"id": "f1", "title": "Per domain: mean fraction above γ by layer group (and top-k share)",
                 "columns": ["domain", "layer 1", f"layers 3..{L // 2}", f"layers {L // 2 + 1}..{L}", "shape",
                             f"top-k share 3..{L // 2}", f"top-k share {L // 2 + 1}..{L}"],
                 "rows": rows, "digits": 4}],
        charts=[chart("density")])

    sh = window_means(similarity, windows["shallow"]).rename({"window_mean": "shallow"})
    dp = window_means(similarity, windows["deep"]).rename({"window_mean": "deep"})
    wm = sh.join(dp.select("domain_a", "domain_b", "deep"), on=["domain_a", "domain_b"]).sort("kind", "domain_a",
                                                                                              "domain_b")
    rows2 = [[f"{r['domain_a']}–{r['domain_b']}", r["kind"], r["shallow"], r["deep"], r["shallow"] - r["deep"]]
             for r in wm.iter_rows(named=True)]
    f2 = items.get("F2", {})
    sec2 = make_section(
        f"analysis-{model}-similarity", f"Finding 2: activation similarity across domains ({model})",
        order=order + 2,
        text=[f"{f2.get('claim', '')} Measured: {f2.get('detail', 'n/a')}. "
              f"{_cap(items.get('F2b', {}).get('detail', ''))}. Shallow-to-deep "
              f"{items.get('F2c', {}).get('detail', '')}."],
        charts=[chart("similarity"), chart("similarity_profile")],
        tables=[{"id": "windows", "title": "Mean LLMDcos per domain pair: shallow vs deep window",
                 "columns": ["pair", "kind", "shallow", "deep", "drop"], "rows": rows2, "digits": 3}])

    f3 = items.get("F3", {})
    rows3 = [[w, c.get("rho"), c.get("p"), c.get("n")] for w, c in correlations.items()]
    sec3 = make_section(
        f"analysis-{model}-relevance", f"Finding 3: deep-layer LLMDcos and data relevance ({model})",
        order=order + 3,
        text=[f"{f3.get('claim', '')} Measured: {f3.get('detail', 'n/a')}. Deep-window map: "
              f"{items.get('F3b', {}).get('detail', '')}."],
        charts=[chart("relevance"), chart("relevance_scatter")],
        tables=[{"id": "spearman", "title": "Spearman rho: window-mean LLMDcos vs mean-embedding cosine "
                                            "(off-diagonal domain pairs)",
                 "columns": ["window", "rho", "p", "pairs"], "rows": rows3, "digits": 3}])
    return [summary, sec1, sec2, sec3]


def write_analysis_report(*, model: str, density: str | Path, similarity: str | Path, relevance: str | Path,
                          relevance_json: str | Path, findings: str | Path, figures: Mapping[str, Mapping[str, str]],
                          section: str | Path, text_domains: Sequence[str] = (),
                          pairs: Sequence[Sequence[str]] | None = None, order: int = 20) -> None:
    """Write every figure (``figures[name] = {"svg": path, "png": path}``) and the section file."""
    dens = pl.read_parquet(density)
    sim = pl.read_parquet(similarity)
    rel = pl.read_parquet(relevance)
    rj = json.loads(Path(relevance_json).read_text())
    fj = json.loads(Path(findings).read_text())
    wins = {k: tuple(v) for k, v in rj["windows"].items()}
    objs = build_charts(dens, sim, rel, rj["correlations"], windows=wins, text_domains=text_domains, pairs=pairs)
    for name, paths in figures.items():
        if name not in objs:
            raise ValueError(f"unknown figure {name!r}; known: {', '.join(objs)}")
        charts.save_chart(objs[name], svg=paths.get("svg"), png=paths.get("png"))
    write_sections(build_sections(model, objs, fj, sim, rel, rj["correlations"], wins, order), section)


def findings_table(findings: dict) -> dict:
    """The report table: one row per finding (columns, rows)."""
    columns = ["finding", "claim", "ours", "tested quantity", "value", "interval", "n", "verdict (ours)", "paper",
               "verdict (paper's numbers)"]
    rows = []
    for f in findings["findings"]:
        iv = f.get("interval") or {}
        ci = (f"[{_fmt(iv['lo'])}, {_fmt(iv['hi'])}] ({100 * iv['level']:.0f}%, {iv['resamples']} resamples)"
              if iv.get("lo") is not None else "n/a")
        rows.append([f["id"], f["claim"], f["detail"], iv.get("quantity", "n/a"), _fmt(iv.get("value")), ci,
                     n_text(iv.get("n")), f["verdict"], _paper_text(f), f.get("paper_verdict") or "n/a"])
    return {"columns": columns, "rows": rows}


def n_text(n) -> str:
    if not n:
        return "n/a"
    parts = []
    for k, v in n.items():
        if isinstance(v, dict):
            vals = sorted(set(v.values()))
            v = vals[0] if len(vals) == 1 else f"{vals[0]}-{vals[-1]}"
        parts.append(f"{k.replace('_', ' ')} {v}")
    return ", ".join(parts)


def _paper_text(f: dict) -> str:
    p = f.get("paper")
    if not p:
        return f.get("paper_source") or "n/a"
    nums = ", ".join(f"{k.replace('_', ' ')} {_fmt(v)}" for k, v in p.items() if not isinstance(v, dict))
    return f"{nums} ({f['paper_source']})"
