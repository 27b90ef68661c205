"""Write results/provenance.json: what this run used (actpat.provenance)."""

from actpat.atomic import write_json
from actpat.provenance import provenance
from actpat.workflow import rule_logging

with rule_logging(snakemake) as log:
    rec = provenance(dict(snakemake.params.config), assets=list(snakemake.input.assets),
                     files=list(snakemake.input.files), models=dict(snakemake.params.models),
                     workflow_dir=snakemake.params.workflow_dir)
    write_json(rec, snakemake.output[0])
    log.info("provenance of config %s (workflow commit %s) -> %s", rec["config_sha256"][:12],
             (rec["workflow"] or {}).get("commit"), snakemake.output[0])
