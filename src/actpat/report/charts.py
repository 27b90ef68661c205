"""Altair figures of the analyses, and their SVG/PNG export (vl-convert, offline).

Layers are drawn 1-indexed (layer 1 = the first decoder block), as in the paper's
figures; the tables and config windows are 0-indexed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import altair as alt
import polars as pl

from ..atomic import write_bytes, write_text

VL_VERSION = "6.4"  # the one Vega-Lite version of every figure and of the report's bundle (altair 6.3 writes v6.4)
WIDTH = 300
FONT = "DejaVu Sans"
KIND_COLORS = {"within": "#4c78a8", "cross": "#e45756"}


def _config(chart: alt.TopLevelMixin) -> alt.TopLevelMixin:
    return chart.configure(font=FONT).configure_view(stroke="#ccc")


def _panel_labels(density: pl.DataFrame) -> pl.DataFrame:
    def label(measure: str, param) -> str:
        if measure == "above_threshold":
            return f"fraction of weights with Ā > {param:g}"
        if measure == "top_k_share":
            return f"share of the model-wide top {param:g}% activations"
        if measure == "gini":
            return "Gini coefficient of the layer's activations"
        return "mean activation"

    return density.with_columns(
        pl.struct("measure", "param").map_elements(lambda s: label(s["measure"], s["param"]),
                                                    return_dtype=pl.String).alias("panel"))


def density_chart(density: pl.DataFrame, text_domains: Sequence[str] = (), title: str | None = None) -> alt.FacetChart:
    """Finding 1 (Figs 1, 2, 4): per-layer density measures, one row of panels per measure, a line per domain."""
    df = _panel_labels(density.filter(pl.col("measure") != "mean"))
    order = (df.select("measure", "param", "panel").unique()
             .with_columns(pl.col("measure").replace_strict({"above_threshold": 0, "top_k_share": 1, "gini": 2},
                                                            default=3).alias("_o"))
             .sort("_o", "param")["panel"].to_list())
    text = set(text_domains)
    df = df.with_columns(
        (pl.col("layer") + 1).alias("layer_1"),
        pl.when(pl.col("domain").is_in(list(text))).then(pl.lit("general text")).otherwise(pl.lit("domain task"))
        .alias("kind"),
    ).with_columns(
        pl.when(pl.col("kind") == "general text").then(pl.col("domain") + " (text)").otherwise(pl.col("domain"))
        .alias("label"),
    ).select("domain", "label", "kind", "layer_1", "panel", "value", "count", "n_weights")
    base = alt.Chart(df).mark_line(point=alt.OverlayMarkDef(size=18), strokeWidth=1.6).encode(
        x=alt.X("layer_1:Q", title="layer (1-indexed)", scale=alt.Scale(nice=False, zero=False)),
        y=alt.Y("value:Q", title=None),
        color=alt.Color("label:N", title="domain (dashed: text)", scale=alt.Scale(scheme="tableau10")),
        # Vega-Lite draws strokeDash legend symbols transparent next to a color legend, so the
        # kind is marked in the domain labels ("(text)") and the dash has no legend of its own.
        strokeDash=alt.StrokeDash("kind:N", legend=None,
                                  scale=alt.Scale(domain=["domain task", "general text"], range=[[1, 0], [5, 3]])),
        tooltip=["domain:N", alt.Tooltip("layer_1:Q", title="layer"), alt.Tooltip("value:Q", format=".4g"),
                 alt.Tooltip("count:Q", format=","), alt.Tooltip("n_weights:Q", format=",")],
    ).properties(width=2 * WIDTH, height=170)
    chart = base.facet(row=alt.Row("panel:N", sort=order, title=None,
                                   header=alt.Header(labelAngle=0, labelAlign="left", labelAnchor="start",
                                                     labelOrient="top", labelFontWeight="bold"))
                       ).resolve_scale(y="independent")
    if title:
        chart = chart.properties(title=title)
    return _config(chart)


def similarity_boxplot(stats: pl.DataFrame, columns: int = 3, title: str | None = None) -> alt.FacetChart:
    """Finding 2 (Figs 3, 5): per-layer LLMDcos box plots, one panel per domain pair.

    ``stats`` comes from ``similarity.select_pairs`` (box statistics precomputed, whiskers
    at 1.5·IQR); outliers are drawn as points.
    """
    box = stats.with_columns((pl.col("layer") + 1).alias("layer_1"), pl.lit("box").alias("row"),
                             pl.lit(None, pl.Float64).alias("value"))
    out = (stats.select("pair", "pair_order", "kind", "layer", "outliers").explode("outliers")
           .drop_nulls("outliers").rename({"outliers": "value"})
           .with_columns((pl.col("layer") + 1).alias("layer_1"), pl.lit("outlier").alias("row")))
    cols = ["pair", "pair_order", "kind", "layer_1", "row", "value", "n", "mean", "q1", "median", "q3",
            "whisker_lo", "whisker_hi"]
    df = pl.concat([box.select(cols), out.with_columns(*[pl.lit(None, pl.Float64).alias(c) for c in
                                                         ("mean", "q1", "median", "q3", "whisker_lo",
                                                          "whisker_hi")], pl.lit(None, pl.UInt32).alias("n"))
                    .select(cols)], how="vertical_relaxed")
    order = stats.select("pair", "pair_order").unique().sort("pair_order")["pair"].to_list()
    # x-tick labels every 4th layer, as in the paper's box plots
    x = alt.X("layer_1:O", title="layer (1-indexed)", scale=alt.Scale(paddingInner=0.25, paddingOuter=0.2),
              axis=alt.Axis(labelExpr="datum.value % 4 == 1 ? datum.value : ''", labelAngle=0))
    color = alt.Color("kind:N", title="pair", scale=alt.Scale(domain=list(KIND_COLORS),
                                                             range=list(KIND_COLORS.values())))
    tip = ["pair:N", alt.Tooltip("layer_1:O", title="layer"), "n:Q", alt.Tooltip("mean:Q", format=".3f"),
           alt.Tooltip("median:Q", format=".3f"), alt.Tooltip("q1:Q", format=".3f"), alt.Tooltip("q3:Q", format=".3f"),
           alt.Tooltip("whisker_lo:Q", format=".3f"), alt.Tooltip("whisker_hi:Q", format=".3f")]
    y = alt.Y("whisker_lo:Q", title="LLMDcos", scale=alt.Scale(domain=[0, 1]))
    boxes = alt.Chart().transform_filter(alt.datum.row == "box")
    whisker = boxes.mark_rule(color="#555").encode(x=x, y=y, y2="whisker_hi:Q")
    bar = boxes.mark_bar(stroke="#333", strokeWidth=0.5).encode(
        x=x, y=alt.Y("q1:Q"), y2="q3:Q", color=color, tooltip=tip)
    med = boxes.mark_tick(color="white", thickness=1.5).encode(x=x, y="median:Q")
    pts = alt.Chart().transform_filter(alt.datum.row == "outlier").mark_point(
        size=10, filled=False, color="#333", strokeWidth=0.6).encode(
        x=x, y="value:Q", tooltip=["pair:N", alt.Tooltip("value:Q", format=".3f")])
    layered = alt.layer(whisker, bar, med, pts, data=df).properties(width=WIDTH, height=180)
    chart = layered.facet(facet=alt.Facet("pair:N", sort=order, title=None,
                                          header=alt.Header(labelFontWeight="bold", labelFontSize=12)),
                          columns=columns)
    if title:
        chart = chart.properties(title=title)
    return _config(chart)


def similarity_profile_chart(stats: pl.DataFrame, shallow: tuple[int, int], deep: tuple[int, int],
                             title: str | None = None) -> alt.LayerChart:
    """Per-layer mean LLMDcos of every domain pair (thin) and the within/cross means (bold), windows shaded."""
    df = stats.select("domain_a", "domain_b", "kind", "layer", "mean").with_columns(
        (pl.col("layer") + 1).alias("layer_1"),
        (pl.col("domain_a") + pl.lit("–") + pl.col("domain_b")).alias("pair"))
    avg = df.group_by("kind", "layer_1").agg(pl.col("mean").mean()).sort("kind", "layer_1")
    win = pl.DataFrame({"window": ["shallow", "deep"], "start": [shallow[0] + 0.5, deep[0] + 0.5],
                        "end": [shallow[1] + 1.5, deep[1] + 1.5]})
    x = alt.X("layer_1:Q", title="layer (1-indexed)", scale=alt.Scale(nice=False, zero=False))
    color = alt.Color("kind:N", title="pairs", scale=alt.Scale(domain=list(KIND_COLORS),
                                                              range=list(KIND_COLORS.values())))
    bands = alt.Chart(win).mark_rect(opacity=0.12).encode(
        x=alt.X("start:Q"), x2="end:Q",
        color=alt.Color("window:N", title="window", scale=alt.Scale(domain=["shallow", "deep"],
                                                                    range=["#72b7b2", "#b279a2"])))
    lines = alt.Chart(df).mark_line(strokeWidth=0.7, opacity=0.45).encode(
        x=x, y=alt.Y("mean:Q", title="mean LLMDcos", scale=alt.Scale(domain=[0, 1])), detail="pair:N",
        color=alt.Color("kind:N", legend=None, scale=alt.Scale(domain=list(KIND_COLORS),
                                                                range=list(KIND_COLORS.values()))),
        tooltip=["pair:N", alt.Tooltip("layer_1:Q", title="layer"), alt.Tooltip("mean:Q", format=".3f")])
    means = alt.Chart(avg).mark_line(strokeWidth=3).encode(
        x=x, y="mean:Q", color=color,
        tooltip=["kind:N", alt.Tooltip("layer_1:Q", title="layer"), alt.Tooltip("mean:Q", format=".3f")])
    chart = alt.layer(bands, lines, means).resolve_scale(color="independent").properties(width=2 * WIDTH,
                                                                                        height=220)
    if title:
        chart = chart.properties(title=title)
    return _config(chart)


def _heatmap(cells: pl.DataFrame, value: str, title: str, domain_order: Sequence[str],
             scale_domain: tuple[float, float] | None, scheme: str = "blues") -> alt.LayerChart:
    df = cells.select("domain_a", "domain_b", pl.col(value).alias("value"))
    scale = alt.Scale(scheme=scheme, domain=list(scale_domain)) if scale_domain else alt.Scale(scheme=scheme)
    base = alt.Chart(df).encode(
        x=alt.X("domain_b:N", sort=list(domain_order), title=None, axis=alt.Axis(labelAngle=-40)),
        y=alt.Y("domain_a:N", sort=list(domain_order), title=None))
    rect = base.mark_rect().encode(color=alt.Color("value:Q", scale=scale, title=None,
                                                   legend=alt.Legend(orient="bottom", gradientLength=180)),
                                   tooltip=["domain_a:N", "domain_b:N", alt.Tooltip("value:Q", format=".3f")])
    mid = (scale_domain[0] + scale_domain[1]) / 2 if scale_domain else (df["value"].min() + df["value"].max()) / 2
    text = base.mark_text(fontSize=9).encode(
        text=alt.Text("value:Q", format=".2f"),
        color=alt.condition(alt.datum.value > mid, alt.value("white"), alt.value("black")))
    n = max(1, len(domain_order))
    return alt.layer(rect, text).properties(title=title, width=min(34 * n, 340), height=min(34 * n, 340))


def relevance_chart(relevance: pl.DataFrame) -> alt.HConcatChart:
    """Finding 3 (Fig 6): deep- and shallow-window LLMDcos heat-maps and the embedding-similarity heat-map."""
    order = sorted(set(relevance["domain_a"].to_list()))
    vals = relevance["llmdcos"].drop_nulls()
    dom = (float(vals.min()), float(vals.max())) if vals.len() else None
    panels = []
    for w in ("deep", "shallow"):
        sub = relevance.filter(pl.col("window") == w)
        if sub.height == 0:
            continue
        lo, hi = sub["first"][0], sub["last"][0]
        panels.append(_heatmap(sub, "llmdcos", f"LLMDcos, {w} layers {lo + 1}–{hi + 1}", order, dom))
    emb = relevance.filter(pl.col("window") == relevance["window"][0]).drop_nulls("embedding_cos")
    if emb.height:
        panels.append(_heatmap(emb, "embedding_cos", "MiniLM mean-embedding cosine", order, None, scheme="greens"))
    return _config(alt.hconcat(*panels).resolve_scale(color="independent"))


def relevance_scatter(relevance: pl.DataFrame, correlations: Mapping) -> alt.HConcatChart | None:
    """Off-diagonal domain pairs: window-mean LLMDcos against embedding similarity, with Spearman's rho."""
    off = relevance.filter(pl.col("domain_a") < pl.col("domain_b")).drop_nulls(["llmdcos", "embedding_cos"])
    if off.height == 0:
        return None
    off = off.with_columns((pl.col("domain_a") + pl.lit("–") + pl.col("domain_b")).alias("pair"))
    panels = []
    for w in ("deep", "shallow"):
        sub = off.filter(pl.col("window") == w)
        if sub.height == 0:
            continue
        c = correlations.get(w, {})
        rho = "n/a" if c.get("rho") is None else f"{c['rho']:.2f}"
        p = "" if c.get("p") is None else f", p = {c['p']:.2g}"
        lo, hi = sub["first"][0], sub["last"][0]
        panels.append(alt.Chart(sub.select("pair", "llmdcos", "embedding_cos")).mark_circle(size=45, opacity=0.8)
                      .encode(x=alt.X("embedding_cos:Q", title="mean-embedding cosine (MiniLM)",
                                      scale=alt.Scale(zero=False)),
                              y=alt.Y("llmdcos:Q", title="mean LLMDcos", scale=alt.Scale(zero=False)),
                              color=alt.value("#b279a2" if w == "deep" else "#72b7b2"),
                              tooltip=["pair:N", alt.Tooltip("llmdcos:Q", format=".3f"),
                                       alt.Tooltip("embedding_cos:Q", format=".3f")])
                      .properties(width=WIDTH, height=WIDTH - 40,
                                  title=f"{w} layers {lo + 1}–{hi + 1}: Spearman ρ = {rho}{p} (n = {c.get('n', 0)})"))
    return _config(alt.hconcat(*panels))


# ----------------------------------------------------------------------------- export


def chart_spec(chart) -> dict:
    return chart.to_dict() if hasattr(chart, "to_dict") else dict(chart)


def save_chart(chart, svg: str | Path | None = None, png: str | Path | None = None, scale: float = 2.0) -> None:
    """Write the chart as SVG and/or PNG with vl-convert (no browser, no network); atomic writes."""
    import vl_convert as vlc

    spec = chart_spec(chart)
    if svg is not None:
        write_text(vlc.vegalite_to_svg(spec, vl_version=VL_VERSION), svg)
    if png is not None:
        write_bytes(vlc.vegalite_to_png(spec, vl_version=VL_VERSION, scale=scale), png)
