"""Held-out documents of a text domain, for perplexity: results/data/<domain>.heldout.txt."""

from actpat.atomic import write_text
from actpat.data.tables import build_heldout_text
from actpat.workflow import rule_logging

with rule_logging(snakemake) as log:
    p = snakemake.params
    text = build_heldout_text(snakemake.wildcards.domain, dict(p.spec), dict(p.data), p.assets_root)
    write_text(text, snakemake.output[0])
    log.info("wrote %d characters (%d words) to %s", len(text), len(text.split()), snakemake.output[0])
