"""Sentence-pair sets with human similarity scores for Validation 3 (``results/sts/<pairset>.parquet``).

Columns ``id, text_a, text_b, score (float64), source``; scores keep the dataset's own scale
(Spearman's rho does not depend on it).  Sources (``actpat.data.sources``: ``gensim_lee``,
``gensim_simlex``, ``gensim_wordsim``, ``hub``, ``local``) give the pairs; ``hub`` and ``local``
accept ``format: stsb`` (``sentence1, sentence2, score`` as sentence-transformers/stsb, or
``text1, text2, label`` as SetFit/stsb), ``format: sick`` (``sentence_A, sentence_B,
relatedness_score``) or ``format: pairs`` (``text_a, text_b, score``; the default, which accepts
all of them).

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

import polars as pl

from actpat import __version__
from actpat.provenance import package_versions
from actpat.contracts import PAIR_SCHEMA
from actpat.data.sources import DataError, Pair, read_pairs
from actpat.data.tables import stable_hash

log = logging.getLogger(__name__)



@dataclass
class PairBuild:
    df: pl.DataFrame
    metadata: dict = field(default_factory=dict)


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
