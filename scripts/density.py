"""Per-layer activation density of one score store (Finding 1)."""

from actpat.analysis.density import layer_density
from actpat.atomic import write_parquet
from actpat.workflow import rule_logging

with rule_logging(snakemake) as log:
    df = layer_density(snakemake.input.store, snakemake.params.thresholds, snakemake.params.top_k_percent,
                       model=snakemake.wildcards.model, progress=True)
    write_parquet(df, snakemake.output[0])
    log.info("%d rows (%d layers) -> %s", df.height, df["layer"].n_unique(), snakemake.output[0])
