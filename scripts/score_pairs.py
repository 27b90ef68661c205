"""Score the texts of a sentence-pair set: per-pair, per-layer LLMDcos and hidden-state cosine."""

import torch

from actpat.engine.jobs import score_pairs
from actpat.engine.scorer import ScoreOptions
from actpat.gpus import claim_gpu
from actpat.workflow import rule_logging

with rule_logging(snakemake) as log:
    torch.set_num_threads(snakemake.threads)
    claim_gpu(int(snakemake.resources.get("gpu", 0)))  # one free GPU per job on a multi-GPU host
    p = snakemake.params
    score_pairs(
        model_name=snakemake.wildcards.model,
        source=p.source,
        load_kw=p.load,
        pairs_table=snakemake.input.pairs,
        opts=ScoreOptions(**p.options),
        block_size=p.block_size,
        out_llmdcos=snakemake.output.llmdcos,
        out_hidden=snakemake.output.hidden,
    )
