"""Figures (SVG + PNG) and the report section of the analysis stage for one model."""

from actpat.report.analysis import FIGURES, write_analysis_report
from actpat.workflow import rule_logging

with rule_logging(snakemake) as log:
    out = snakemake.output
    figures = {name: {"svg": out[f"{name}_svg"], "png": out[f"{name}_png"]} for name in FIGURES}
    write_analysis_report(model=snakemake.wildcards.model, density=snakemake.input.density,
                          similarity=snakemake.input.similarity, relevance=snakemake.input.relevance,
                          relevance_json=snakemake.input.relevance_json, findings=snakemake.input.findings,
                          figures=figures, section=out.section, text_domains=snakemake.params.text_domains,
                          pairs=snakemake.params.pairs)
    log.info("figures %s and section %s written", ", ".join(FIGURES), out.section)
