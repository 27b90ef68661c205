"""Merge a domain's shard stores (sums) into its mean store, and concatenate its tables."""

from actpat.engine.jobs import merge_domain
from actpat.workflow import rule_logging

with rule_logging(snakemake) as log:
    merge_domain(
        list(snakemake.input.stores),
        list(snakemake.input.stats),
        list(snakemake.input.grams),
        out_store=snakemake.output.store,
        out_stats=snakemake.output.stats,
        out_gram=snakemake.output.gram,
        extra_attrs={"seed": snakemake.params.seed},
        probes=list(snakemake.input.probes),
        out_probe=snakemake.output.probe,
        verify=not snakemake.params.keep_shards,
        storage=snakemake.params.store_dtype,
    )
