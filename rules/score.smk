# Gradient activation scoring (docs/contracts.md): domain shards -> exact merge into one
# mean store per domain; mixed-domain panel for cross-domain pairs; sentence pairs.


rule score_shard:
    input:
        model=model_input,
        table="results/data/{domain}.parquet",
    output:
        # shard sums are temporary unless scoring.keep_shards: deleted once the merge has succeeded
        store=shard_store(
            directory("results/scores/{model}/shards/{domain}/{shard}.zarr")
        ),
        stats="results/scores/{model}/shards/{domain}/{shard}.stats.parquet",
        gram="results/scores/{model}/shards/{domain}/{shard}.gram.parquet",
        probe="results/scores/{model}/shards/{domain}/{shard}.probe.parquet",
    log:
        "logs/score_shard/{model}/{domain}/{shard}.log",
    conda:
        "../envs/actpat.yaml"
    threads: 2
    resources:
        mem_mb=lambda w: mem_mb_for(w.model, "score"),
        runtime=lambda w: runtime_for(w.model, config["scoring"]["shard_size"]),
        gpu=lambda w: gpu_for(w.model),
    params:
        code=script_code("score_shard.py"),
        load=model_load_params,
        options=lambda w: {
            **score_options(w.model),
            "probe_per_layer": config["scoring"]["probe_per_layer"],
            "probe_seed": config["data"]["seed"],
            "truncation": domain_truncation(w.domain),
        },
        batch_size=config["scoring"]["batch_size"],
        rows=lambda w: shard_rows(w.domain, int(w.shard)),
    script:
        "../scripts/score_shard.py"


rule merge_scores:
    input:
        stores=lambda w: domain_shard_files(w, "zarr"),
        stats=lambda w: domain_shard_files(w, "stats.parquet"),
        grams=lambda w: domain_shard_files(w, "gram.parquet"),
        probes=lambda w: domain_shard_files(w, "probe.parquet"),
    output:
        store=directory("results/scores/{model}/{domain}.zarr"),
        stats="results/scores/{model}/{domain}.stats.parquet",
        gram="results/scores/{model}/{domain}.gram.parquet",
        probe="results/scores/{model}/{domain}.probe.parquet",
    log:
        "logs/merge_scores/{model}/{domain}.log",
    conda:
        "../envs/actpat.yaml"
    resources:
        mem_mb=lambda w: mem_mb_for(w.model, "merge"),
        runtime=15,
    params:
        code=script_code("merge_scores.py"),
        seed=config["data"]["seed"],
        keep_shards=config["scoring"]["keep_shards"],
        store_dtype=config["scoring"]["store_dtype"],
    script:
        "../scripts/merge_scores.py"


rule score_panel:
    input:
        model=model_input,
        tables=expand("results/data/{domain}.parquet", domain=DOMAINS),
    output:
        gram="results/similarity/{model}/panel/{shard}.gram.parquet",
        stats="results/similarity/{model}/panel/{shard}.stats.parquet",
    log:
        "logs/score_panel/{model}/{shard}.log",
    conda:
        "../envs/actpat.yaml"
    threads: 2
    resources:
        mem_mb=lambda w: mem_mb_for(w.model, "score"),
        runtime=lambda w: runtime_for(
            w.model, config["scoring"]["shard_size"] * len(DOMAINS)
        ),
        gpu=lambda w: gpu_for(w.model),
    params:
        code=script_code("score_panel.py"),
        load=model_load_params,
        options=lambda w: {**score_options(w.model), "truncation": "left"},
        domains=DOMAINS,
        rows=lambda w: panel_rows(int(w.shard)),
        per_batch=config["similarity"]["per_batch"],
    script:
        "../scripts/score_panel.py"


rule merge_panel:
    input:
        gram=lambda w: panel_shard_files(w, "gram.parquet"),
        stats=lambda w: panel_shard_files(w, "stats.parquet"),
    output:
        gram="results/similarity/{model}/panel.gram.parquet",
        stats="results/similarity/{model}/panel.stats.parquet",
    log:
        "logs/merge_panel/{model}.log",
    localrule: True
    conda:
        "../envs/actpat.yaml"
    resources:
        mem_mb=2048,
        runtime=10,
    params:
        code=script_code("concat_tables.py"),
    script:
        "../scripts/concat_tables.py"


rule score_pairs:
    input:
        model=model_input,
        pairs="results/sts/{pairset}.parquet",
    output:
        llmdcos="results/sts/{model}/{pairset}.llmdcos.parquet",
        hidden="results/sts/{model}/{pairset}.hidden.parquet",
    log:
        "logs/score_pairs/{model}/{pairset}.log",
    wildcard_constraints:
        pairset=alternatives(PAIRSETS),
    conda:
        "../envs/actpat.yaml"
    threads: 2
    resources:
        mem_mb=lambda w: mem_mb_for(w.model, "score") + 6144,
        runtime=lambda w: runtime_for(
            w.model, 2 * config["sts"]["pairsets"][w.pairset]["pairs"]
        ),
        gpu=lambda w: gpu_for(w.model),
    params:
        code=script_code("score_pairs.py"),
        load=model_load_params,
        # pair outputs hold LLMDcos and hidden-state cosines, no counts: thresholds left out
        options=lambda w: {
            **{k: v for k, v in score_options(w.model).items() if k != "thresholds"},
            "max_tokens": config["sts"]["max_tokens"],
        },
        block_size=config["sts"]["block_size"],
    script:
        "../scripts/score_pairs.py"


add_targets(
    lambda: expand(
        "results/scores/{model}/{domain}.{ext}",
        model=MODELS,
        domain=DOMAINS,
        ext=["zarr", "stats.parquet", "gram.parquet"],
    )
    + expand("results/similarity/{model}/panel.gram.parquet", model=MODELS)
)
