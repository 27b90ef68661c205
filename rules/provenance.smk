# What the run used (results/provenance.json): configuration, workflow commit, package
# versions, asset manifests, local file hashes and model fingerprints (actpat.provenance).


rule provenance:
    input:
        unpack(lambda w: provenance_inputs()),
    output:
        "results/provenance.json",
    log:
        "logs/provenance/provenance.log",
    localrule: True
    conda:
        "../envs/actpat.yaml"
    resources:
        mem_mb=1024,
        runtime=10,
    params:
        code=script_code("provenance.py"),
        config=config,
        models=provenance_models(),
        workflow_dir=workflow.basedir,
    script:
        "../scripts/provenance.py"


add_targets(lambda: ["results/provenance.json"])
