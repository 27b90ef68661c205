"""What the run finds, every number read from its outputs: results/summary.md (the README's results section)."""

from actpat.report.summary import write_summary
from actpat.workflow import rule_logging

with rule_logging(snakemake) as log:
    inp = snakemake.input
    summary, comparisons = inp.pruning if inp.pruning else (None, None)
    text = write_summary(inp.findings, summary, comparisons, inp.sts, snakemake.output[0])
    log.info("wrote %s (%d lines)", snakemake.output[0], text.count("\n"))
