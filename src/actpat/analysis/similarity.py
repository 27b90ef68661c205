"""Cross-domain activation similarity per layer (Finding 2; paper Figs 3 and 5).

Input: gram tables (docs/contracts.md) -- the mixed-domain panel and, optionally, the
within-domain gram tables of the scoring runs.  Every row is one unordered sample pair
at one layer.  Pairs are put in a canonical orientation ((domain, id) of side a sorts
first), so that a pair present in two tables (the panel and a domain's scoring run
both take rows from the top of the sample table) is counted once: the first table
listed wins.  Rows whose ``llmdcos`` is not finite (a zero-norm side) are dropped and
counted in the log; rows whose ``llmdcos`` disagrees with ``dot/sqrt(norm2_a·norm2_b)``
are rejected (a corrupted table), naming the file and row.

Per (domain pair, layer) the summary holds n, mean, std and the box-plot statistics in
the paper's style (seaborn/matplotlib defaults): quartiles by linear interpolation,
whiskers at the most extreme values within 1.5·IQR of the box, outliers beyond them.

Output table (``similarity.parquet``), one row per (domain pair, layer):

==============  =========  ======================================================
column          type       meaning
==============  =========  ======================================================
model           str
domain_a/b      str        the domain pair, sorted (domain_a <= domain_b)
kind            str        ``within`` or ``cross``
layer           int        0-indexed decoder block
n               int        sample pairs
mean, std       f64        LLMDcos mean and sample std (ddof 1; null for n = 1)
min, q1, median, q3, max   f64
whisker_lo/hi   f64        most extreme values within q1 - 1.5·IQR .. q3 + 1.5·IQR
outliers        list[f64]  values beyond the whiskers
==============  =========  ======================================================
"""

from __future__ import annotations

import logging
from itertools import combinations_with_replacement
from pathlib import Path
from typing import Iterable, Sequence

import polars as pl

from ..contracts import GRAM_SCHEMA

log = logging.getLogger(__name__)

WHIS = 1.5
# LLMDcos is recomputed from dot and norms as a consistency check; float32 rounding of
# the stored columns stays far below this.
CONSISTENCY_TOL = 1e-3

# The panels of the paper's Figure 3 (arXiv v1 file names), in its order.
PAPER_FIG3_PAIRS = [("boolq", "boolq"), ("mmlu", "mmlu"), ("humaneval", "humaneval"),
                    ("mmlu", "boolq"), ("humaneval", "boolq"), ("mmlu", "humaneval")]


class GramError(ValueError):
    pass


def pair_label(a: str, b: str) -> str:
    return f"{a}–{b}"


def scan_gram(path: str | Path) -> pl.LazyFrame:
    """A gram table as a lazy frame with the contract's columns and types (checked)."""
    path = Path(path)
    if not path.is_file():
        raise GramError(f"gram table {path} does not exist; run the scoring job that writes it")
    lf = pl.scan_parquet(path)
    have = lf.collect_schema()
    missing = [c for c in GRAM_SCHEMA if c not in have]
    if missing:
        raise GramError(f"{path}: missing column(s) {missing}; a gram table has {list(GRAM_SCHEMA)} "
                        "(docs/contracts.md)")
    return (lf.select(list(GRAM_SCHEMA)).cast(GRAM_SCHEMA)
            .with_columns(pl.lit(str(path)).alias("_file"), pl.int_range(pl.len()).alias("_row")))


def load_pairs(paths: Sequence[str | Path]) -> pl.DataFrame:
    """All sample pairs of the given gram tables, canonical and de-duplicated (see module doc)."""
    if not paths:
        raise GramError("no gram tables given")
    lf = pl.concat([scan_gram(p).with_columns(pl.lit(i).alias("_src")) for i, p in enumerate(paths)])
    swap = (pl.col("domain_a") > pl.col("domain_b")) | (
        (pl.col("domain_a") == pl.col("domain_b")) & (pl.col("id_a") > pl.col("id_b")))
    lf = lf.with_columns(
        pl.when(swap).then(pl.col("domain_b")).otherwise(pl.col("domain_a")).alias("domain_a"),
        pl.when(swap).then(pl.col("domain_a")).otherwise(pl.col("domain_b")).alias("domain_b"),
        pl.when(swap).then(pl.col("id_b")).otherwise(pl.col("id_a")).alias("id_a"),
        pl.when(swap).then(pl.col("id_a")).otherwise(pl.col("id_b")).alias("id_b"),
        pl.when(swap).then(pl.col("norm2_b")).otherwise(pl.col("norm2_a")).alias("norm2_a"),
        pl.when(swap).then(pl.col("norm2_a")).otherwise(pl.col("norm2_b")).alias("norm2_b"),
    )
    df = lf.collect()
    n_in = df.height
    self_pairs = df.filter((pl.col("domain_a") == pl.col("domain_b")) & (pl.col("id_a") == pl.col("id_b")))
    if self_pairs.height:
        log.warning("dropped %d rows pairing a sample with itself (first: %s row %d)", self_pairs.height,
                    self_pairs["_file"][0], self_pairs["_row"][0])
        df = df.filter(~((pl.col("domain_a") == pl.col("domain_b")) & (pl.col("id_a") == pl.col("id_b"))))
    finite = pl.col("llmdcos").is_finite()
    bad = df.filter(~finite | pl.col("llmdcos").is_null())
    if bad.height:
        log.warning("dropped %d rows with a non-finite llmdcos (a zero-norm sample; first: %s row %d)",
                    bad.height, bad["_file"][0], bad["_row"][0])
        df = df.filter(finite & pl.col("llmdcos").is_not_null())
    recomputed = pl.col("dot") / (pl.col("norm2_a") * pl.col("norm2_b")).sqrt()
    off = df.filter((recomputed - pl.col("llmdcos")).abs() > CONSISTENCY_TOL)
    if off.height:
        r = off.row(0, named=True)
        raise GramError(f"{r['_file']} row {r['_row']}: llmdcos {r['llmdcos']:.6g} differs from "
                        f"dot/sqrt(norm2_a*norm2_b) = {r['dot'] / (r['norm2_a'] * r['norm2_b']) ** 0.5:.6g} "
                        f"({off.height} rows disagree); the table is corrupted: rerun the job that wrote it")
    out_of_range = df.filter((pl.col("llmdcos") < -CONSISTENCY_TOL) | (pl.col("llmdcos") > 1 + CONSISTENCY_TOL))
    if out_of_range.height:
        r = out_of_range.row(0, named=True)
        raise GramError(f"{r['_file']} row {r['_row']}: llmdcos {r['llmdcos']} is outside [0, 1]; activations "
                        "are absolute values, so the table is corrupted")
    key = ["layer", "domain_a", "id_a", "domain_b", "id_b"]
    before = df.height
    df = df.sort("_src", "_row").unique(subset=key, keep="first", maintain_order=True)
    if before - df.height:
        log.info("%d duplicate pair rows (present in more than one gram table) counted once", before - df.height)
    log.info("%d pair rows from %d table(s) (%d read)", df.height, len(paths), n_in)
    return df.drop("_file", "_row", "_src")


def pair_layer_stats(pairs: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Per (domain pair, layer): n, mean, std and box-plot statistics (see module doc)."""
    lf = pairs.lazy() if isinstance(pairs, pl.DataFrame) else pairs
    keys = ["domain_a", "domain_b", "layer"]
    v = pl.col("llmdcos")
    box = lf.group_by(keys).agg(
        pl.first("model").alias("model"),
        pl.len().alias("n"), v.mean().alias("mean"), v.std(ddof=1).alias("std"),
        v.min().alias("min"), v.quantile(0.25, interpolation="linear").alias("q1"),
        v.median().alias("median"), v.quantile(0.75, interpolation="linear").alias("q3"),
        v.max().alias("max"),
    )
    iqr = pl.col("q3") - pl.col("q1")
    fences = box.select(*keys, (pl.col("q1") - WHIS * iqr).alias("_lo"), (pl.col("q3") + WHIS * iqr).alias("_hi"))
    inside = (v >= pl.col("_lo")) & (v <= pl.col("_hi"))
    whisk = lf.join(fences, on=keys).group_by(keys).agg(
        v.filter(inside).min().alias("whisker_lo"), v.filter(inside).max().alias("whisker_hi"),
        v.filter(~inside).sort().alias("outliers"),
    )
    out = box.join(whisk, on=keys).with_columns(
        pl.when(pl.col("domain_a") == pl.col("domain_b")).then(pl.lit("within")).otherwise(pl.lit("cross"))
        .alias("kind"))
    cols = ["model", "domain_a", "domain_b", "kind", "layer", "n", "mean", "std", "min", "q1", "median", "q3",
            "max", "whisker_lo", "whisker_hi", "outliers"]
    return out.select(cols).sort("domain_a", "domain_b", "layer").collect()


def figure_pairs(domains: Iterable[str], pairs: Sequence[Sequence[str]] | None = None,
                 minimum: int = 4) -> list[tuple[str, str]]:
    """The domain pairs drawn as box-plot panels.

    Configured ``pairs`` are checked against ``domains``.  By default: the paper's
    Figure-3 panels that exist here, topped up (within-domain pairs first, then
    cross-domain pairs, in sorted order) to at least ``minimum`` panels.
    """
    domains = list(domains)
    if pairs:
        out = []
        for i, p in enumerate(pairs):
            if len(p) != 2:
                raise ValueError(f"similarity.pairs[{i}]: {p!r} must name two domains")
            for d in p:
                if d not in domains:
                    raise ValueError(f"similarity.pairs[{i}]: unknown domain {d!r}; "
                                     f"domains with results: {', '.join(sorted(domains))}")
            out.append((p[0], p[1]))
        return out
    out = [p for p in PAPER_FIG3_PAIRS if p[0] in domains and p[1] in domains]
    ordered = sorted(domains)
    extra = [(d, d) for d in ordered] + [(a, b) for a, b in combinations_with_replacement(ordered, 2) if a != b]
    for p in extra:
        if len(out) >= minimum:
            break
        if p not in out and (p[1], p[0]) not in out:
            out.append(p)
    return out


def select_pairs(stats: pl.DataFrame, pairs: Sequence[tuple[str, str]]) -> pl.DataFrame:
    """Rows of ``stats`` for the given (ordered) pairs, labelled ``a–b`` in the given order."""
    frames = []
    for order, (a, b) in enumerate(pairs):
        lo, hi = sorted((a, b))
        sub = stats.filter((pl.col("domain_a") == lo) & (pl.col("domain_b") == hi))
        if sub.height == 0:
            raise ValueError(f"no LLMDcos pairs for {pair_label(a, b)}: the gram tables hold no pair of these "
                             "domains (is the domain in the similarity panel?)")
        frames.append(sub.with_columns(pl.lit(pair_label(a, b)).alias("pair"), pl.lit(order).alias("pair_order")))
    return pl.concat(frames)


def window_means(stats: pl.DataFrame, window: tuple[int, int]) -> pl.DataFrame:
    """Per domain pair, the mean over the window's layers of the per-layer mean LLMDcos."""
    lo, hi = window
    return (stats.filter(pl.col("layer").is_between(lo, hi))
            .group_by("domain_a", "domain_b", "kind")
            .agg(pl.col("mean").mean().alias("window_mean"), pl.len().alias("n_layers"))
            .sort("domain_a", "domain_b"))


def n_layers_of(pairs: pl.DataFrame) -> int:
    """Decoder blocks covered by a gram table (every pair has a row per layer: max layer + 1)."""
    if pairs.height == 0:
        raise GramError("the gram tables hold no usable pairs")
    return int(pairs["layer"].max()) + 1


def windows(n_layers: int, deep=None, shallow=None) -> dict[str, tuple[int, int]]:
    """The configured deep/shallow windows (``similarity.deep_window``/``shallow_window``),
    or the paper's rules, checked against the depth."""
    from ..config import paper_deep_window, paper_shallow_window, resolve_window

    return {"deep": resolve_window(deep, n_layers, paper_deep_window),
            "shallow": resolve_window(shallow, n_layers, paper_shallow_window)}
