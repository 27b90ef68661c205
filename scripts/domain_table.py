"""Build one domain's sample table: results/data/<domain>.parquet."""

from actpat.data.tables import build_domain, write_parquet
from actpat.workflow import rule_logging

with rule_logging(snakemake) as log:
    p = snakemake.params
    b = build_domain(snakemake.wildcards.domain, dict(p.spec), dict(p.data), p.assets_root)
    write_parquet(b.df, snakemake.output[0], b.metadata)
    log.info("wrote %d rows to %s (seed %s)", b.df.height, snakemake.output[0], b.metadata["actpat.seed"])
