"""The paper's findings as measured quantities with verdicts (findings.json)."""

import json

import polars as pl

from actpat.analysis.findings import evaluate
from actpat.atomic import write_json
from actpat.workflow import rule_logging

with rule_logging(snakemake) as log:
    rel = json.loads(open(snakemake.input.relevance_json).read())
    result = evaluate(pl.read_parquet(snakemake.input.density), pl.read_parquet(snakemake.input.similarity),
                      pl.read_parquet(snakemake.input.relevance), threshold=snakemake.params.threshold,
                      shallow=tuple(rel["windows"]["shallow"]), deep=tuple(rel["windows"]["deep"]),
                      text_domains=snakemake.params.text_domains, model=snakemake.wildcards.model)
    write_json(result, snakemake.output[0])
    for f in result["findings"]:
        log.info("%s: %s (%s)", f["id"], f["verdict"], f["detail"])
