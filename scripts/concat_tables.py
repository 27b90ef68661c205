"""Concatenate Parquet shards (same schema) into one table per output, atomically.

Each output's shards are the input of the same name (output ``gram`` <- input ``gram``)."""

import polars as pl

from actpat.atomic import write_parquet
from actpat.workflow import rule_logging

with rule_logging(snakemake) as log:
    for key in snakemake.output.keys():
        parts = [pl.read_parquet(p) for p in snakemake.input[key]]
        df = pl.concat(parts)
        write_parquet(df, snakemake.output[key])
        log.info("%s: %d rows from %d shards", snakemake.output[key], df.height, len(parts))
