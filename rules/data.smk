# Domain sample tables (one Parquet per domain), held-out text of text domains for
# perplexity, and sentence-pair sets for Validation 3.  Contracts: docs/contracts.md;
# engine: actpat.data (templates, sources, tables, pairs).


rule domain_table:
    input:
        domain_inputs,
    output:
        "results/data/{domain}.parquet",
    log:
        "logs/domain_table/{domain}.log",
    localrule: True
    conda:
        "../envs/actpat.yaml"
    resources:
        mem_mb=2048,
        runtime=15,
    params:
        content=lambda w: content_state(domain_inputs(w)),
        code=script_code("domain_table.py"),
        spec=lambda w: domain_params(w.domain),
        data=lambda w: domain_data_params(w.domain),
        assets_root="resources/assets",
    script:
        "../scripts/domain_table.py"


rule heldout_text:
    input:
        domain_inputs,
    output:
        "results/data/{domain}.heldout.txt",
    log:
        "logs/heldout_text/{domain}.log",
    wildcard_constraints:
        domain=alternatives(TEXT_DOMAINS),
    localrule: True
    conda:
        "../envs/actpat.yaml"
    resources:
        mem_mb=2048,
        runtime=15,
    params:
        content=lambda w: content_state(domain_inputs(w)),
        code=script_code("heldout_text.py"),
        spec=lambda w: domain_params(w.domain),
        data={"heldout_fraction": config["data"]["heldout_fraction"]},
        assets_root="resources/assets",
    script:
        "../scripts/heldout_text.py"


rule calibration_source:
    input:
        domain_inputs,
    output:
        "results/data/{domain}.calibration.parquet",
    log:
        "logs/calibration_source/{domain}.log",
    wildcard_constraints:
        domain=alternatives(CALIBRATION_SOURCES),
    localrule: True
    conda:
        "../envs/actpat.yaml"
    resources:
        mem_mb=2048,
        runtime=15,
    params:
        content=lambda w: content_state(domain_inputs(w)),
        code=script_code("calibration_source.py"),
        spec=lambda w: domain_params(w.domain),
        # text: the documents outside the held-out split; a calibration split: all rows, seeded order
        data=lambda w: (
            {"heldout_fraction": config["data"]["heldout_fraction"]}
            if config["domains"][w.domain]["format"] == "text"
            else {"seed": config["data"]["seed"]}
        ),
        assets_root="resources/assets",
    script:
        "../scripts/calibration_source.py"


rule pairset:
    input:
        pairset_inputs,
    output:
        "results/sts/{pairset}.parquet",
    log:
        "logs/pairset/{pairset}.log",
    wildcard_constraints:
        pairset=alternatives(PAIRSETS),
    localrule: True
    conda:
        "../envs/actpat.yaml"
    resources:
        mem_mb=1024,
        runtime=10,
    params:
        content=lambda w: content_state(pairset_inputs(w)),
        code=script_code("pairset.py"),
        spec=lambda w: config["sts"]["pairsets"][w.pairset],
        seed=lambda w: pairset_seed(w.pairset),
        assets_root="resources/assets",
    script:
        "../scripts/pairset.py"


add_targets(
    lambda: [f"results/data/{d}.parquet" for d in DOMAINS]
    + [f"results/data/{d}.heldout.txt" for d in TEXT_DOMAINS]
    + [f"results/sts/{p}.parquet" for p in PAIRSETS]
)
