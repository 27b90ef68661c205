"""Validation 3 for the reader: the results table's Markdown, figure and report section.

The statistics are ``actpat.analysis.sts``; ``run`` is what the ``sts_eval`` rule calls: read the
inputs, measure, write the table, its Markdown, the figure (SVG + PNG) and the report section.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import polars as pl

from ..analysis.sts import PAPER_TABLE3, check_pairs, embedding_cosine, measure, shared_text_note
from ..config import paper_sts_window
from ..atomic import write_parquet, write_text
from .charts import save_chart
from .html import make_section, write_sections

log = logging.getLogger(__name__)


def _fmt(v, spec=".3f") -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "n/a"
    return format(v, spec)


def _fmt_p(p) -> str:
    if p is None or not np.isfinite(p):
        return "n/a"
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"


def table_rows(res: pl.DataFrame) -> list[list[str]]:
    """Display rows: label, n, rho, 95% interval, verdict on rho > 0, p, Pearson r, note."""
    return [[r["label"], str(r["n"]), _fmt(r["spearman"]), f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]",
             r["verdict"], _fmt_p(r["spearman_p"]), _fmt(r["pearson"]), r["note"] or ""]
            for r in res.iter_rows(named=True)]


DISPLAY_COLUMNS = ["measure", "pairs", "Spearman rho", "95% CI (bootstrap)", "rho > 0", "p", "Pearson r", "note"]


def _md_table(columns: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(out)


def paper_rows() -> list[list[str]]:
    return [[f"**paper** {r['model']}, STS-B / SICK (other models and data)", "256",
             f"{r['STS-B']:.2f} / {r['SICK']:.2f}", "", "", "<= 0.001", "", "paper's Table 3, layers 20..L-3"]
            for r in PAPER_TABLE3]


def summary_text(res: pl.DataFrame, n_boot: int, seed: int, caveat: str | None = None) -> str:
    w = res.filter(pl.col("kind") == "window").row(0, named=True)
    lay = res.filter(pl.col("kind") == "layer").drop_nans("spearman")
    n_layers = res.filter(pl.col("kind") == "layer").height
    head = (f"{w['n']} sentence pairs; {n_layers} layers. The paper's score (LLMDcos summed over layers "
            f"{w['first']}..{w['last']})")
    if w["note"]:
        parts = [f"{head} has no defined correlation: {w['note']}."]
    else:
        parts = [f"{head} has Spearman rho {_fmt(w['spearman'])} (95% bootstrap interval "
                 f"[{_fmt(w['ci_low'])}, {_fmt(w['ci_high'])}], p {_fmt_p(w['spearman_p'])}): "
                 f"\"rho > 0\" {w['verdict']}."]
    for r in res.filter(pl.col("kind") == "baseline").iter_rows(named=True):
        parts.append(f"Baseline, {r['label']}: rho {_fmt(r['spearman'])} "
                     f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}].")
    if lay.height:
        best = lay.sort("spearman", descending=True).row(0, named=True)
        parts.append(f"The best single layer is {best['first']} (rho {_fmt(best['spearman'])}); picking it, or any "
                     f"window, after seeing these numbers is a post-hoc choice.")
    parts.append(f"Intervals: percentile bootstrap over pairs, {n_boot} resamples, seed {seed}, paired across rows.")
    if caveat:
        parts.append(caveat)
    return " ".join(parts)


def markdown(res: pl.DataFrame, *, model: str, pairset: str, n_boot: int, seed: int, caveat: str | None = None) -> str:
    main = res.filter(pl.col("kind").is_in(["window", "baseline"]))
    post = res.filter(pl.col("kind") == "posthoc_window")
    lay = res.filter(pl.col("kind") == "layer")
    w = main.row(0, named=True)
    L = lay.height
    rule = ("from config sts.window" if w["first"] != paper_sts_window(L)[0] or w["last"] != paper_sts_window(L)[1]
            else "the paper's 20..L-3, start scaled to depth")
    md = [f"# Validation 3: activation similarity vs human similarity ({model}, {pairset})", "",
          summary_text(res, n_boot, seed, caveat), "",
          f"## Main result (window {w['first']}..{w['last']}, {rule})", "",
          _md_table(DISPLAY_COLUMNS, table_rows(main) + paper_rows()), "",
          "Rows marked **paper** are the published Table 3 (Spearman rho over 256 pairs of STS-B and SICK, "
          "Llama 7B-13B models, layers 20..L-3): other models and other data, for orientation only, not a "
          "like-for-like comparison.", ""]
    if post.height:
        md += ["## Other windows (post-hoc)", "",
               "The paper's code (`llama_sts.py`) also printed these windows and the paper reports one; "
               "a window chosen after seeing the numbers is a post-hoc choice, so these rows are not evidence "
               "on their own.", "", _md_table(DISPLAY_COLUMNS, table_rows(post)), ""]
    md += ["## Each layer", "", _md_table(DISPLAY_COLUMNS, table_rows(lay)), ""]
    return "\n".join(md)


def chart(res: pl.DataFrame, *, model: str = "", pairset: str = ""):
    """Altair chart: rho by layer with its 95% band, the window shaded, baselines as horizontal rules."""
    import altair as alt

    # NaN -> null: Vega skips nulls, while NaN breaks the scales.
    lay = res.filter(pl.col("kind") == "layer").select(
        pl.col("first").alias("layer"), *(pl.col(c).fill_nan(None) for c in ("spearman", "ci_low", "ci_high")), "n")
    finite = lay.drop_nulls("spearman").height > 0
    w = res.filter(pl.col("kind") == "window").row(0, named=True)
    lines = [{"what": f"window sum ({w['first']}..{w['last']})", "rho": w["spearman"],
              "x0": w["first"] - 0.5, "x1": w["last"] + 0.5}]
    L = lay.height
    for r in res.filter(pl.col("kind") == "baseline").iter_rows(named=True):
        short = {"hidden_cos": "hidden-state cosine", "embedding_cos": "MiniLM embedding cosine"}[r["measure"]]
        lines.append({"what": short, "rho": r["spearman"], "x0": -0.5, "x1": L - 0.5})
    lines = [d for d in lines if d["rho"] is not None and np.isfinite(d["rho"])]
    palette = {"window": "#e45756", "hidden-state cosine": "#54a24b", "MiniLM embedding cosine": "#b279a2"}
    names = [d["what"] for d in lines]
    colors = [palette.get(n.split(" (")[0].replace("window sum", "window"), "#999999") for n in names]

    x = alt.X("layer:Q", title="layer (0-indexed)", scale=alt.Scale(domain=[-0.5, L - 0.5], nice=False),
              axis=alt.Axis(tickMinStep=1, format="d"))
    shade = alt.Chart(pl.DataFrame([{"x0": w["first"] - 0.5, "x1": w["last"] + 0.5}])).mark_rect(
        opacity=0.12, color="#4c78a8").encode(x=alt.X("x0:Q"), x2="x1:Q")
    band = alt.Chart(lay).mark_area(opacity=0.25, color="#4c78a8").encode(
        x=x, y=alt.Y("ci_low:Q", title="Spearman rho vs human score",
                     scale=alt.Scale() if finite or lines else alt.Scale(domain=[-1, 1])), y2="ci_high:Q")
    line = alt.Chart(lay).mark_line(point=True, color="#4c78a8").encode(
        x=x, y="spearman:Q",
        tooltip=["layer:Q", alt.Tooltip("spearman:Q", format=".3f"), alt.Tooltip("ci_low:Q", format=".3f"),
                 alt.Tooltip("ci_high:Q", format=".3f"), "n:Q"])
    ldf = pl.DataFrame(lines, schema={"what": pl.String, "rho": pl.Float64, "x0": pl.Float64, "x1": pl.Float64})
    rules = alt.Chart(ldf).mark_rule(strokeWidth=2, strokeDash=[6, 3]).encode(
        x="x0:Q", x2="x1:Q", y="rho:Q",
        color=alt.Color("what:N", title=None, scale=alt.Scale(domain=names, range=colors),
                        legend=alt.Legend(orient="bottom", columns=1)),
        tooltip=["what:N", alt.Tooltip("rho:Q", format=".3f")])
    zero = alt.Chart(pl.DataFrame({"y": [0.0]})).mark_rule(color="gray", strokeWidth=0.5).encode(y="y:Q")
    title = alt.TitleParams(f"Activation similarity vs human similarity: {model}, {pairset}",
                            subtitle=f"{w['n']} pairs; band: 95% bootstrap interval; shaded: summed window"
                            + ("" if finite else f"; no defined rho ({w['note']})"))
    # An empty layer with a legend gives Vega infinite bounds: leave the rules out when none is defined.
    layers = [shade, band, line, zero] + ([rules] if lines else [])
    return alt.layer(*layers).properties(width=520, height=300, title=title)


def section(res: pl.DataFrame, spec: dict, *, model: str, pairset: str, n_boot: int, seed: int,
            caveat: str | None = None) -> dict:
    """The report section for the standalone HTML report (format: actpat.report.html)."""
    main = res.filter(pl.col("kind").is_in(["window", "baseline"]))
    return make_section(
        f"sts-{model}-{pairset}", f"Validation 3: sentence similarity ({model}, {pairset})",
        text=summary_text(res, n_boot, seed, caveat), order=70,
        charts=[{"id": "rho-by-layer", "title": "Spearman rho by layer", "spec": spec}],
        tables=[
            {"id": "main", "title": "Spearman rho against human scores (paper rows: other models and data)",
             "columns": DISPLAY_COLUMNS, "rows": table_rows(main) + paper_rows()},
            {"id": "posthoc", "title": "Other windows tried by the paper's code (post-hoc choices)",
             "columns": DISPLAY_COLUMNS, "rows": table_rows(res.filter(pl.col("kind") == "posthoc_window"))},
            {"id": "layers", "title": "Each layer", "columns": DISPLAY_COLUMNS,
             "rows": table_rows(res.filter(pl.col("kind") == "layer"))},
        ],
    )


def write_outputs(res: pl.DataFrame, *, model: str, pairset: str, n_boot: int, seed: int, table: str | Path,
                  md: str | Path, svg: str | Path, png: str | Path, section_json: str | Path,
                  caveat: str | None = None) -> None:
    """Write the results table, its Markdown, the figure (SVG + PNG) and the report section.

    ``caveat`` (e.g. ``shared_text_note``) is appended to the summary text.
    """
    spec = chart(res, model=model, pairset=pairset).to_dict()
    write_parquet(res, table)
    write_text(markdown(res, model=model, pairset=pairset, n_boot=n_boot, seed=seed, caveat=caveat), md)
    save_chart(spec, svg, png)
    write_sections([section(res, spec, model=model, pairset=pairset, n_boot=n_boot, seed=seed, caveat=caveat)],
                   section_json)


def run(*, pairs_path, llmdcos_path, hidden_path, minilm_dir, window, n_boot: int, seed: int, model: str,
        pairset: str, outputs: dict) -> pl.DataFrame:
    """Read the inputs, measure, write ``outputs`` (keys table, md, svg, png, section); return the table."""
    pairs = pl.read_parquet(pairs_path)
    llm = pl.read_parquet(llmdcos_path)
    hidden = pl.read_parquet(hidden_path) if hidden_path else None
    p = check_pairs(pairs, str(pairs_path))
    caveat = shared_text_note(p["text_a"].to_list(), p["text_b"].to_list())
    if caveat:
        log.warning(caveat)
    emb = embedding_cosine(p["text_a"].to_list(), p["text_b"].to_list(), minilm_dir) if minilm_dir else None
    try:
        res = measure(pairs, llm, hidden, emb, window=window, n_boot=n_boot, seed=seed, model=model,
                      pairset=pairset)
    except ValueError as e:
        raise ValueError(f"{e} (inputs: {pairs_path}, {llmdcos_path}, {hidden_path})") from None
    write_outputs(res, model=model, pairset=pairset, n_boot=n_boot, seed=seed, table=outputs["table"],
                  md=outputs["md"], svg=outputs["svg"], png=outputs["png"], section_json=outputs["section"],
                  caveat=caveat)
    w = res.row(0, named=True)
    log.info("window %d..%d: rho %.4f [%.4f, %.4f], p %.3g, n %d", w["first"], w["last"], w["spearman"],
             w["ci_low"], w["ci_high"], w["spearman_p"], w["n"])
    return res
