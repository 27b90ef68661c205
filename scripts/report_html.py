"""The standalone offline report page from every registered section file."""

from actpat.report.html import build_page
from actpat.workflow import rule_logging

with rule_logging(snakemake) as log:
    build_page(list(snakemake.input), snakemake.output[0], title=snakemake.params.title,
               subtitle=snakemake.params.subtitle)
    log.info("%d section file(s) -> %s", len(snakemake.input), snakemake.output[0])
