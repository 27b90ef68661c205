"""Results tables of Validations 1-2 (the paper's Tables 1-2) and the perplexity chart.

``collect`` reads the per-run evaluation JSONs into one row per (model, run) with perplexity
and, per zero-shot task, one column per scorer: ``<task>_paper`` (the paper's next-token label
scorer), ``<task>_acc`` and ``<task>_acc_norm`` (lm-eval convention); ``mean_*`` average the
tasks of one scorer (never across scorers).  ``summarise`` gives mean and sample std over
calibration seeds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import polars as pl

SCORERS = ("paper", "acc", "acc_norm")
SCORER_TITLES = {
    "paper": "paper scorer (last-position logit of the label token; paper.md §5.3)",
    "acc": "lm-eval acc (summed log-likelihood of ' ' + choice after the cloze context)",
    "acc_norm": "lm-eval acc_norm (log-likelihood / choice length in bytes)",
}
METHOD_ORDER = {"dense": 0, "magnitude": 1, "wanda": 2, "sparsegpt": 3}
KEYS = ["model", "method", "allocation", "calibration", "sparsity"]


def collect(paths: Sequence[str | Path], tasks: Sequence[str] | None = None) -> pl.DataFrame:
    rows = []
    for p in paths:
        r = json.loads(Path(p).read_text())
        zs = r.get("zeroshot", {})
        names = list(tasks) if tasks is not None else list(zs)
        row = {
            "model": r["model"], "run": r["run"], "method": r["method"], "allocation": r.get("allocation"),
            "calibration": r.get("calibration"), "sparsity": float(r.get("sparsity") or 0.0), "seed": r.get("seed"),
            "achieved_sparsity": float(r.get("sparsity_check", {}).get("achieved", 0.0)),
            "perplexity": r["perplexity"]["perplexity"],
        }
        for t in names:
            for s in SCORERS:
                row[f"{t}_{s}"] = zs[t][f"{s}_acc" if s == "paper" else s] if t in zs else None
        for s in SCORERS:
            vals = [row[f"{t}_{s}"] for t in names if row[f"{t}_{s}"] is not None]
            row[f"mean_{s}"] = sum(vals) / len(vals) if vals else None
        row["questions_per_task"] = min((zs[t]["n"] for t in names if t in zs), default=None)
        row["job_seconds"] = r.get("timings_s", {}).get("job")
        rows.append(row)
    df = pl.DataFrame(rows, schema_overrides={"allocation": pl.String, "calibration": pl.String, "seed": pl.Int64},
                      infer_schema_length=None)
    return (df.with_columns(pl.col("method").replace_strict(METHOD_ORDER, default=9).alias("_m"))
            .sort(["model", "_m", "allocation", "calibration", "sparsity", "seed"], nulls_last=False)
            .drop("_m"))


def summarise(df: pl.DataFrame) -> pl.DataFrame:
    """Mean and sample std (ddof=1; null for a single seed) over seeds, per configuration."""
    metrics = ["perplexity"] + [c for c in df.columns if c.endswith(tuple(f"_{s}" for s in SCORERS))]
    aggs = [pl.len().alias("seeds")]
    for c in metrics:
        aggs += [pl.col(c).mean().alias(f"{c}_mean"), pl.col(c).std(ddof=1).alias(f"{c}_std")]
    out = df.group_by(KEYS, maintain_order=True).agg(aggs)
    return out.with_columns(pl.when(pl.col("seeds") > 1).then(pl.col(f"{c}_std")).otherwise(None).alias(f"{c}_std")
                            for c in metrics)


def _fmt(x, pct=False, digits=2):
    if x is None:
        return "–"
    return f"{100 * x:.{1 if pct else digits}f}" if pct else f"{x:.{digits}f}"


def _pm(mean, std, pct=False):
    if mean is None:
        return "–"
    m = _fmt(mean, pct)
    return m if std is None else f"{m} ± {_fmt(std, pct)}"


def markdown(df: pl.DataFrame, summary: pl.DataFrame, tasks: Sequence[str]) -> str:
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
    lines += ["## Summary over calibration seeds (mean ± sample std)", ""]
    cols = ["model", "method", "allocation", "calibration", "sparsity", "seeds", "PPL"] + [f"mean {s}" for s in SCORERS]
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in summary.iter_rows(named=True):
        cells = [r["model"], r["method"], r["allocation"] or "–", r["calibration"] or "–", f"{r['sparsity']:.2f}",
                 str(r["seeds"]), _pm(r["perplexity_mean"], r["perplexity_std"])]
        cells += [_pm(r[f"mean_{s}_mean"], r[f"mean_{s}_std"], pct=True) for s in SCORERS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def perplexity_chart(df: pl.DataFrame):
    """Perplexity vs sparsity: one line per method x allocation x calibration (mean over seeds),
    seeds as small points, the dense model as a dashed rule; log scale; one panel per model."""
    import altair as alt

    pruned = df.filter(pl.col("method") != "dense").with_columns(
        pl.col("calibration").fill_null("none"), pl.col("allocation").fill_null("none"))
    pruned = pruned.with_columns(
        (pl.col("method") + " · " + pl.col("allocation") + " · " + pl.col("calibration")).alias("series"))
    cols = ["model", "series", "method", "allocation", "calibration", "sparsity"]
    means = pruned.group_by(cols, maintain_order=True).agg(pl.col("perplexity").mean()).with_columns(
        pl.lit("mean").alias("kind"), pl.lit(None, dtype=pl.Int64).alias("seed"))
    seeds = pruned.select(cols + ["perplexity", "seed"]).with_columns(pl.lit("seed").alias("kind"))
    dense = df.filter(pl.col("method") == "dense").select("model", "perplexity").with_columns(
        pl.lit("dense").alias("kind"))
    data = pl.concat([means.select(seeds.columns), seeds, dense], how="diagonal_relaxed").to_pandas()

    base = alt.Chart()
    x = alt.X("sparsity:Q", title="overall sparsity", axis=alt.Axis(format=".0%"),
              scale=alt.Scale(zero=False, nice=False, padding=24))
    y = alt.Y("perplexity:Q", scale=alt.Scale(type="log"), title="perplexity (log scale)")
    color = alt.Color("allocation:N", title="allocation")
    tip = [alt.Tooltip("series:N"), alt.Tooltip("sparsity:Q"), alt.Tooltip("perplexity:Q", format=".3f")]
    lines = base.mark_line().encode(x=x, y=y, color=color, strokeDash=alt.StrokeDash("method:N", title="method"),
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
            .properties(width=360, height=260)
            .facet(column=alt.Column("model:N", title=None))
            .properties(title="Perplexity after pruning (dashed: dense model)"))


def report_section(df: pl.DataFrame, summary: pl.DataFrame, tasks: Sequence[str], chart) -> dict:
    """The pruning section of results/report/index.html (actpat.report.html format)."""
    from ..report.html import make_section

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
        "id": "summary", "title": "Mean ± sample std over calibration seeds", "digits": 2,
        "caption": "One row per configuration; std is null for a single seed.",
        "columns": ["model", "method", "allocation", "calibration", "sparsity", "seeds", "PPL mean", "PPL std",
                    "mean paper", "mean acc", "mean acc_norm"],
        "rows": [[r["model"], r["method"], r["allocation"], r["calibration"], r["sparsity"], r["seeds"],
                  r["perplexity_mean"], r["perplexity_std"], pct(r["mean_paper_mean"]), pct(r["mean_acc_mean"]),
                  pct(r["mean_acc_norm_mean"])] for r in summary.iter_rows(named=True)],
    }
    return make_section("pruning", "Validations 1-2: activation-guided pruning", order=60, text=text,
                        tables=[summ, runs], charts=[{"id": "ppl-vs-sparsity", "title": None,
                                                      "caption": "Perplexity vs overall sparsity (log scale).",
                                                      "spec": chart}])


def write_outputs(eval_paths: Sequence[str | Path], tasks: Sequence[str], *, table: str | Path,
                  summary: str | Path, markdown_path: str | Path, svg: str | Path, png: str | Path,
                  section: str | Path | None = None) -> pl.DataFrame:
    """All outputs of the table rule, each written under a temporary name and renamed."""
    from ..atomic import atomic_path, write_parquet, write_text

    df = collect(eval_paths, tasks)
    summ = summarise(df)
    write_parquet(df, table)
    write_parquet(summ, summary)
    write_text(markdown(df, summ, tasks), markdown_path)
    chart = perplexity_chart(df)
    with atomic_path(svg) as tmp, open(tmp, "w", encoding="utf-8") as f:
        chart.save(f, format="svg")
    with atomic_path(png) as tmp, open(tmp, "wb") as f:
        chart.save(f, format="png", scale_factor=2)
    if section is not None:
        from ..report.html import write_sections

        write_sections([report_section(df, summ, tasks, chart)], section)
    return df
