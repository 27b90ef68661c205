"""Sentence-pair sets with human similarity scores for Validation 3 (``results/sts/<pairset>.parquet``).

Columns ``id, text_a, text_b, score (float64), source``; scores keep the dataset's own scale
(Spearman's rho does not depend on it).  Sources:

* ``gensim_lee``: the Lee news corpus from gensim's test data: ``lee.cor`` (50 documents, one
  per line, latin-1) and ``similarities0-1.txt`` (50 x 50 mean human ratings, 0-1, stored as
  an upper triangle with ones on the diagonal).  Pairs are the 1,225 cells above the diagonal.
* ``gensim_simlex`` / ``gensim_wordsim``: SimLex-999 and WordSim-353 word pairs
  (``word1 <tab> word2 <tab> mean score``, ``#`` comment lines).
* ``hub``: ``datasets.load_dataset(path, name, split=split)`` with ``format: stsb``
  (``sentence1, sentence2, score`` as sentence-transformers/stsb, or ``text1, text2, label``
  as SetFit/stsb), ``format: sick`` (``sentence_A, sentence_B, relatedness_score``) or
  ``format: pairs`` (``text_a, text_b, score``).
* ``local``: a CSV/JSONL/JSON/Parquet file in any of those shapes (``format: pairs``, the
  default, accepts all of them).

``selection: first`` keeps the first ``pairs`` pairs in file order (the paper's STS-B code);
``selection: seeded`` keeps a seeded sample of ``pairs`` pairs (SHA-256 of seed and pair key),
listed in file order.  The choice, seed and counts are in the Parquet metadata
(``actpat.selection``, ``actpat.seed``, ``actpat.pairs_available``).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from actpat import __version__
from actpat.provenance import package_versions
from actpat.data.sources import (
    SOURCE_ASSETS, DataError, asset_prefix, checked_asset_dir, hub_prefix, hub_rows, read_local_rows,
)
from actpat.data.tables import stable_hash

log = logging.getLogger(__name__)

PAIR_SCHEMA = {"id": pl.String, "text_a": pl.String, "text_b": pl.String, "score": pl.Float64, "source": pl.String}
SHAPES = {
    "stsb": [("sentence1", "sentence2", "score"), ("text1", "text2", "label")],
    "sick": [("sentence_A", "sentence_B", "relatedness_score")],
    "pairs": [("text_a", "text_b", "score")],
}
LEE_DOCS = 50


@dataclass
class Pair:
    key: str
    text_a: str
    text_b: str
    score: float
    source: str


@dataclass
class PairBuild:
    df: pl.DataFrame
    metadata: dict = field(default_factory=dict)


def parse_score(value: Any, where: str, col: str = "score") -> float:
    """A finite float, or DataError naming the row and column."""
    if isinstance(value, bool) or value is None:
        x = None
    elif isinstance(value, (int, float)):
        x = float(value)
    elif isinstance(value, str):
        try:
            x = float(value.strip())
        except ValueError:
            x = None
    else:
        x = None
    if x is None or not math.isfinite(x):
        raise DataError(f"{where}: column {col!r} = {value!r} is not a number; similarity scores must be numeric")
    return x


def _text(value: Any, where: str, col: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: column {col!r} is empty or not text ({value!r:.60})")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise DataError(f"{where}: column {col!r} is not valid Unicode text ({e.reason})") from None
    return value


# ------------------------------------------------------------------------- readers


def _gensim_dir(assets_root) -> tuple[Path, str]:
    d = checked_asset_dir(Path(assets_root) / SOURCE_ASSETS["gensim_lee"])
    return d, asset_prefix(d, SOURCE_ASSETS["gensim_lee"])


def read_lee(assets_root="resources/assets") -> list[Pair]:
    """The 1,225 Lee document pairs (i < j) with their mean human similarity ratings."""
    d, prefix = _gensim_dir(assets_root)
    docs = (d / "lee.cor").read_bytes().decode("latin-1").splitlines()  # the corpus is latin-1 (a £ sign)
    if len(docs) != LEE_DOCS or not all(x.strip() for x in docs):
        raise DataError(f"{d / 'lee.cor'}: expected {LEE_DOCS} non-empty documents (one per line), got "
                        f"{sum(1 for x in docs if x.strip())} of {len(docs)} lines")
    rows = []
    for r, line in enumerate((d / "similarities0-1.txt").read_text(encoding="ascii").splitlines()):
        cells = line.split()
        if not cells:
            continue
        rows.append([parse_score(c, f"{prefix}similarities0-1.txt row {r} column {k}", f"column {k}")
                     for k, c in enumerate(cells)])
    n = len(rows)
    if n != LEE_DOCS or any(len(x) != LEE_DOCS for x in rows):
        raise DataError(f"{d / 'similarities0-1.txt'}: expected a {LEE_DOCS} x {LEE_DOCS} matrix, got {n} rows "
                        f"of lengths {sorted({len(x) for x in rows})}")
    lower = any(rows[i][j] != 0 for i in range(n) for j in range(i))
    symmetric = all(rows[i][j] == rows[j][i] for i in range(n) for j in range(i))
    if lower and not symmetric:  # the layout this reader expects: an upper triangle (lower part zero)
        raise DataError(f"{d / 'similarities0-1.txt'}: the matrix is neither upper-triangular nor symmetric")
    return [
        Pair(f"{i:02d}-{j:02d}", docs[i], docs[j], rows[i][j], f"{prefix}similarities0-1.txt#{i},{j}")
        for i in range(n) for j in range(i + 1, n)
    ]


def read_word_pairs(path: Path, prefix: str) -> list[Pair]:
    """``word1 <tab> word2 <tab> score`` lines (``#`` lines are comments)."""
    out = []
    row = 0
    for ln, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        where = f"{prefix}{path.name}#{row} (line {ln})"
        cells = line.split("\t")
        if len(cells) < 3:
            raise DataError(f"{where}: expected word1<tab>word2<tab>score, got {line!r}")
        out.append(Pair(str(row), _text(cells[0], where, "word1"), _text(cells[1], where, "word2"),
                        parse_score(cells[2], where), f"{prefix}{path.name}#{row}"))
        row += 1
    return out


def pairs_from_rows(rows: list[dict], fmt: str, prefix: str, where: str) -> list[Pair]:
    """Pairs from hub-format rows: ``fmt`` picks the accepted shapes (``pairs`` accepts all)."""
    shapes = [s for f in ("stsb", "sick", "pairs") for s in SHAPES[f]] if fmt == "pairs" else SHAPES[fmt]
    if not rows:
        raise DataError(f"{where}: no rows")
    cols = set(rows[0])
    shape = next((s for s in shapes if set(s) <= cols), None)
    if shape is None:
        want = " or ".join("/".join(s) for s in shapes)
        raise DataError(f"{where}: missing columns; format {fmt!r} expects {want}; the file has {sorted(cols)}")
    a, b, sc = shape
    out = []
    for i, r in enumerate(rows):
        w = f"{prefix}{i}"
        for c in shape:
            if c not in r:
                raise DataError(f"{w}: missing column {c!r}")
        key = str(r["id"]) if r.get("id") not in (None, "") else str(i)
        out.append(Pair(key, _text(r[a], w, a), _text(r[b], w, b), parse_score(r[sc], w, sc), f"{prefix}{i}"))
    return out


def read_pairs(spec: dict, assets_root="resources/assets") -> list[Pair]:
    """All pairs of one configured pair set, in file order."""
    src = spec["source"]
    if src == "gensim_lee":
        pairs = read_lee(assets_root)
    elif src in ("gensim_simlex", "gensim_wordsim"):
        d, prefix = _gensim_dir(assets_root)
        pairs = read_word_pairs(d / ("simlex999.txt" if src == "gensim_simlex" else "wordsim353.tsv"), prefix)
    elif src == "hub":
        name, split = spec.get("name"), spec.get("split", "validation")
        prefix = hub_prefix(spec["path"], name, split)
        pairs = pairs_from_rows(hub_rows(spec["path"], name, split), spec.get("format", "pairs"), prefix,
                                prefix.rstrip("#"))
    elif src == "local":
        pairs = pairs_from_rows(read_local_rows(spec["path"]), spec.get("format", "pairs"),
                                f"file:{spec['path']}#", f"file:{spec['path']}")
    else:
        raise DataError(f"unknown pair source {src!r}; known: gensim_lee, gensim_simlex, gensim_wordsim, hub, local")
    seen: dict[str, str] = {}
    for p in pairs:
        if p.key in seen:
            raise DataError(f"duplicate id {p.key!r}: {seen[p.key]} and {p.source}")
        seen[p.key] = p.source
    return pairs


def select_pairs(pairs: list[Pair], n: int, selection: str, seed: int) -> list[Pair]:
    """``first``: the first n in file order; ``seeded``: a seeded sample of n, kept in file order."""
    if selection == "first":
        return pairs[:n]
    if selection != "seeded":
        raise DataError(f"unknown selection {selection!r}; use seeded or first")
    pos = {p.key: i for i, p in enumerate(pairs)}
    chosen = sorted(pairs, key=lambda p: stable_hash("pairs", seed, p.key))[:n]
    return sorted(chosen, key=lambda p: pos[p.key])


def build_pairset(name: str, spec: dict, data_cfg: dict | None = None,
                  assets_root="resources/assets") -> PairBuild:
    seed = int((data_cfg or {}).get("seed", 1))
    n, selection = int(spec.get("pairs", 256)), spec.get("selection", "seeded")
    pairs = read_pairs(spec, assets_root)
    chosen = select_pairs(pairs, n, selection, seed)
    if len(chosen) < n:
        log.warning("pair set %s: only %d pairs available, fewer than pairs = %d; keeping all", name, len(pairs), n)
    log.info("pair set %s: %d of %d pairs (%s%s)", name, len(chosen), len(pairs), selection,
             f", seed {seed}" if selection == "seeded" else "")
    df = pl.DataFrame(
        [{"id": f"{name}/{p.key}", "text_a": p.text_a, "text_b": p.text_b, "score": p.score, "source": p.source}
         for p in chosen],
        schema=PAIR_SCHEMA, orient="row",
    )
    validate_pairs(df, name=name)
    meta = {
        "actpat.pairset": name,
        "actpat.spec": json.dumps(spec, sort_keys=True),
        "actpat.selection": selection,
        "actpat.seed": str(seed),
        "actpat.pairs_available": str(len(pairs)),
        "actpat.version": __version__,
        "actpat.packages": json.dumps(package_versions(("polars", "pyarrow", "datasets"))),
    }
    return PairBuild(df, meta)


def build_pair_table(name: str, spec: dict, data_cfg: dict | None = None,
                     assets_root="resources/assets") -> pl.DataFrame:
    return build_pairset(name, spec, data_cfg, assets_root).df


def validate_pairs(df: pl.DataFrame, *, name: str | None = None) -> None:
    """Check a pair table (columns, types, non-empty texts, finite scores, unique ids)."""
    where = f"pair set {name!r}" if name else "pair set"
    for c, t in PAIR_SCHEMA.items():
        if c not in df.columns:
            raise DataError(f"{where}: missing column {c!r}; a pair table has {', '.join(PAIR_SCHEMA)}")
        if df.schema[c] != t:
            raise DataError(f"{where}: column {c!r} has type {df.schema[c]}, expected {t}")
    if df.height == 0:
        raise DataError(f"{where}: no pairs")
    dup = df.group_by("id").len().filter(pl.col("len") > 1)
    if dup.height:
        raise DataError(f"{where}: duplicate id {sorted(dup['id'].to_list())[0]!r}")
    for r in df.iter_rows(named=True):
        for c in ("text_a", "text_b"):
            if r[c] is None or not r[c].strip():
                raise DataError(f"{where}: row {r['id']!r}: column {c!r} is empty")
        if r["score"] is None or not math.isfinite(r["score"]):
            raise DataError(f"{where}: row {r['id']!r}: score {r['score']!r} is not a finite number")
