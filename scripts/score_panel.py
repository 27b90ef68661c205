"""Score samples of all domains in mixed batches: exact LLMDcos for cross-domain pairs."""

from actpat.engine.jobs import score_panel
from actpat.engine.scorer import ScoreOptions
from actpat.workflow import rule_logging

with rule_logging(snakemake) as log:
    p = snakemake.params
    score_panel(model_name=snakemake.wildcards.model, load=p.load, tables=dict(zip(p.domains, snakemake.input.tables)),
                rows=range(*p.rows), per_batch=p.per_batch, opts=ScoreOptions(**p.options),
                out_gram=snakemake.output.gram, out_stats=snakemake.output.stats)
