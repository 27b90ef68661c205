"""Per-layer LLMDcos statistics for every domain pair (Finding 2)."""

from actpat.analysis.similarity import load_pairs, pair_layer_stats
from actpat.atomic import write_parquet
from actpat.workflow import rule_logging

with rule_logging(snakemake) as log:
    pairs = load_pairs([snakemake.input.panel, *snakemake.input.grams])
    stats = pair_layer_stats(pairs)
    write_parquet(stats, snakemake.output[0])
    log.info("%d (pair, layer) rows for %d domain pairs -> %s", stats.height,
             stats.select("domain_a", "domain_b").n_unique(), snakemake.output[0])
