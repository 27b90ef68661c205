"""The documents (text) or calibration split (hub tasks) a domain's calibration sequences are
drawn from: results/data/<domain>.calibration.parquet."""

from actpat.data.tables import build_calibration_source, write_parquet
from actpat.workflow import rule_logging

with rule_logging(snakemake) as log:
    p = snakemake.params
    b = build_calibration_source(snakemake.wildcards.domain, dict(p.spec), dict(p.data), p.assets_root)
    write_parquet(b.df, snakemake.output[0], b.metadata)
    log.info("wrote %d calibration rows to %s (%s)", b.df.height, snakemake.output[0], b.counts)
