"""Tables 1-2 of the paper (per run and mean ± std over seeds) and the perplexity chart."""

from actpat.report.pruning import write_outputs
from actpat.workflow import rule_logging

with rule_logging(snakemake) as log:
    out = snakemake.output
    u = snakemake.params.uncertainty
    df = write_outputs(snakemake.input.evals, snakemake.params.zeroshot_domains, table=out.table,
                       summary=out.summary, markdown_path=out.markdown, svg=out.svg, png=out.png, section=out.section,
                       sparsity_paths=snakemake.input.sparsity, comparisons_path=out.comparisons,
                       alloc_svg=out.allocations, calibration=snakemake.params.calibration, n_boot=u["resamples"],
                       level=u["level"], seed=u["seed"])
    log.info("%d runs tabulated", df.height)
