"""Build one sentence-pair set for Validation 3: results/sts/<pairset>.parquet."""

from actpat.data.pairs import build_pairset
from actpat.data.tables import write_parquet
from actpat.workflow import rule_logging

with rule_logging(snakemake) as log:
    p = snakemake.params
    b = build_pairset(snakemake.wildcards.pairset, dict(p.spec), {"seed": p.seed or 0}, p.assets_root)
    write_parquet(b.df, snakemake.output[0], b.metadata)
    log.info("wrote %d pairs to %s (%s)", b.df.height, snakemake.output[0], b.metadata["actpat.selection"])
