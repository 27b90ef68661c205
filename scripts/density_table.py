"""Stack the per-domain density tables of one model."""

from actpat.analysis.density import combine
from actpat.atomic import write_parquet
from actpat.workflow import rule_logging

with rule_logging(snakemake) as log:
    df = combine(snakemake.input)
    write_parquet(df, snakemake.output[0])
    log.info("%d rows for %d domains -> %s", df.height, df["domain"].n_unique(), snakemake.output[0])
