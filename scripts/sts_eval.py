"""Validation 3: Spearman rho of summed LLMDcos (and baselines) against human pair scores."""

from actpat.report.sts import run
from actpat.workflow import rule_logging

with rule_logging(snakemake) as log:
    run(
        pairs_path=snakemake.input.pairs,
        llmdcos_path=snakemake.input.llmdcos,
        hidden_path=snakemake.input.hidden,
        minilm_dir=snakemake.input.minilm,
        window=snakemake.params.window,
        n_boot=snakemake.params.bootstrap,
        seed=snakemake.params.seed,
        model=snakemake.wildcards.model,
        pairset=snakemake.wildcards.pairset,
        outputs={k: snakemake.output[k] for k in ("table", "md", "svg", "png", "section")},
    )
