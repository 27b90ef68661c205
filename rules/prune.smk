# Validations 1-2: activation-guided layer-wise pruning, calibration relevance, evaluation.
# One job per run prunes and evaluates in one process (pruned weights need not be saved);
# see actpat.prune.pipeline for the outputs and docs/contracts.md for their columns.


wildcard_constraints:
    run=alternatives(PRUNE_RUNS),


rule prune_evaluate:
    input:
        unpack(prune_inputs),
    output:
        **(
            {"weights": directory("results/prune/{model}/{run}/model")}
            if config["prune"]["save_models"]
            else {}
        ),
        sparsity="results/prune/{model}/{run}/sparsity.parquet",
        masks="results/prune/{model}/{run}/masks.npz",
        eval="results/eval/{model}/{run}.json",
    log:
        "logs/prune_evaluate/{model}/{run}.log",
    conda:
        "../envs/actpat.yaml"
    threads: 1
    resources:
        mem_mb=lambda w: mem_mb_for(w.model, "prune"),
        runtime=prune_runtime,
        gpu=lambda w: gpu_for(w.model),
    params:
        code=script_code("prune_evaluate.py"),
        load=model_load_params,
        run=lambda w: prune_run(w).as_dict(),
        calibration=calibration_params,
        reserved_bottom=lambda w: (
            reserved_bottom(prune_run(w).calibration)
            if calibration_params(w)
            and not has_calibration_source(prune_run(w).calibration)
            else 0
        ),
        prune=prune_run_params,
        gamma=prune_gamma,
        evaluation=eval_params,
        float32_matmul=config["evaluation"]["float32_matmul"],
        zeroshot_domains=zeroshot_domains,
    script:
        "../scripts/prune_evaluate.py"


rule evaluate_dense:
    input:
        unpack(eval_inputs),
    output:
        eval="results/eval/{model}/dense.json",
    log:
        "logs/evaluate_dense/{model}.log",
    conda:
        "../envs/actpat.yaml"
    threads: 1
    resources:
        mem_mb=lambda w: mem_mb_for(w.model, "eval"),
        runtime=prune_runtime_dense,
        gpu=lambda w: gpu_for(w.model),
    params:
        code=script_code("prune_evaluate.py"),
        load=model_load_params,
        run=None,
        calibration=None,
        reserved_bottom=0,
        prune=None,
        gamma=None,
        evaluation=eval_params,
        float32_matmul=config["evaluation"]["float32_matmul"],
        zeroshot_domains=zeroshot_domains,
    script:
        "../scripts/prune_evaluate.py"


rule pruning_table:
    input:
        evals=lambda w: [f"results/eval/{m}/dense.json" for m in MODELS]
        + [f"results/eval/{m}/{r}.json" for m in MODELS for r in PRUNE_RUNS],
        sparsity=lambda w: [
            f"results/prune/{m}/{r}/sparsity.parquet"
            for m in MODELS
            for r in PRUNE_RUNS
        ],
    output:
        table="results/tables/pruning.parquet",
        summary="results/tables/pruning_summary.parquet",
        comparisons="results/tables/pruning_comparisons.parquet",
        markdown="results/tables/pruning.md",
        svg=figure(
            "results/report/pruning_ppl.svg",
            "perplexity vs sparsity",
            "Validations 1-2: pruning",
            per_model=False,
            caption="pruning_ppl",
        ),
        png=figure(
            "results/report/pruning_ppl.png",
            "perplexity vs sparsity",
            "Validations 1-2: pruning",
            per_model=False,
            caption="pruning_ppl",
        ),
        allocations=figure(
            "results/report/pruning_allocations.svg",
            "per-layer sparsity of each allocation",
            "Validations 1-2: pruning",
            per_model=False,
            caption="pruning_allocations",
        ),
        section="results/report/sections/pruning.json",
    log:
        "logs/pruning_table/pruning_table.log",
    localrule: True
    conda:
        "../envs/actpat.yaml"
    resources:
        mem_mb=1024,
        runtime=10,
    params:
        code=script_code("pruning_table.py"),
        zeroshot_domains=config["evaluation"]["zeroshot"]["domains"],
        calibration=config["prune"]["calibration"]["domain"],
        uncertainty=config["uncertainty"],
    script:
        "../scripts/pruning_table.py"


add_targets(prune_targets)
add_report_section(
    lambda: (
        ["results/report/sections/pruning.json"] if config["prune"]["enabled"] else []
    )
)
