# Findings 1-3: activation density, cross-domain similarity, relevance map, verdicts.
# Inputs are the engine's score stores and gram tables (docs/contracts.md).


rule density:
    input:
        store="results/scores/{model}/{domain}.zarr",
    output:
        "results/analysis/{model}/density/{domain}.parquet",
    log:
        "logs/density/{model}/{domain}.log",
    conda:
        "../envs/actpat.yaml"
    resources:
        mem_mb=lambda w: analysis_mem_mb(w.model),
        runtime=lambda w: int(10 + 10 * model_spec(w.model).get("size_b", 1.0)),
    params:
        code=script_code("density.py"),
        thresholds=lambda w: model_spec(w.model)["thresholds"],
        top_k_percent=config["similarity"]["top_k_percent"],
    script:
        "../scripts/density.py"


rule density_table:
    input:
        expand(
            "results/analysis/{{model}}/density/{domain}.parquet",
            domain=DOMAINS,
        ),
    output:
        "results/analysis/{model}/density.parquet",
    log:
        "logs/density_table/{model}.log",
    localrule: True
    conda:
        "../envs/actpat.yaml"
    resources:
        mem_mb=1024,
        runtime=10,
    params:
        code=script_code("density_table.py"),
    script:
        "../scripts/density_table.py"


rule embed_domains:
    input:
        tables=expand("results/data/{domain}.parquet", domain=DOMAINS),
        model=f"resources/assets/{config['relevance']['embedding_asset']}",
    output:
        "results/analysis/embeddings.parquet",
    log:
        "logs/embed_domains/embed_domains.log",
    conda:
        "../envs/actpat.yaml"
    threads: 4
    resources:
        mem_mb=2048,
        runtime=20,
    params:
        content=content_state(
            [f"resources/assets/{config['relevance']['embedding_asset']}"]
        ),
        code=script_code("embed_domains.py"),
        domains=DOMAINS,
        texts=config["relevance"]["texts"],
        asset=config["relevance"]["embedding_asset"],
    script:
        "../scripts/embed_domains.py"


rule similarity:
    input:
        panel="results/similarity/{model}/panel.gram.parquet",
        grams=expand("results/scores/{{model}}/{domain}.gram.parquet", domain=DOMAINS),
    output:
        "results/analysis/{model}/similarity.parquet",
    log:
        "logs/similarity/{model}.log",
    conda:
        "../envs/actpat.yaml"
    resources:
        mem_mb=2048,
        runtime=10,
    params:
        code=script_code("similarity.py"),
    script:
        "../scripts/similarity.py"


rule relevance:
    input:
        panel="results/similarity/{model}/panel.gram.parquet",
        grams=expand("results/scores/{{model}}/{domain}.gram.parquet", domain=DOMAINS),
        embeddings=lambda w: (
            ["results/analysis/embeddings.parquet"] if embeddings_enabled() else []
        ),
    output:
        table="results/analysis/{model}/relevance.parquet",
        json="results/analysis/{model}/relevance.json",
    log:
        "logs/relevance/{model}.log",
    conda:
        "../envs/actpat.yaml"
    resources:
        mem_mb=2048,
        runtime=10,
    params:
        code=script_code("relevance.py"),
        deep_window=config["similarity"]["deep_window"],
        shallow_window=config["similarity"]["shallow_window"],
        embedding_asset=config["relevance"]["embedding_asset"],
    script:
        "../scripts/relevance.py"


rule findings:
    input:
        density="results/analysis/{model}/density.parquet",
        similarity="results/analysis/{model}/similarity.parquet",
        relevance="results/analysis/{model}/relevance.parquet",
        relevance_json="results/analysis/{model}/relevance.json",
        probes=expand("results/scores/{{model}}/{domain}.probe.parquet", domain=DOMAINS),
        panel="results/similarity/{model}/panel.gram.parquet",
        grams=expand("results/scores/{{model}}/{domain}.gram.parquet", domain=DOMAINS),
        comparisons=lambda w: (
            ["results/tables/pruning_comparisons.parquet"]
            if config["prune"]["enabled"]
            else []
        ),
    output:
        "results/analysis/{model}/findings.json",
    log:
        "logs/findings/{model}.log",
    localrule: True
    conda:
        "../envs/actpat.yaml"
    resources:
        mem_mb=1024,
        runtime=10,
    params:
        code=script_code("findings.py"),
        threshold=lambda w: model_spec(w.model)["thresholds"][0],
        text_domains=TEXT_DOMAINS,
        uncertainty=config["uncertainty"],
    script:
        "../scripts/findings.py"


add_targets(lambda: expand("results/analysis/{model}/findings.json", model=MODELS))
