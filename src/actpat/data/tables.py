"""Domain sample tables (docs/contracts.md): build, validate, write.

A table is a seeded sample of ``data.pool`` rows of one domain's source, in a seeded order
(scoring reads rows from the top, zero-shot evaluation from the bottom).

Sampling uses SHA-256 hashes of (purpose, seed, record key) instead of a random generator,
so a record's place depends only on its own key and the seed: the same source and seed give
the same table bit for bit on any machine and library version, and ids are stable.

Text domains (``format: text``) are cut into windows of ``data.window_words`` words (the
paper's random 256-token windows of C4/WikiText, counted in words so that tables do not
depend on a tokenizer):

* a document is held out for perplexity when the hash of its id falls below
  ``data.heldout_fraction`` (independent of the seed), and no window is ever taken from it;
* only documents longer than ``window_words`` words give windows; each such document is cut
  into ``n // window_words`` non-overlapping windows at a seeded offset;
* documents are visited in seeded order and give one window each per round (a second window
  of a document only once every eligible document has given one), until ``pool`` windows;
* a window keeps the document's own whitespace between its first and last word;
* exact duplicate documents are kept once (before the held-out split), and a window whose
  text occurs verbatim in the held-out text (a near-copy, e.g. a resent mail) is skipped.

GSM8K-format domains keep 8 seeded exemplar records apart from the sample (never sampled);
each row's ``shots`` exemplars (domain key ``shots``, default 0) are a seeded choice among them.

Bad input raises ``DataError`` naming the row (its provenance and id): missing columns,
empty or whitespace-only text, duplicate ids, an answer that is not among the choices, text
that is not valid Unicode.  Nothing is dropped silently: every rule that skips input is
counted and logged, and the counts are stored in the Parquet metadata (``actpat.counts``).
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from actpat import __version__
from actpat.provenance import package_versions
from actpat.data import templates
from actpat.data.sources import DataError, Record, read_source
from actpat.data.templates import MC_FORMATS, TemplateError
from actpat.contracts import DOMAIN_TABLE_SCHEMA as SCHEMA

log = logging.getLogger(__name__)

GSM8K_EXEMPLARS = 8  # the paper draws its shots from 8 CoT exemplars
DATA_DEFAULTS = {"seed": 1, "pool": 160, "window_words": 160, "heldout_fraction": 0.2}


def stable_hash(*parts) -> int:
    """A 64-bit integer from SHA-256 of the parts; the only source of randomness here."""
    return int.from_bytes(hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()[:8], "big")


def _unit(*parts) -> float:
    return stable_hash(*parts) / 2**64


def is_heldout(doc_id: str, fraction: float) -> bool:
    """Whether a text document is held out for perplexity (depends on its id only)."""
    return _unit("heldout", doc_id) < fraction


@dataclass
class DomainBuild:
    df: pl.DataFrame
    heldout_text: str | None
    counts: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)


def _data_cfg(data_cfg: dict | None) -> dict:
    return {**DATA_DEFAULTS, **(data_cfg or {})}


def _row_error(name: str, rec: Record, msg: str) -> DataError:
    return DataError(f"domain {name!r}: {rec.source} (id {name}/{rec.key}): {msg}")


def _check_strings(name: str, rec: Record, row: dict) -> None:
    """The scored strings must be non-empty and encodable as UTF-8 (no lone surrogates)."""
    if not row["text"] or not row["text"].strip():
        raise _row_error(name, rec, "empty or whitespace-only text after applying the template")
    for col in ("text", "cloze"):
        v = row[col]
        if v is not None:
            try:
                v.encode("utf-8")
            except UnicodeEncodeError as e:
                raise _row_error(name, rec, f"column {col!r} is not valid Unicode text ({e.reason} at "
                                            f"position {e.start}); the source is mis-encoded") from None
    for col in ("choices", "labels"):
        for i, c in enumerate(row[col] or []):
            if not c.strip():
                raise _row_error(name, rec, f"{col}[{i}] is empty")
            try:
                c.encode("utf-8")
            except UnicodeEncodeError as e:
                raise _row_error(name, rec, f"{col}[{i}] is not valid Unicode text ({e.reason})") from None
    if "canary GUID" in row["text"]:
        raise _row_error(name, rec, "the BIG-bench canary string reached the scored text")


def _render(name: str, fmt: str, rec: Record, **kw) -> dict:
    try:
        row = templates.render(fmt, rec.fields, **kw)
    except TemplateError as e:
        raise _row_error(name, rec, str(e)) from None
    _check_strings(name, rec, row)
    return row


def _finish(name: str, fmt: str, rows: list[dict]) -> pl.DataFrame:
    df = pl.DataFrame(
        [{**r, "domain": name, "task": fmt} for r in rows] if rows else [],
        schema=SCHEMA,
        orient="row",
    ).select(list(SCHEMA))
    return df


# ------------------------------------------------------------------ record domains


def _sample_records(name: str, spec: dict, cfg: dict, recs: list[Record], counts) -> list[dict]:
    fmt, seed, pool = spec["format"], cfg["seed"], cfg["pool"]
    exemplars: list[Record] = []
    if fmt == "gsm8k":
        ranked = sorted(recs, key=lambda r: stable_hash("exemplar", seed, r.key))
        exemplars, recs = ranked[:GSM8K_EXEMPLARS], ranked[GSM8K_EXEMPLARS:]
        counts["records kept apart as few-shot exemplars"] = len(exemplars)
        for e in exemplars:
            try:
                templates.gsm8k_exemplar(e.fields)
            except TemplateError as err:
                raise _row_error(name, e, str(err)) from None
    shots = int(spec.get("shots") or 0)
    if shots > len(exemplars) and fmt == "gsm8k":
        raise DataError(f"domain {name!r}: shots = {shots} but only {len(exemplars)} exemplars are available")
    # Render every record (not only the sampled ones) so that bad input fails whatever the seed.
    rendered = {}
    for r in recs:
        kw = {}
        if fmt == "gsm8k" and shots:
            pick = sorted(exemplars, key=lambda e: stable_hash("shot", seed, r.key, e.key))[:shots]
            kw["exemplars"] = [e.fields for e in pick]
        rendered[r.key] = _render(name, fmt, r, **kw)
    order = sorted(recs, key=lambda r: stable_hash("sample", seed, r.key))
    chosen = order if pool is None else order[:pool]  # None: every record (a calibration split)
    counts["source records"] = len(recs) + len(exemplars)
    counts["rows"] = len(chosen)
    if pool is not None and len(chosen) < pool:
        log.warning("domain %s: the source has only %d usable records, fewer than data.pool = %d; "
                    "the table has %d rows", name, len(recs), pool, len(chosen))
    return [{**rendered[r.key], "id": f"{name}/{r.key}", "source": r.source} for r in chosen]


# -------------------------------------------------------------------- text domains

_WORD = re.compile(r"\S+")


def _windows(name: str, cfg: dict, docs: list[Record], heldout: str, counts) -> list[dict]:
    seed, pool, W = cfg["seed"], cfg["pool"], cfg["window_words"]
    per_doc: list[tuple[Record, list[tuple[int, int, int]]]] = []
    for d in docs:
        spans = [(m.start(), m.end()) for m in _WORD.finditer(d.fields["text"])]
        n = len(spans)
        if n <= W:
            counts["documents with at most window_words words (no window)"] += 1
            continue
        k = n // W
        offset = stable_hash("offset", seed, d.key) % (n - k * W + 1)
        starts = [offset + i * W for i in range(k)]
        starts.sort(key=lambda s: stable_hash("window", seed, d.key, s))
        per_doc.append((d, [(s, spans[s][0], spans[s + W - 1][1]) for s in starts]))
    per_doc.sort(key=lambda t: stable_hash("sample", seed, t[0].key))
    counts["documents giving windows"] = len(per_doc)
    rows = []
    rnd = 0
    while len(rows) < pool and any(len(w) > rnd for _, w in per_doc):
        for d, wins in per_doc:
            if len(wins) > rnd and len(rows) < pool:
                s, a, b = wins[rnd]
                if d.fields["text"][a:b] in heldout:  # a near-copy of a held-out document (resent mail)
                    counts["windows found verbatim in the held-out text (skipped)"] += 1
                    continue
                rec = Record(f"{d.key}@w{s}", {"text": d.fields["text"][a:b]}, f"{d.source}@words{s}-{s + W}")
                row = _render(name, "text", rec)
                rows.append({**row, "id": f"{name}/{rec.key}", "source": rec.source})
        rnd += 1
    counts["rows"] = len(rows)
    if len(rows) < pool:
        log.warning("domain %s: only %d windows of %d words are available, fewer than data.pool = %d",
                    name, len(rows), W, pool)
    return rows


def _unique_documents(docs: list[Record], counts) -> list[Record]:
    """Exact copies of a document (after trimming) are kept once, the first in source order,
    so that one text cannot be both held out and sampled."""
    seen, out = set(), []
    for d in docs:
        t = d.fields["text"].strip()
        if t in seen:
            counts["duplicate documents (exact copies) dropped"] += 1
            continue
        seen.add(t)
        out.append(d)
    return out


def _split_heldout(name: str, docs: list[Record], fraction: float, counts) -> tuple[list[Record], list[Record]]:
    docs = _unique_documents(docs, counts)
    keep, held = [], []
    for d in docs:
        (held if is_heldout(d.key, fraction) else keep).append(d)
    counts["documents"] = len(docs)
    counts["documents held out"] = len(held)
    if not held:
        log.warning("domain %s: no document was held out (%d documents, heldout_fraction %.3g); the held-out "
                    "text is empty", name, len(docs), fraction)
    return keep, held


def heldout_join(held: list[Record]) -> str:
    return "\n\n".join(d.fields["text"].strip() for d in held if d.fields["text"].strip())


# ---------------------------------------------------------------------------- API


def build_domain(name: str, spec: dict, data_cfg: dict | None = None,
                 assets_root: str | Path = "resources/assets") -> DomainBuild:
    """Build one domain's table (and held-out text for text domains), with counts and metadata."""
    cfg = _data_cfg(data_cfg)
    fmt = spec["format"]
    data = read_source(spec, assets_root)
    counts = collections.Counter(data.counts)
    heldout = None
    if fmt == "text":
        keep, held = _split_heldout(name, data.records, cfg["heldout_fraction"], counts)
        heldout = heldout_join(held)
        rows = _windows(name, cfg, keep, heldout, counts)
    else:
        rows = _sample_records(name, spec, cfg, data.records, counts)
    df = _finish(name, fmt, rows)
    validate_table(df, name=name)
    for k, v in sorted(counts.items()):
        log.info("domain %s: %s: %d", name, k, v)
    if df.height == 0:  # an empty table would only fail later, in a scoring job, with a misleading message
        raise DataError(f"domain {name!r}: no usable rows in its source ({spec.get('path') or spec['source']}); "
                        f"counts: {dict(sorted(counts.items()))}")
    used = sorted(DATA_DEFAULTS) if fmt == "text" else ["pool", "seed"]
    meta = {
        "actpat.domain": name,
        "actpat.spec": json.dumps(spec, sort_keys=True),
        "actpat.data": json.dumps({k: cfg[k] for k in used}, sort_keys=True),
        "actpat.seed": str(cfg["seed"]),
        "actpat.counts": json.dumps(dict(sorted(counts.items()))),
        "actpat.version": __version__,
        "actpat.packages": json.dumps(package_versions(("polars", "pyarrow", "datasets"))),
    }
    return DomainBuild(df, heldout, dict(counts), meta)


def build_domain_table(name: str, spec: dict, data_cfg: dict | None = None,
                       assets_root: str | Path = "resources/assets") -> tuple[pl.DataFrame, str | None]:
    """(table, held-out text or None) for one configured domain; see the module docstring."""
    b = build_domain(name, spec, data_cfg, assets_root)
    return b.df, b.heldout_text


def build_heldout_text(name: str, spec: dict, data_cfg: dict | None = None,
                       assets_root: str | Path = "resources/assets") -> str:
    """The held-out documents of a text domain joined with a blank line (for perplexity).

    Depends only on the source and ``data.heldout_fraction`` (not on the seed or pool)."""
    if spec["format"] != "text":
        raise DataError(f"domain {name!r} has format {spec['format']!r}; only text domains have held-out text")
    cfg = _data_cfg(data_cfg)
    data = read_source(spec, assets_root)
    counts = collections.Counter()
    _, held = _split_heldout(name, data.records, cfg["heldout_fraction"], counts)
    log.info("domain %s: %d of %d documents held out", name, counts["documents held out"], counts["documents"])
    return heldout_join(held)


def build_calibration_source(name: str, spec: dict, data_cfg: dict | None = None,
                             assets_root: str | Path = "resources/assets") -> DomainBuild:
    """Where a domain's calibration sequences are drawn from (prune.calibration, as in Wanda).

    Text domains: every document that is not held out for perplexity, whole (one row each;
    calibration cuts random windows of ``seq_len`` tokens from them).  Task domains with a
    ``calibration_split``: every record of that split (e.g. MMLU ``auxiliary_train``), so
    calibration never sees an evaluation question.  Task domains without one calibrate on the
    rows of their own table above the evaluation rows and need no calibration source.
    """
    cfg = _data_cfg(data_cfg)
    counts = collections.Counter()
    if spec["format"] == "text":
        data = read_source(spec, assets_root)
        keep, _ = _split_heldout(name, data.records, cfg["heldout_fraction"], counts)
        rows = []
        for d in keep:
            if d.fields["text"].strip():
                rec = Record(d.key, {"text": d.fields["text"]}, d.source)
                rows.append({**_render(name, "text", rec), "id": f"{name}/{d.key}", "source": d.source})
        df = _finish(name, "text", rows)
        counts["documents"] = df.height
    elif spec.get("calibration_split"):
        split = spec["calibration_split"]
        data = read_source({**{k: v for k, v in spec.items() if k != "calibration_split"}, "split": split},
                           assets_root)
        counts.update(data.counts)
        df = _finish(name, spec["format"], _sample_records(name, spec, {**cfg, "pool": None}, data.records, counts))
    else:
        raise DataError(f"domain {name!r} calibrates on its own table (no calibration_split); it has no "
                        "calibration source")
    validate_table(df, name=name)
    if df.height == 0:
        raise DataError(f"domain {name!r}: its calibration source is empty; counts: {dict(sorted(counts.items()))}")
    meta = {"actpat.domain": name, "actpat.spec": json.dumps(spec, sort_keys=True),
            "actpat.counts": json.dumps(dict(sorted(counts.items()))), "actpat.version": __version__}
    return DomainBuild(df, None, dict(counts), meta)


def validate_table(df: pl.DataFrame, *, name: str | None = None) -> None:
    """Check a domain table against docs/contracts.md; raise DataError naming the row."""
    where = f"table {name!r}" if name else "table"
    missing = [c for c in SCHEMA if c not in df.columns]
    if missing:
        raise DataError(f"{where}: missing column {missing[0]!r}; a domain table has columns {', '.join(SCHEMA)}")
    for c, t in SCHEMA.items():
        if df.schema[c] != t:
            raise DataError(f"{where}: column {c!r} has type {df.schema[c]}, expected {t}")
    for c in ("id", "domain", "task", "text", "source"):
        bad = df.filter(pl.col(c).is_null())
        if bad.height:
            raise DataError(f"{where}: row {bad['id'][0]!r}: column {c!r} is null")
    dup = df.group_by("id").len().filter(pl.col("len") > 1)
    if dup.height:
        raise DataError(f"{where}: duplicate id {sorted(dup['id'].to_list())[0]!r}; ids must be unique")
    for r in df.iter_rows(named=True):
        rid, task = r["id"], r["task"]
        if task not in templates.FORMATS:
            raise DataError(f"{where}: row {rid!r}: unknown task {task!r}; known: {', '.join(templates.FORMATS)}")
        if not r["text"].strip():
            raise DataError(f"{where}: row {rid!r}: empty or whitespace-only text")
        ch, lab, ans = r["choices"], r["labels"], r["answer"]
        if task in MC_FORMATS:
            if not ch or len(ch) < 2:
                raise DataError(f"{where}: row {rid!r}: a {task} row needs at least 2 choices, got {ch!r}")
            if lab is None or len(lab) != len(ch):
                raise DataError(f"{where}: row {rid!r}: labels {lab!r} do not match the {len(ch)} choices")
            if r["cloze"] is None:
                raise DataError(f"{where}: row {rid!r}: a {task} row needs a cloze context")
        if ch is not None or ans is not None:
            if ch is None or ans is None or not 0 <= ans < len(ch):
                raise DataError(f"{where}: row {rid!r}: answer {ans!r} is not among the choices {ch!r}")
        if task in ("text", "humaneval") and (ch is not None or lab is not None or r["cloze"] is not None):
            raise DataError(f"{where}: row {rid!r}: a {task} row has no choices, labels or cloze")


def write_parquet(df: pl.DataFrame, path: str | Path, metadata: dict | None = None) -> None:
    """Write a table atomically, zstd without statistics (bit-identical for identical tables)."""
    from actpat.atomic import write_parquet as atomic_parquet

    atomic_parquet(df, path, compression="zstd", statistics=False, metadata=dict(metadata or {}))


def read_table(path: str | Path) -> pl.DataFrame:
    """Read and validate a domain table."""
    df = pl.read_parquet(path)
    validate_table(df, name=str(path))
    return df


def table_metadata(path: str | Path) -> dict:
    """The ``actpat.*`` key-value metadata of a table written by this module."""
    return {k: v for k, v in pl.read_parquet_metadata(path).items() if k.startswith("actpat.")}
