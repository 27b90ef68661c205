"""Score one shard of a domain table: sums of activations, per-sample stats, pair Grams, probes."""

from actpat.engine.jobs import score_domain_shard
from actpat.engine.scorer import ScoreOptions
from actpat.workflow import rule_logging

with rule_logging(snakemake) as log:
    p, out = snakemake.params, snakemake.output
    score_domain_shard(model_name=snakemake.wildcards.model, load=p.load, table=snakemake.input.table,
                       rows=range(*p.rows), opts=ScoreOptions(**p.options), batch_size=p.batch_size,
                       out_store=out.store, out_stats=out.stats, out_gram=out.gram, out_probe=out.probe,
                       shard=int(snakemake.wildcards.shard))
