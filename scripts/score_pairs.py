"""Score the texts of a sentence-pair set: per-pair, per-layer LLMDcos and hidden-state cosine."""

from actpat.engine.jobs import score_pairs
from actpat.engine.scorer import ScoreOptions
from actpat.workflow import rule_logging

with rule_logging(snakemake) as log:
    p = snakemake.params
    score_pairs(model_name=snakemake.wildcards.model, load=p.load, pairs_table=snakemake.input.pairs,
                opts=ScoreOptions(**p.options), block_size=p.block_size, out_llmdcos=snakemake.output.llmdcos,
                out_hidden=snakemake.output.hidden)
