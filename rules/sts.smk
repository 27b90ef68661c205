# Validation 3: does the similarity of two texts' activations track human similarity?
# Inputs: the pair table (rule pairset) and the engine's per-pair scores (rule score_pairs).


rule sts_eval:
    input:
        pairs="results/sts/{pairset}.parquet",
        llmdcos="results/sts/{model}/{pairset}.llmdcos.parquet",
        hidden="results/sts/{model}/{pairset}.hidden.parquet",
        minilm="resources/assets/minilm",
    output:
        table="results/sts/{model}/{pairset}.spearman.parquet",
        md="results/sts/{model}/{pairset}.spearman.md",
        svg=figure(
            "results/sts/{model}/{pairset}.spearman.svg",
            "rho by layer",
            "Validation 3: sentence similarity",
            caption="sts",
            **{"pair set": "{pairset}"},
        ),
        png="results/sts/{model}/{pairset}.spearman.png",
        section="results/report/sections/sts-{model}-{pairset}.json",
    log:
        "logs/sts_eval/{model}/{pairset}.log",
    wildcard_constraints:
        pairset=alternatives(config["sts"]["pairsets"]),
    localrule: True
    conda:
        "../envs/actpat.yaml"
    threads: 1
    resources:
        mem_mb=3072,
        runtime=20,
    params:
        code=script_code("sts_eval.py"),
        window=config["sts"]["window"],
        bootstrap=config["sts"]["bootstrap"],
        seed=config["data"]["seed"],
    script:
        "../scripts/sts_eval.py"


add_targets(
    lambda: expand(
        "results/sts/{model}/{pairset}.spearman.{ext}",
        model=MODELS,
        pairset=sorted(config["sts"]["pairsets"]),
        ext=["parquet", "md", "svg", "png"],
    )
    + expand(
        "results/report/sections/sts-{model}-{pairset}.json",
        model=MODELS,
        pairset=sorted(config["sts"]["pairsets"]),
    )
)
add_report_section(
    lambda: expand(
        "results/report/sections/sts-{model}-{pairset}.json",
        model=MODELS,
        pairset=sorted(config["sts"]["pairsets"]),
    )
)
