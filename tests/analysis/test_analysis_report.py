"""Report: section format, page builder, figure export, and a real headless-Chromium render."""

import json
import os
import shutil
import struct
import time
import xml.etree.ElementTree as ET

import polars as pl
import pytest

from actpat.analysis.density import combine, layer_density
from actpat.analysis.findings import measure
from actpat.analysis.relevance import relevance_correlations, relevance_table
from actpat.analysis.similarity import load_pairs, pair_layer_stats, windows
from actpat.report.analysis import FIGURES, build_charts, build_sections, write_analysis_report
from actpat.report.html import (FORMAT, SectionError, build_page, collect, load_sections, make_section, render_page,
                                write_sections)
from helpers.analysis_synth import humped_store, panel_gram
from helpers.chromium_cdp import Browser, ensure_chromium

DOMAINS = ["boolq", "c4", "humaneval", "mmlu"]
L = 12


@pytest.fixture(scope="module")
def analysis_inputs(tmp_path_factory):
    """Density, similarity and relevance tables plus findings for a synthetic 12-layer model."""
    d = tmp_path_factory.mktemp("analysis")
    dens = combine([layer_density(humped_store(d / f"{x}.zarr", L, domain=x, seed=i, deep_boost=0.3 * (x == "c4")),
                                  [1e-5, 1e-4], 1.0) for i, x in enumerate(DOMAINS)])
    g = d / "panel.gram.parquet"
    panel_gram(DOMAINS, L).write_parquet(g)
    pairs = load_pairs([g])
    sim = pair_layer_stats(pairs)
    wins = windows(L)
    emb = pl.DataFrame({"domain": DOMAINS, "n_texts": 4, "dim": 3,
                        "mean": [[0.5, 0.5, 0.1], [0.3, 0.3, 0.3], [0.1, 0.2, 0.9], [0.45, 0.55, 0.1]]})
    rel = relevance_table(pairs, wins, emb, model="toy")
    corr = relevance_correlations(rel)
    fnd = measure(dens, sim, rel, threshold=1e-5, shallow=wins["shallow"], deep=wins["deep"], text_domains=["c4"],
                   model="toy")
    paths = {}
    for name, df in (("density", dens), ("similarity", sim), ("relevance", rel)):
        paths[name] = d / f"{name}.parquet"
        df.write_parquet(paths[name])
    paths["relevance_json"] = d / "relevance.json"
    paths["relevance_json"].write_text(json.dumps({"windows": {k: list(v) for k, v in wins.items()},
                                                   "correlations": corr}))
    paths["findings"] = d / "findings.json"
    paths["findings"].write_text(json.dumps(fnd))
    return {"dir": d, "density": dens, "similarity": sim, "relevance": rel, "correlations": corr, "findings": fnd,
            "windows": wins, "paths": paths}


def foreign_section():
    """What another stage (pruning) would add: a raw Vega-Lite dict and a table."""
    spec = {"$schema": "https://vega.github.io/schema/vega-lite/v6.json", "width": 300, "height": 200,
            "data": {"values": [{"sparsity": s, "ppl": p, "method": m} for m, pts in
                                (("wanda", [(0.5, 30.1), (0.6, 45.3), (0.7, 120.0)]),
                                 ("wanda (ours)", [(0.5, 29.0), (0.6, 41.2), (0.7, 101.5)])) for s, p in pts]},
            "mark": {"type": "line", "point": True},
            "encoding": {"x": {"field": "sparsity", "type": "quantitative"},
                         "y": {"field": "ppl", "type": "quantitative", "scale": {"type": "log"}},
                         "color": {"field": "method", "type": "nominal"}}}
    return make_section("prune-toy", "Pruning: perplexity vs sparsity </script><b>x</b>", order=40,
                        text="Perplexity of pruned models.\n\nSecond paragraph with <tags> & ampersands.",
                        charts=[{"id": "ppl", "title": "WikiText perplexity", "caption": "log scale", "spec": spec}],
                        tables=[{"id": "ppl", "columns": ["method", "sparsity", "ppl", "verdict"],
                                 "rows": [["wanda", 0.5, 30.1, "holds"], ["wanda (ours)", 0.5, 29.0, None]]}])


# ----------------------------------------------------------------------------- section format


def test_section_roundtrip_and_order(tmp_path):
    a = make_section("b-sec", "B", order=10, text="one")
    b = make_section("a-sec", "A", order=10, text=["x", "y"])
    c = make_section("z-sec", "Z", order=5)
    write_sections([a, b], tmp_path / "one.json")
    (tmp_path / "single.json").write_text(json.dumps(c))  # a bare section object is accepted too
    assert json.loads((tmp_path / "one.json").read_text())["format"] == FORMAT
    assert [s["id"] for s in load_sections(tmp_path / "one.json")] == ["b-sec", "a-sec"]
    assert [s["id"] for s in collect([tmp_path / "one.json", tmp_path / "single.json"])] == ["z-sec", "a-sec",
                                                                                            "b-sec"]
    with pytest.raises(SectionError, match="'b-sec' appears in"):
        collect([tmp_path / "one.json", tmp_path / "one.json"])


@pytest.mark.parametrize("bad, msg", [
    ({"id": "x", "title": "t", "tables": [{"columns": ["a", "b"], "rows": [[1]]}]}, r"rows\[0\] has 1 cells"),
    ({"id": "x", "title": "t", "charts": [{"spec": {"data": {"url": "http://cdn/x.csv"}, "mark": "point"}}]},
     "loads data from a URL"),
    ({"id": "has space", "title": "t"}, "'id' may use only"),
    ({"id": "x", "title": ""}, "'title' must be a non-empty string"),
    ({"id": "x", "title": "t", "charts": [{"id": "c", "spec": {}}, {"id": "c", "spec": {}}]}, "duplicate charts ids"),
])
def test_bad_sections_are_rejected(tmp_path, bad, msg):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"format": FORMAT, "sections": [bad]}))
    with pytest.raises(SectionError, match=msg):
        load_sections(p)


def test_non_finite_numbers_become_null(tmp_path):
    spec = {"data": {"values": [{"a": float("nan")}, {"a": float("inf")}, {"a": 1.5}]}, "mark": "point"}
    sec = make_section("n", "n", charts=[{"id": "c", "spec": spec}])
    assert sec["charts"][0]["spec"]["data"]["values"] == [{"a": None}, {"a": None}, {"a": 1.5}]
    write_sections([sec], tmp_path / "n.json")  # strict JSON: would raise on NaN


def test_wrong_format_and_invalid_json(tmp_path):
    p = tmp_path / "s.json"
    p.write_text(json.dumps({"format": "other/2", "sections": []}))
    with pytest.raises(SectionError, match="format 'other/2'"):
        load_sections(p)
    p.write_text("{not json")
    with pytest.raises(SectionError, match="not valid JSON"):
        load_sections(p)


def test_page_escapes_and_inlines_everything():
    sec = foreign_section()
    sec["charts"][0]["spec"]["title"] = "evil </script><script>alert(1)</script>"
    page = render_page([sec], title="T <x>", bundle="/*bundle*/")
    assert page.count("</script>") == 3  # bundle, spec JSON, embed code: the spec cannot close its element
    assert "alert(1)" in page and "<script>alert(1)" not in page
    assert "&lt;tags&gt; &amp; ampersands" in page and "T &lt;x&gt;" in page
    assert '<td class="ok">holds</td>' in page and '<td class="num">30.100</td>' in page
    specs = page.split('id="actpat-specs">')[1].split("</script>")[0]
    assert json.loads(specs)["sec-prune-toy-chart-ppl"]["title"].startswith("evil </script>")


def test_build_page_is_offline(tmp_path):
    write_sections([foreign_section()], tmp_path / "prune.json")
    out = build_page([tmp_path / "prune.json"], tmp_path / "index.html")
    page = out.read_text()
    assert "window.vegaEmbed=" in page and len(page) > 500_000  # Vega, Vega-Lite and vega-embed inlined
    assert "<script src" not in page and "<link" not in page


# ----------------------------------------------------------------------------- figures


def _png_size(path):
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_analysis_figures_and_section(analysis_inputs, tmp_path):
    p = analysis_inputs["paths"]
    figs = {n: {"svg": tmp_path / f"{n}.svg", "png": tmp_path / f"{n}.png"} for n in FIGURES}
    write_analysis_report(model="toy", density=p["density"], similarity=p["similarity"], relevance=p["relevance"],
                          relevance_json=p["relevance_json"], findings=p["findings"], figures=figs,
                          section=tmp_path / "analysis-toy.json", text_domains=["c4"])
    for n in FIGURES:
        root = ET.parse(figs[n]["svg"]).getroot()
        assert root.tag.endswith("svg") and float(root.get("width")) > 100
        w, h = _png_size(figs[n]["png"])
        assert w > 200 and h > 50
    secs = load_sections(tmp_path / "analysis-toy.json")
    assert [s["id"] for s in secs] == ["analysis-toy-summary", "analysis-toy-density", "analysis-toy-similarity",
                                       "analysis-toy-relevance"]
    summary = secs[0]["tables"][0]
    assert [r[0] for r in summary["rows"]] == [f["id"] for f in analysis_inputs["findings"]["findings"]]
    # the box-plot panels are the paper's Fig-3 pairs that exist here, in its order
    box = secs[2]["charts"][0]["spec"]
    values = next(iter(box["datasets"].values()))
    assert [v for v in dict.fromkeys(r["pair"] for r in values)] == [
        "boolq–boolq", "mmlu–mmlu", "humaneval–humaneval", "mmlu–boolq", "humaneval–boolq", "mmlu–humaneval"]
    # the drawn statistics are the table's
    sim = analysis_inputs["similarity"]
    r = next(v for v in values if v["pair"] == "mmlu–boolq" and v["layer_1"] == 3 and v["row"] == "box")
    t = sim.filter((pl.col("domain_a") == "boolq") & (pl.col("domain_b") == "mmlu") & (pl.col("layer") == 2)).row(
        0, named=True)
    assert (r["q1"], r["median"], r["q3"], r["whisker_hi"]) == pytest.approx(
        (t["q1"], t["median"], t["q3"], t["whisker_hi"]))


# ----------------------------------------------------------------------------- Chromium


@pytest.fixture(scope="module")
def chromium():
    exe, how = ensure_chromium()
    if exe is None:
        pytest.skip(f"headless Chromium unavailable: {how}")
    return exe


CHART_BOXES = """Array.from(document.querySelectorAll('.chart')).map(function(d){
  var e = d.querySelector('svg, canvas'); var r = e ? e.getBoundingClientRect() : null;
  return {id: d.id, tag: e ? e.tagName.toLowerCase() : null, w: r ? r.width : 0, h: r ? r.height : 0,
          marks: d.querySelectorAll('path, rect, line, circle, text').length};
})"""


def render(browser, page, timeout=60):
    browser.load(page.as_uri())
    deadline = time.time() + timeout
    while time.time() < deadline:
        if browser.evaluate("document.body.dataset.chartsRendered") is not None:
            break
        time.sleep(0.2)
    return (browser.evaluate("document.body.dataset.chartsRendered"),
            browser.evaluate("document.body.dataset.chartsFailed"), browser.evaluate(CHART_BOXES))


def test_report_renders_in_chromium(chromium, analysis_inputs, tmp_path):
    a = analysis_inputs
    objs = build_charts(a["density"], a["similarity"], a["relevance"], a["correlations"], windows=a["windows"],
                        text_domains=["c4"])
    write_sections(build_sections("toy", objs, a["findings"], a["similarity"], a["relevance"], a["correlations"],
                                  a["windows"]), tmp_path / "sections" / "analysis-toy.json")
    write_sections([foreign_section()], tmp_path / "sections" / "prune-toy.json")
    page = build_page(sorted((tmp_path / "sections").glob("*.json")), tmp_path / "index.html", title="ActPat test")
    with Browser(chromium) as b:
        ok, failed, boxes = render(b, page)
        errors = b.errors()
        urls = b.requested_urls()
        shot = b.screenshot(tmp_path / "report.png")
    if os.environ.get("ACTPAT_SCREENSHOT_DIR"):
        shutil.copy(shot, os.path.join(os.environ["ACTPAT_SCREENSHOT_DIR"], "report.png"))
    n_charts = len(FIGURES) + 1
    assert errors == []
    assert (ok, failed) == (str(n_charts), "0")
    assert len(boxes) == n_charts
    for box in boxes:
        assert box["tag"] == "svg" and box["w"] > 100 and box["h"] > 50 and box["marks"] > 10, box
    assert all(u.startswith(("file://", "data:", "blob:")) for u in urls), urls  # nothing from the network
    assert _png_size(shot)[1] > 2000


def test_chromium_check_detects_a_broken_chart(chromium, tmp_path):
    good = {"data": {"values": [{"a": 1}]}, "mark": "point", "encoding": {"x": {"field": "a", "type": "quantitative"}}}
    bad = {"data": {"values": [{"a": 1}]}, "mark": "point", "transform": [{"calculate": "datum.a +* 1", "as": "b"}],
           "encoding": {"x": {"field": "b", "type": "quantitative"}}}
    sec = make_section("t", "t", charts=[{"id": "good", "spec": good}, {"id": "bad", "spec": bad}])
    page = build_page([sec], tmp_path / "broken.html")
    with Browser(chromium) as b:
        ok, failed, boxes = render(b, page)
        errors = b.errors()
    assert (ok, failed) == ("1", "1")
    assert any("chart sec-t-chart-bad failed" in e for e in errors), errors
    assert [x["tag"] for x in boxes] == ["svg", None]


def test_atomic_writes_have_default_permissions(tmp_path):
    from actpat.atomic import write_text

    old = os.umask(0o022)
    try:
        p = write_text("x", tmp_path / "a.txt")
    finally:
        os.umask(old)
    assert p.read_text() == "x" and (p.stat().st_mode & 0o777) == 0o644
    assert [f.name for f in tmp_path.iterdir()] == ["a.txt"]  # no temporary left behind
