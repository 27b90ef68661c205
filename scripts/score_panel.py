"""Score samples of all domains in mixed batches: exact LLMDcos for cross-domain pairs."""

import torch

from actpat.engine.jobs import score_panel
from actpat.engine.scorer import ScoreOptions
from actpat.gpus import claim_gpu
from actpat.workflow import rule_logging

with rule_logging(snakemake) as log:
    torch.set_num_threads(snakemake.threads)
    claim_gpu(int(snakemake.resources.get("gpu", 0)))  # one free GPU per job on a multi-GPU host
    p = snakemake.params
    tables = dict(zip(p.domains, snakemake.input.tables))
    score_panel(
        model_name=snakemake.wildcards.model,
        source=p.source,
        load_kw=p.load,
        tables=tables,
        rows=range(*p.rows),
        per_batch=p.per_batch,
        opts=ScoreOptions(**{**p.options, "thresholds": tuple(p.options["thresholds"])}),
        out_gram=snakemake.output.gram,
        out_stats=snakemake.output.stats,
    )
