"""The standalone offline report page, assembled from section files written by any stage.

Section files
=============
Every stage that wants space in ``results/report/index.html`` writes one JSON file,
conventionally ``results/report/sections/<name>.json`` (use :func:`write_sections`),
and registers it in its rules file with ``add_report_section(lambda: [paths])``
(``rules/common.smk``); ``rules/report.smk`` collects all registered files.  A file holds
one section object or ``{"format": FORMAT, "sections": [section, ...]}``::

    {
      "format": "actpat-report-section/1",
      "sections": [{
        "id": "prune-smollm2-135m",        # unique on the page; letters, digits, - _ .
        "title": "Pruning: perplexity vs sparsity",
        "order": 40,                        # page position (ascending; ties by id); default 50
        "text": ["First paragraph.", "Second paragraph."],   # or one string; plain text, escaped
        "tables": [{
          "id": "ppl", "title": "WikiText perplexity", "caption": "...",
          "columns": ["method", "sparsity", "ppl"],
          "rows": [["wanda", 0.5, 31.2], ...],
          "digits": 3                       # decimals for floats (optional, default 3)
        }],
        "charts": [{
          "id": "ppl-vs-sparsity", "title": "...", "caption": "...",
          "spec": { ... a Vega-Lite (or Vega) spec with inline data ... }
        }]
      }]
    }

Rendering order inside a section: text, tables, charts.  Specs must carry their data
inline (``data.values``); a spec that loads a URL would break the offline page.
Table cells are strings, numbers, booleans or null; the cells ``holds`` /
``does not hold`` / ``not measured`` are coloured.

Page
====
:func:`build_page` writes one HTML file with Vega, Vega-Lite and vega-embed inlined
(``vl_convert.javascript_bundle``): no network access is needed to view it.  Every
chart is embedded with the SVG renderer and export actions only (no editor links);
when all embeds have settled the body gets ``data-charts-rendered`` (count of
successes) and ``data-charts-failed`` attributes, which the browser test reads.
"""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from ..atomic import write_json, write_text
from .charts import VL_VERSION

FORMAT = "actpat-report-section/1"
DEFAULT_ORDER = 50
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
VERDICT_CLASS = {"holds": "ok", "does not hold": "bad", "inconclusive": "open", "not measured": "na"}


class SectionError(ValueError):
    pass


# ----------------------------------------------------------------------------- sections


def make_section(id: str, title: str, *, text: str | Sequence[str] = (), charts: Sequence[Mapping] = (),
                 tables: Sequence[Mapping] = (), order: int = DEFAULT_ORDER) -> dict:
    """A section dict (validated); chart ``spec`` may be an Altair chart or a dict."""
    charts = [{**c, "spec": _spec_dict(c["spec"])} for c in charts]
    sec = {"id": id, "title": title, "order": order, "text": _paragraphs(text), "tables": list(tables),
           "charts": charts}
    check_section(sec, "<make_section>")
    return sec


def _spec_dict(spec) -> dict:
    return _finite(spec.to_dict() if hasattr(spec, "to_dict") else dict(spec))


def _finite(x):
    """NaN/inf -> null, so the spec is valid JSON (Vega treats null as missing)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, Mapping):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def _paragraphs(text) -> list[str]:
    if isinstance(text, str):
        return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    return [str(p) for p in text]


def check_section(sec: Mapping, where: str) -> None:
    def fail(msg):
        raise SectionError(f"{where}: section {sec.get('id', '?')!r}: {msg} (format: actpat.report.html docstring)")

    if not isinstance(sec, Mapping):
        raise SectionError(f"{where}: a section must be a JSON object, got {type(sec).__name__}")
    for key in ("id", "title"):
        if not isinstance(sec.get(key), str) or not sec.get(key):
            fail(f"'{key}' must be a non-empty string")
    if not _ID.match(sec["id"]):
        fail("'id' may use only letters, digits, - _ . and must start with a letter or digit")
    if not isinstance(sec.get("order", DEFAULT_ORDER), (int, float)):
        fail("'order' must be a number")
    for i, t in enumerate(sec.get("tables", [])):
        cols = t.get("columns")
        if not isinstance(cols, list) or not cols:
            fail(f"tables[{i}]: 'columns' must be a non-empty list")
        for r, row in enumerate(t.get("rows", [])):
            if not isinstance(row, list) or len(row) != len(cols):
                fail(f"tables[{i}].rows[{r}] has {len(row) if isinstance(row, list) else '?'} cells; "
                     f"expected {len(cols)} (one per column)")
    for i, c in enumerate(sec.get("charts", [])):
        if not isinstance(c.get("spec"), Mapping):
            fail(f"charts[{i}]: 'spec' must be a Vega-Lite spec object")
        if _has_url_data(c["spec"]):
            fail(f"charts[{i}]: the spec loads data from a URL; inline it (data.values) so the page works offline")
    for key in ("tables", "charts"):
        ids = [x.get("id") for x in sec.get(key, []) if x.get("id")]
        if len(ids) != len(set(ids)):
            fail(f"duplicate {key} ids {ids}")


def _has_url_data(spec) -> bool:
    if isinstance(spec, Mapping):
        if isinstance(spec.get("data"), Mapping) and "url" in spec["data"]:
            return True
        return any(_has_url_data(v) for v in spec.values())
    if isinstance(spec, list):
        return any(_has_url_data(v) for v in spec)
    return False


def write_sections(sections: Sequence[Mapping], path: str | Path) -> Path:
    """Write a section file (atomically) after validating every section."""
    for s in sections:
        check_section(s, str(path))
    return write_json({"format": FORMAT, "sections": list(sections)}, path)


def load_sections(path: str | Path) -> list[dict]:
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise SectionError(f"{path}: not valid JSON ({e}); rerun the rule that wrote it") from e
    if isinstance(doc, Mapping) and "sections" in doc:
        if doc.get("format", FORMAT) != FORMAT:
            raise SectionError(f"{path}: format {doc.get('format')!r}; this report understands {FORMAT!r}")
        secs = doc["sections"]
    else:
        secs = [doc]
    for s in secs:
        check_section(s, str(path))
    return [dict(s) for s in secs]


def collect(paths: Iterable[str | Path]) -> list[dict]:
    """All sections of the given files, in page order; ids must be unique across files."""
    secs, seen = [], {}
    for p in paths:
        for s in load_sections(p):
            if s["id"] in seen:
                raise SectionError(f"section id {s['id']!r} appears in {seen[s['id']]} and {p}; ids must be unique")
            seen[s["id"]] = str(p)
            secs.append(s)
    return sorted(secs, key=lambda s: (s.get("order", DEFAULT_ORDER), s["id"]))


# ----------------------------------------------------------------------------- page


CSS = """
body{font-family:"DejaVu Sans","Liberation Sans",Arial,sans-serif;margin:0;color:#222;background:#fff}
header{background:#2b3a55;color:#fff;padding:1em 2em}
header h1{margin:0;font-size:1.6em} header p{margin:.3em 0 0;opacity:.85}
nav{padding:.5em 2em;border-bottom:1px solid #ddd;background:#f6f7f9}
nav a{margin-right:1.2em;color:#2b3a55}
main{padding:0 2em 3em;max-width:1400px}
section{margin-top:2em} h2{border-bottom:2px solid #2b3a55;padding-bottom:.2em}
figure{margin:1.2em 0} figcaption{font-size:.9em;color:#555;max-width:60em;margin-top:.4em}
.chart{min-height:40px;overflow-x:auto}
.chart-error{color:#a00;white-space:pre-wrap;font-family:monospace}
table{border-collapse:collapse;margin:1em 0;font-size:.88em}
th,td{border:1px solid #ccc;padding:.3em .6em;vertical-align:top;text-align:left}
th{background:#eef0f4} td.num{text-align:right;font-variant-numeric:tabular-nums}
td.ok{background:#dff3df;font-weight:bold} td.bad{background:#f8dcdc;font-weight:bold}
td.na{background:#eee} td.open{background:#fff3d6}
.caption{font-size:.9em;color:#555}
"""

EMBED_JS = """
(function(){
  const specs = JSON.parse(document.getElementById('actpat-specs').textContent);
  const opts = {renderer: 'svg', actions: {export: true, source: false, compiled: false, editor: false}};
  let ok = 0, failed = 0;
  const jobs = Object.keys(specs).map(function(id){
    return vegaEmbed('#' + CSS.escape(id), specs[id], opts).then(function(){ ok += 1; })
      .catch(function(err){
        failed += 1;
        const el = document.getElementById(id);
        el.textContent = 'chart failed to render: ' + err;
        el.className += ' chart-error';
        console.error('chart ' + id + ' failed to render:', err);
      });
  });
  Promise.all(jobs).then(function(){
    document.body.dataset.chartsRendered = String(ok);
    document.body.dataset.chartsFailed = String(failed);
  });
})();
"""


def _fmt_cell(v, digits: int) -> tuple[str, str]:
    """(text, css class) of one table cell."""
    if v is None:
        return "", "na"
    if isinstance(v, bool):
        return ("yes" if v else "no"), ""
    if isinstance(v, int):
        return f"{v:,}" if abs(v) >= 10000 else str(v), "num"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "n/a", "num"
        ax = abs(v)
        s = f"{v:.{digits}g}" if ax and (ax < 10 ** -digits or ax >= 1e6) else f"{v:.{digits}f}"
        return s, "num"
    s = str(v)
    return s, VERDICT_CLASS.get(s, "")


def _table_html(t: Mapping, anchor: str) -> str:
    digits = int(t.get("digits", 3))
    out = [f'<figure id="{html.escape(anchor)}">']
    if t.get("title"):
        out.append(f"<h3>{html.escape(str(t['title']))}</h3>")
    out.append('<table class="actpat-table"><thead><tr>')
    out += [f"<th>{html.escape(str(c))}</th>" for c in t["columns"]]
    out.append("</tr></thead><tbody>")
    for row in t.get("rows", []):
        out.append("<tr>")
        for v in row:
            text, cls = _fmt_cell(v, digits)
            out.append(f'<td class="{cls}">{html.escape(text)}</td>' if cls else f"<td>{html.escape(text)}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    if t.get("caption"):
        out.append(f'<figcaption>{html.escape(str(t["caption"]))}</figcaption>')
    out.append("</figure>")
    return "".join(out)


def _script_json(obj) -> str:
    # '<', '>' and '&' only occur inside JSON strings, where \\u escapes are valid: the
    # script element can then never be closed early by the data.
    s = json.dumps(obj, allow_nan=False, separators=(",", ":"))
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def javascript_bundle() -> str:
    import vl_convert as vlc

    js = vlc.javascript_bundle(vl_version=VL_VERSION)
    return js.replace("</script", "<\\/script")


def render_page(sections: Sequence[Mapping], title: str = "ActPat report", subtitle: str | None = None,
                bundle: str | None = None) -> str:
    """The page as a string (see module docstring)."""
    for s in sections:
        check_section(s, "<render_page>")
    specs: dict[str, dict] = {}
    body, nav = [], []
    for s in sections:
        sid = f"sec-{s['id']}"
        nav.append(f'<a href="#{html.escape(sid)}">{html.escape(s["title"])}</a>')
        body.append(f'<section id="{html.escape(sid)}"><h2>{html.escape(s["title"])}</h2>')
        body += [f"<p>{html.escape(p)}</p>" for p in _paragraphs(s.get("text", []))]
        for i, t in enumerate(s.get("tables", [])):
            body.append(_table_html(t, f"{sid}-table-{t.get('id', i)}"))
        for i, c in enumerate(s.get("charts", [])):
            cid = f"{sid}-chart-{c.get('id', i)}"
            specs[cid] = _finite(c["spec"])
            body.append(f'<figure>{"<h3>" + html.escape(str(c["title"])) + "</h3>" if c.get("title") else ""}'
                        f'<div class="chart" id="{html.escape(cid)}"></div>'
                        + (f'<figcaption>{html.escape(str(c["caption"]))}</figcaption>' if c.get("caption") else "")
                        + "</figure>")
        body.append("</section>")
    js = bundle if bundle is not None else javascript_bundle()
    sub = f"<p>{html.escape(subtitle)}</p>" if subtitle else ""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{html.escape(title)}</title>"
        f"<style>{CSS}</style>\n<script>{js}</script>\n</head><body>"
        f"<header><h1>{html.escape(title)}</h1>{sub}</header><nav>{''.join(nav)}</nav><main>"
        + "".join(body)
        + "</main>\n"
        f'<script type="application/json" id="actpat-specs">{_script_json(specs)}</script>\n'
        f"<script>{EMBED_JS}</script>\n</body></html>\n"
    )


def build_page(sections: Sequence[Mapping | str | Path], out_path: str | Path, title: str = "ActPat report",
               subtitle: str | None = None) -> Path:
    """Write the standalone page.  ``sections`` are section dicts or section-file paths (collected in order)."""
    dicts = [s for s in sections if isinstance(s, Mapping)]
    files = [s for s in sections if not isinstance(s, Mapping)]
    secs = sorted(list(dicts) + collect(files), key=lambda s: (s.get("order", DEFAULT_ORDER), s["id"]))
    ids = [s["id"] for s in secs]
    if len(ids) != len(set(ids)):
        raise SectionError(f"duplicate section ids on the page: {sorted({i for i in ids if ids.count(i) > 1})}")
    return write_text(render_page(secs, title, subtitle), out_path)
