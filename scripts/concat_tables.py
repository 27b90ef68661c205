"""Concatenate Parquet shards (same schema) into one table per output, atomically."""

import polars as pl

from actpat.engine.tables import write_parquet
from actpat.workflow import rule_logging

with rule_logging(snakemake) as log:
    inputs = set(snakemake.input.keys())
    for key in snakemake.output.keys():
        # output `gram` <- input `grams`; `stats` is its own plural
        name = key + "s" if key + "s" in inputs else key
        parts = [pl.read_parquet(p) for p in snakemake.input[name]]
        df = pl.concat(parts)
        write_parquet(df, snakemake.output[key])
        log.info("%s: %d rows from %d shards", snakemake.output[key], df.height, len(parts))
