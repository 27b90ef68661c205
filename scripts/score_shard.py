"""Score one shard of a domain table: sums of activations, per-sample stats, pair Grams."""

import torch

from actpat.engine.jobs import score_domain_shard
from actpat.engine.scorer import ScoreOptions
from actpat.gpus import claim_gpu
from actpat.workflow import rule_logging

with rule_logging(snakemake) as log:
    torch.set_num_threads(snakemake.threads)
    claim_gpu(int(snakemake.resources.get("gpu", 0)))  # one free GPU per job on a multi-GPU host
    p = snakemake.params
    score_domain_shard(
        model_name=snakemake.wildcards.model,
        source=p.source,
        load_kw=p.load,
        table=snakemake.input.table,
        rows=range(*p.rows),
        opts=ScoreOptions(**{**p.options, "thresholds": tuple(p.options["thresholds"])}),
        batch_size=p.batch_size,
        out_store=snakemake.output.store,
        out_stats=snakemake.output.stats,
        out_gram=snakemake.output.gram,
        out_probe=snakemake.output.probe,
        shard=int(snakemake.wildcards.shard),
    )
