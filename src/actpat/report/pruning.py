"""Validations 1-2 for the reader: the pruning tables' Markdown, the charts and the report section.

The numbers are ``actpat.evaluate.results`` (one row per run, means over seeds, the comparisons
with the paper rule); ``write_outputs`` is what the ``pruning_table`` rule calls.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import polars as pl

from ..atomic import write_parquet, write_text
from ..evaluate.results import SCORER_TITLES, SCORERS, collect, comparisons, summarise
from .charts import save_chart
from .html import make_section, write_sections


def _fmt(x, pct=False, digits=2):
    if x is None:
        return "–"
    return f"{100 * x:.{1 if pct else digits}f}" if pct else f"{x:.{digits}f}"


def _pm(mean, std, pct=False):
    if mean is None:
        return "–"
    m = _fmt(mean, pct)
    return m if std is None else f"{m} ± {_fmt(std, pct)}"


VERDICT_TEXT = "holds when the whole interval is above 0, does not hold when it is below 0, else inconclusive."


COMPARISONS = (("allocation", "Each allocation against the paper rule", "allocation"),
               ("calibration", "Each calibration domain against the configured one (Validation 2)", "calibration"),
               ("pattern", "Each N:M pattern against unstructured uniform pruning at its sparsity", "allocation"))
COMPARISON_CAPTION = (
    "Paired comparisons: Δ log PPL = log PPL(other) − log PPL(baseline), the mean over the calibration seeds "
    "both share, with the bootstrap interval over those seeds and the token blocks of the evaluation text; "
    "Δ acc = accuracy(baseline) − accuracy(other) over the zero-shot questions both answered (paper scorer), "
    "questions resampled.  Verdicts on 'the baseline is better': " + VERDICT_TEXT)


def _pp(x, lo, hi, pct=False) -> str:
    if x is None:
        return "–"
    k = 100 if pct else 1
    return f"{k * x:+.{1 if pct else 3}f} [{k * lo:+.{1 if pct else 3}f}, {k * hi:+.{1 if pct else 3}f}]"


def comparison_markdown(comp: pl.DataFrame) -> list[str]:
    lines = []
    for kind, title, head in COMPARISONS:
        c = comp.filter(pl.col("kind") == kind)
        if not c.height:
            continue
        lines += ["", f"## {title} ({int(c['level'][0] * 100)}% intervals)", "",
                  COMPARISON_CAPTION + f"  {c['n_boot'][0]} resamples; per seed: Δ log PPL for each seed.", ""]
        cols = ["model", "method", head, "sparsity", "baseline", "PPL ratio", "Δ log PPL [interval]", "per seed",
                "verdict", "Δ acc, % [interval] (questions)", "acc verdict"]
        lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for r in c.iter_rows(named=True):
            acc = ("–" if r["acc_diff"] is None else
                   f"{_pp(r['acc_diff'], r['acc_lo'], r['acc_hi'], pct=True)} ({r['questions']})")
            lines.append("| " + " | ".join([
                r["model"], r["method"], r[head], f"{r['sparsity']:.2f}", r["baseline"], f"{r['ppl_ratio']:.3f}",
                _pp(r["log_ppl_diff"], r["lo"], r["hi"]), ", ".join(f"{x:+.3f}" for x in r["per_seed"]), r["verdict"],
                acc, r["acc_verdict"] or "–"]) + " |")
    return lines


def nm_rows(summary: pl.DataFrame, comp: pl.DataFrame | None) -> list[dict]:
    """One row per model x method x calibration that has N:M runs: perplexity (mean over seeds) of
    unstructured uniform pruning at 50% and of each pattern, with the paired PPL ratio's interval."""
    pats = sorted({a for a in summary["allocation"].drop_nulls() if ":" in a},
                  key=lambda a: tuple(map(int, a.split(":"))))
    if not pats:
        return []
    out = []
    keys = ["model", "method", "calibration"]
    for (model, method, cal), g in summary.filter(pl.col("sparsity") == 0.5).group_by(keys, maintain_order=True):
        by = {r["allocation"]: r for r in g.iter_rows(named=True)}
        if not any(p in by for p in pats):
            continue
        row = {"model": model, "method": method, "calibration": cal,
               "uniform": by.get("uniform", {}).get("perplexity_mean"), "seeds": {}}
        for p in pats:
            r = by.get(p, {})
            row[p] = r.get("perplexity_mean")
            row["seeds"][p] = r.get("seeds")
            c = None if comp is None else comp.filter(
                (pl.col("kind") == "pattern") & (pl.col("model") == model) & (pl.col("method") == method)
                & (pl.col("allocation") == p) & (pl.col("calibration").eq_missing(cal)) & (pl.col("sparsity") == 0.5))
            row[f"{p} ratio"] = (None if c is None or not c.height else
                                 (c["ppl_ratio"][0], float(np.exp(c["lo"][0])), float(np.exp(c["hi"][0]))))
        out.append(row)
    return out


def nm_markdown(summary: pl.DataFrame, comp: pl.DataFrame | None) -> list[str]:
    rows = nm_rows(summary, comp)
    if not rows:
        return []
    pats = [k for k in rows[0] if ":" in k and not k.endswith("ratio")]
    lines = ["", "## N:M semi-structured sparsity (50%)", "",
             "Perplexity (mean over calibration seeds) of unstructured uniform pruning at 50% and of each N:M "
             "pattern, same method and calibration; ratio = PPL(pattern) / PPL(unstructured), the paired bootstrap's "
             "interval in brackets.", ""]
    cols = ["model", "method", "calibration", "unstructured"] + [c for p in pats for c in (p, f"{p} / unstructured")]
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = [r["model"], r["method"], r["calibration"] or "–", _fmt(r["uniform"])]
        for p in pats:
            ratio = r[f"{p} ratio"]
            cells += [_fmt(r[p]), "–" if ratio is None else f"{ratio[0]:.3f} [{ratio[1]:.3f}, {ratio[2]:.3f}]"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown(df: pl.DataFrame, summary: pl.DataFrame, tasks: Sequence[str], comp: pl.DataFrame | None = None) -> str:
    head = ["model", "method", "allocation", "calibration", "sparsity", "seed"]
    lines = ["# Pruning results (Validations 1-2)", "",
             "Perplexity: held-out text, non-overlapping windows (lower is better).  Accuracies in %, "
             f"{df['questions_per_task'].min()} questions per task; the three scorers are separate tables and "
             "are never averaged together.", ""]
    for s in SCORERS:
        lines += [f"## Per run: {SCORER_TITLES[s]}", ""]
        cols = head + ["PPL"] + list(tasks) + ["mean"]
        lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for r in df.iter_rows(named=True):
            cells = [r["model"], r["method"], r["allocation"] or "–", r["calibration"] or "–",
                     f"{r['sparsity']:.2f}", "–" if r["seed"] is None else str(r["seed"]), _fmt(r["perplexity"])]
            cells += [_fmt(r[f"{t}_{s}"], pct=True) for t in tasks] + [_fmt(r[f"mean_{s}"], pct=True)]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Summary over calibration seeds", "",
              "PPL: mean ± sample std over the seeds listed, [min, max] across them.  Layer min / max: the "
              "allocation's lowest and highest per-layer sparsity; ρ(depth): its Spearman correlation with the "
              "layer index (– for a constant allocation).", ""]
    cols = (["model", "method", "allocation", "calibration", "sparsity", "seeds", "PPL", "PPL range", "layer min",
             "layer max", "ρ(depth)"] + [f"mean {s}" for s in SCORERS])
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in summary.iter_rows(named=True):
        seeds = ", ".join(map(str, r["seed_list"])) or "–"
        cells = [r["model"], r["method"], r["allocation"] or "–", r["calibration"] or "–", f"{r['sparsity']:.2f}",
                 f"{r['seeds']} ({seeds})", _pm(r["perplexity_mean"], r["perplexity_std"]),
                 f"[{_fmt(r['perplexity_min'])}, {_fmt(r['perplexity_max'])}]",
                 _fmt(r["layer_min"], digits=3), _fmt(r["layer_max"], digits=3), _fmt(r["depth_spearman"])]
        cells += [_pm(r[f"mean_{s}_mean"], r[f"mean_{s}_std"], pct=True) for s in SCORERS]
        lines.append("| " + " | ".join(cells) + " |")
    lines += nm_markdown(summary, comp)
    if comp is not None and comp.height:
        lines += comparison_markdown(comp)
    if any(c.endswith("_paper_lo") for c in df.columns):
        lines += ["", "## Zero-shot accuracy with 95% Wilson intervals (paper scorer, %)", ""]
        cols = ["model", "run"] + list(tasks)
        lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for r in df.filter(pl.col("questions_per_task").is_not_null()).iter_rows(named=True):
            cells = [r["model"], r["run"]]
            for t in tasks:
                v, lo, hi = r.get(f"{t}_paper"), r.get(f"{t}_paper_lo"), r.get(f"{t}_paper_hi")
                cells.append("–" if v is None else f"{100 * v:.1f} [{100 * lo:.0f}, {100 * hi:.0f}]")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def perplexity_chart(df: pl.DataFrame):
    """Perplexity vs sparsity: one panel per model (columns) and method (rows), one line per
    allocation x calibration (mean over seeds; N:M patterns are points at their 50%), seeds as small
    points, the dense model as a dashed rule in every panel; log scale."""
    import altair as alt

    pruned = df.filter(pl.col("method") != "dense").with_columns(
        pl.col("calibration").fill_null("none"), pl.col("allocation").fill_null("none"))
    pruned = pruned.with_columns(
        (pl.col("method") + " · " + pl.col("allocation") + " · " + pl.col("calibration")).alias("series"))
    cols = ["model", "series", "method", "allocation", "calibration", "sparsity"]
    means = pruned.group_by(cols, maintain_order=True).agg(pl.col("perplexity").mean()).with_columns(
        pl.lit("mean").alias("kind"), pl.lit(None, dtype=pl.Int64).alias("seed"))
    seeds = pruned.select(cols + ["perplexity", "seed"]).with_columns(pl.lit("seed").alias("kind"))
    methods = pl.DataFrame({"method": pruned["method"].unique(maintain_order=True)})
    dense = df.filter(pl.col("method") == "dense").select("model", "perplexity").join(methods, how="cross")
    dense = dense.with_columns(pl.lit("dense").alias("kind"))
    data = pl.concat([means.select(seeds.columns), seeds, dense], how="diagonal_relaxed").to_pandas()

    base = alt.Chart()
    x = alt.X("sparsity:Q", title="overall sparsity", axis=alt.Axis(format=".0%"),
              scale=alt.Scale(zero=False, nice=False, padding=24))
    y = alt.Y("perplexity:Q", scale=alt.Scale(type="log"), title="perplexity (log scale)")
    color = alt.Color("allocation:N", title="allocation")
    tip = [alt.Tooltip("series:N"), alt.Tooltip("sparsity:Q"), alt.Tooltip("perplexity:Q", format=".3f")]
    lines = base.mark_line().encode(x=x, y=y, color=color, strokeDash=alt.StrokeDash("calibration:N", legend=None),
                                    detail="series:N", tooltip=tip).transform_filter(alt.datum.kind == "mean")
    mean_pts = base.mark_point(filled=True, size=60).encode(
        x=x, y=y, color=color, shape=alt.Shape("calibration:N", title="calibration"), tooltip=tip,
    ).transform_filter(alt.datum.kind == "mean")
    seed_pts = base.mark_point(size=18, opacity=0.5).encode(
        x=x, y=y, color=color, tooltip=tip + [alt.Tooltip("seed:O")]).transform_filter(alt.datum.kind == "seed")
    rule = base.mark_rule(strokeDash=[4, 4], color="black").encode(
        y="perplexity:Q", tooltip=[alt.Tooltip("perplexity:Q", format=".3f", title="dense")],
    ).transform_filter(alt.datum.kind == "dense")
    return (alt.layer(lines, mean_pts, seed_pts, rule, data=data)
            .properties(width=320, height=200)
            .facet(column=alt.Column("model:N", title=None), row=alt.Row("method:N", title=None))
            .resolve_scale(y="independent")  # magnitude's perplexities dwarf the others'
            .properties(title="Perplexity after pruning (dashed: dense model)"))


def allocation_chart(sparsity_paths: Sequence[str | Path]):
    """Per-layer sparsity of every allocation on one chart per target (the first seed of each run)."""
    import altair as alt

    frames = [pl.read_parquet(p).select("model", "run", "method", "allocation", "calibration", "seed", "sparsity",
                                        "layer", "target") for p in sparsity_paths]
    if not frames:
        return None
    d = pl.concat(frames, how="vertical_relaxed").with_columns(pl.col("seed").fill_null(-1))
    first = d.group_by("model", "method", "allocation", "calibration", "sparsity").agg(pl.col("seed").min())
    d = d.join(first, on=["model", "method", "allocation", "calibration", "sparsity", "seed"], nulls_equal=True)
    d = d.with_columns((pl.col("layer") + 1).alias("layer (1-indexed)"),
                       (pl.col("method") + " · " + pl.col("calibration").fill_null("none")).alias("pruning"))
    return (alt.Chart(d.to_pandas()).mark_line(point=True).encode(
        x=alt.X("layer (1-indexed):Q"), y=alt.Y("target:Q", title="allocated sparsity", scale=alt.Scale(zero=False)),
        color=alt.Color("allocation:N"), strokeDash=alt.StrokeDash("pruning:N"),
        detail="run:N", tooltip=["run:N", "layer (1-indexed):Q", alt.Tooltip("target:Q", format=".4f")])
        .properties(width=260, height=200)
        .facet(column=alt.Column("sparsity:Q", title="overall sparsity"), row=alt.Row("model:N", title=None))
        .properties(title="Per-layer sparsity of each allocation (first seed of each run)"))


def report_section(df: pl.DataFrame, summary: pl.DataFrame, tasks: Sequence[str], chart,
                   comp: pl.DataFrame | None = None, alloc_chart=None) -> dict:
    """The pruning section of results/report/index.html (actpat.report.html format)."""
    q = df["questions_per_task"].drop_nulls()
    text = [
        "Validations 1-2: unstructured pruning of the decoder blocks' linear weights with per-layer sparsity "
        "allocations (uniform; the paper's sigmoid of z-scored activated-weight counts; OWL) and calibration sets "
        "from different domains. Perplexity is on held-out text in non-overlapping windows.",
        f"Zero-shot accuracy ({int(q.min()) if len(q) else 0} questions per task, rows never scored or used for "
        "calibration) is reported by three scorers kept apart: the paper's next-token label scorer, and the "
        "lm-evaluation-harness acc and acc_norm. Full per-task tables: results/tables/pruning.md.",
    ]
    pct = lambda x: None if x is None else round(100 * x, 1)  # noqa: E731
    runs = {
        "id": "runs", "title": "Per run", "digits": 2,
        "caption": "Perplexity and the mean accuracy (%) over tasks of each scorer; – = not evaluated.",
        "columns": ["model", "method", "allocation", "calibration", "sparsity", "seed", "achieved", "PPL",
                    "mean paper", "mean acc", "mean acc_norm"],
        "rows": [[r["model"], r["method"], r["allocation"], r["calibration"], r["sparsity"], r["seed"],
                  round(r["achieved_sparsity"], 4), r["perplexity"], pct(r["mean_paper"]), pct(r["mean_acc"]),
                  pct(r["mean_acc_norm"])] for r in df.iter_rows(named=True)],
    }
    summ = {
        "id": "summary", "title": "Mean ± sample std over calibration seeds", "digits": 3,
        "caption": "One row per configuration; std is null for a single seed. Layer min/max and ρ(depth): the "
                   "allocation's per-layer range and its Spearman correlation with depth.",
        "columns": ["model", "method", "allocation", "calibration", "sparsity", "seeds", "PPL mean", "PPL std",
                    "layer min", "layer max", "ρ(depth)", "mean paper", "mean acc", "mean acc_norm"],
        "rows": [[r["model"], r["method"], r["allocation"], r["calibration"], r["sparsity"],
                  ", ".join(map(str, r["seed_list"])) or "–", r["perplexity_mean"], r["perplexity_std"],
                  r["layer_min"], r["layer_max"], r["depth_spearman"], pct(r["mean_paper_mean"]),
                  pct(r["mean_acc_mean"]), pct(r["mean_acc_norm_mean"])] for r in summary.iter_rows(named=True)],
    }
    tables = [summ]
    nm = nm_rows(summary, comp)
    if nm:
        pats = [k for k in nm[0] if ":" in k and not k.endswith("ratio")]
        tables.append({
            "id": "nm", "title": "N:M semi-structured sparsity (50%)", "digits": 3,
            "caption": "Perplexity (mean over calibration seeds) of unstructured uniform pruning at 50% and of each "
                       "N:M pattern; ratio = PPL(pattern) / PPL(unstructured) with the paired bootstrap interval.",
            "columns": ["model", "method", "calibration", "unstructured"]
            + [c for p in pats for c in (p, f"{p} ratio", f"{p} ratio lo", f"{p} ratio hi")],
            "rows": [[r["model"], r["method"], r["calibration"], r["uniform"]]
                     + [x for p in pats for x in (r[p], *(r[f"{p} ratio"] or (None, None, None)))] for r in nm],
        })
    if comp is not None and comp.height:
        for kind, title, head in COMPARISONS:
            c = comp.filter(pl.col("kind") == kind)
            if c.height:
                tables.append({
                    "id": f"vs-{kind}", "title": title, "digits": 3, "caption": COMPARISON_CAPTION,
                    "columns": ["model", "method", head, "sparsity", "baseline", "PPL ratio", "Δ log PPL", "lo", "hi",
                                "seeds", "verdict", "questions", "Δ acc (baseline − other)", "acc lo", "acc hi",
                                "acc verdict"],
                    "rows": [[r["model"], r["method"], r[head], r["sparsity"], r["baseline"], r["ppl_ratio"],
                              r["log_ppl_diff"], r["lo"], r["hi"], ", ".join(map(str, r["seeds"])), r["verdict"],
                              r["questions"], r["acc_diff"], r["acc_lo"], r["acc_hi"], r["acc_verdict"]]
                             for r in c.iter_rows(named=True)],
                })
    return make_section("pruning", "Validations 1-2: activation-guided pruning", order=60, text=text,
                        tables=tables + [runs], charts=[{"id": "ppl-vs-sparsity", "title": None,
                                                          "caption": "Perplexity vs overall sparsity (log scale).",
                                                          "spec": chart}] + ([{
                            "id": "allocations", "title": None,
                            "caption": "Per-layer sparsity of every allocation (controls: depth_ramp, owl_matched, "
                                       "permuted).", "spec": alloc_chart}] if alloc_chart is not None else []))


def write_outputs(eval_paths: Sequence[str | Path], tasks: Sequence[str], *, table: str | Path,
                  summary: str | Path, markdown_path: str | Path, svg: str | Path, png: str | Path,
                  section: str | Path | None = None, sparsity_paths: Sequence[str | Path] = (),
                  comparisons_path: str | Path | None = None, alloc_svg: str | Path | None = None,
                  calibration: str | None = None, n_boot: int = 1000, level: float = 0.95,
                  seed: int = 0) -> pl.DataFrame:
    """All outputs of the table rule, each written under a temporary name and renamed."""
    by_run = {Path(p).parent.name: p for p in sparsity_paths}
    df = collect(eval_paths, tasks, by_run, level)
    summ = summarise(df)
    comp = comparisons(eval_paths, calibration=calibration, n_boot=n_boot, level=level, seed=seed)
    write_parquet(df, table)
    write_parquet(summ, summary)
    if comparisons_path is not None:
        write_parquet(comp, comparisons_path)
    write_text(markdown(df, summ, tasks, comp), markdown_path)
    chart = perplexity_chart(df)
    save_chart(chart, svg, png)
    alloc = allocation_chart(list(sparsity_paths))
    if alloc_svg is not None and alloc is not None:
        save_chart(alloc, alloc_svg)
    if section is not None:
        write_sections([report_section(df, summ, tasks, chart, comp, alloc)], section)
    return df
