"""Relevance map over the deep and shallow windows, embedding similarity and Spearman (Finding 3)."""

import polars as pl

from actpat.analysis.relevance import relevance_correlations, relevance_table
from actpat.analysis.similarity import load_pairs, n_layers_of, windows
from actpat.atomic import write_json, write_parquet
from actpat.workflow import rule_logging

with rule_logging(snakemake) as log:
    pairs = load_pairs([snakemake.input.panel, *snakemake.input.grams])
    L = n_layers_of(pairs)
    wins = windows(L, snakemake.params.deep_window, snakemake.params.shallow_window)
    emb = pl.read_parquet(snakemake.input.embeddings[0]) if snakemake.input.embeddings else None
    table = relevance_table(pairs, wins, emb, model=snakemake.wildcards.model)
    corr = relevance_correlations(table)
    write_parquet(table, snakemake.output.table)
    write_json({"model": snakemake.wildcards.model, "n_layers": L,
                "windows": {k: list(v) for k, v in wins.items()}, "correlations": corr}, snakemake.output.json)
    log.info("windows %s; Spearman %s", wins, corr)
