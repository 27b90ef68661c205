"""Are two runs' results the same?  Stores, tables and JSON compared value by value.

``compare(a, b)`` walks two ``results/`` folders and compares every file both have:

* score stores (``*.zarr``): the same arrays, equal element for element (or within ``atol``), and
  the same attributes apart from timings;
* tables (``*.parquet``): the same columns and values (``float_rtol`` for float columns; a type
  change with equal values is reported as such);
* JSON: equal after dropping timings and machine-specific keys (``VOLATILE``);
* anything else (Markdown, SVG, PNG, HTML): byte-identical or reported as presentation.

``actpat compare-runs A B`` prints the outcome per file and exits 1 when a store, table or JSON
differs.  Used to show that a refactor changes no result, and that N GPUs give one GPU's results.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

# keys whose values depend on the machine, the clock or the checkout, not on what was computed
VOLATILE = {"timings_s", "seconds", "job_seconds", "commit", "dirty", "created", "hostname", "python", "packages",
            "path", "workflow_dir", "actpat_version", "elapsed_s"}


@dataclass
class Outcome:
    path: str
    kind: str  # store | table | json | other
    same: bool
    note: str = ""


def _strip(x):
    if isinstance(x, dict):
        return {k: _strip(v) for k, v in x.items() if k not in VOLATILE}
    if isinstance(x, list):
        return [_strip(v) for v in x]
    return x


def _close(a, b, rtol: float) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isfinite(a) and math.isfinite(b) and abs(a - b) <= rtol * max(abs(a), abs(b)))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], rtol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y, rtol) for x, y in zip(a, b))
    return a == b


def _store(a: Path, b: Path, atol: float) -> tuple[bool, str]:
    from .engine.store import ScoreStore

    sa, sb = ScoreStore(a), ScoreStore(b)
    if sa.names != sb.names:
        return False, "different arrays"
    worst = 0.0
    for name in sa.names:
        x, y = sa.read(name), sb.read(name)
        if x.shape != y.shape:
            return False, f"{name}: shapes {x.shape} and {y.shape}"
        worst = max(worst, float(np.max(np.abs(x.astype(np.float64) - y.astype(np.float64)), initial=0.0)))
    if worst > atol:
        return False, f"arrays differ by up to {worst:.3g}"
    if _strip(dict(sa.attrs)) != _strip(dict(sb.attrs)):
        return False, "attributes differ"
    return True, "identical" if worst == 0 else f"arrays within {worst:.3g}"


def _table(a: Path, b: Path, rtol: float) -> tuple[bool, str]:
    x, y = pl.read_parquet(a), pl.read_parquet(b)
    drop = [c for c in x.columns if c in VOLATILE]
    x, y = x.drop(drop, strict=False), y.drop(drop, strict=False)
    if x.columns != y.columns:
        return False, f"columns differ: {sorted(set(x.columns) ^ set(y.columns))}"
    note = ""
    if x.schema != y.schema:
        changed = [c for c in x.columns if x.schema[c] != y.schema[c]]
        note = f"types differ ({', '.join(f'{c}: {x.schema[c]} vs {y.schema[c]}' for c in changed)}), "
        y = y.cast({c: x.schema[c] for c in changed})
    if x.height != y.height:
        return False, note + f"{x.height} vs {y.height} rows"
    if x.equals(y):
        return True, note + "values identical"
    ok = all(_close(r, s, rtol) for r, s in zip(x.iter_rows(), y.iter_rows()))
    return ok, note + ("values within rtol" if ok else "values differ")


def compare(a: str | Path, b: str | Path, *, atol: float = 0.0, float_rtol: float = 0.0) -> list[Outcome]:
    a, b = Path(a), Path(b)
    stores = {p.relative_to(a) for p in a.rglob("*.zarr")} | {p.relative_to(b) for p in b.rglob("*.zarr")}
    files = {p.relative_to(a) for p in a.rglob("*") if p.is_file() and not any(s in p.parents for s in
                                                                                  (a / t for t in stores))}
    files |= {p.relative_to(b) for p in b.rglob("*") if p.is_file() and not any(s in p.parents for s in
                                                                                   (b / t for t in stores))}
    out = []
    for rel in sorted(stores):
        if not ((a / rel).is_dir() and (b / rel).is_dir()):
            out.append(Outcome(str(rel), "store", False, "only in one run"))
            continue
        out.append(Outcome(str(rel), "store", *_store(a / rel, b / rel, atol)))
    for rel in sorted(files):
        pa, pb = a / rel, b / rel
        kind = {".parquet": "table", ".json": "json"}.get(rel.suffix, "other")
        if not (pa.is_file() and pb.is_file()):
            out.append(Outcome(str(rel), kind, False, "only in one run"))
        elif kind == "table":
            out.append(Outcome(str(rel), kind, *_table(pa, pb, float_rtol)))
        elif kind == "json":
            x, y = _strip(json.loads(pa.read_text())), _strip(json.loads(pb.read_text()))
            same = _close(x, y, float_rtol)
            out.append(Outcome(str(rel), kind, same, "equal" if same else "values differ"))
        else:
            same = pa.read_bytes() == pb.read_bytes()
            out.append(Outcome(str(rel), kind, same, "bytes identical" if same else "presentation differs"))
    return out
