"""Mean MiniLM sentence embedding of each domain's first texts (model-independent)."""

from pathlib import Path

from actpat.analysis.relevance import head_texts, mean_embeddings
from actpat.atomic import write_parquet
from actpat.data.sources import checked_asset_dir
from actpat.workflow import rule_logging

with rule_logging(snakemake) as log:
    texts = {d: head_texts(t, snakemake.params.texts) for d, t in zip(snakemake.params.domains, snakemake.input.tables)}
    df = mean_embeddings(texts, checked_asset_dir(Path(snakemake.input.model)))
    write_parquet(df, snakemake.output[0])
    log.info("embedded %d texts of %d domains -> %s", int(df["n_texts"].sum()), df.height, snakemake.output[0])
