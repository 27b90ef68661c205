"""The paper's findings as measured quantities with intervals and verdicts (findings.json)."""

import json

import polars as pl

from actpat.analysis.findings import add_intervals, measure
from actpat.analysis.similarity import load_pairs
from actpat.atomic import write_json
from actpat.workflow import rule_logging

with rule_logging(snakemake) as log:
    inp, p = snakemake.input, snakemake.params
    rel = json.loads(open(inp.relevance_json).read())
    density, relevance = pl.read_parquet(inp.density), pl.read_parquet(inp.relevance)
    result = measure(density, pl.read_parquet(inp.similarity), relevance, threshold=p.threshold,
                      shallow=tuple(rel["windows"]["shallow"]), deep=tuple(rel["windows"]["deep"]),
                      text_domains=p.text_domains, model=snakemake.wildcards.model)
    probes = {}
    for path in inp.probes:
        t = pl.read_parquet(path)
        if t.height:
            probes[t["domain"][0]] = t
    u = p.uncertainty
    result = add_intervals(result, density=density, probes=probes, pairs=load_pairs([inp.panel, *inp.grams]),
                           relevance=relevance, text_domains=p.text_domains,
                           comparisons=pl.read_parquet(inp.comparisons[0]) if inp.comparisons else None,
                           n_boot=u["resamples"], level=u["level"], seed=u["seed"])
    write_json(result, snakemake.output[0])
    for f in result["findings"]:
        iv = f.get("interval") or {}
        log.info("%s: %s (%s; %s = %s [%s, %s])", f["id"], f["verdict"], f["detail"], iv.get("quantity"),
                 iv.get("value"), iv.get("lo"), iv.get("hi"))
