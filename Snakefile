"""ActPat: activation patterns of language-model parameters (arXiv 2405.17799).

Results layout (all under results/, inputs fetched under resources/):
  data/<domain>.parquet                 domain sample tables
  scores/<model>/<domain>.zarr          mean activation per weight (+ .stats/.gram parquet)
  similarity/<model>/panel.*.parquet    cross-domain pairs from mixed batches
  analysis/<model>/                     density, similarity, relevance, findings
  prune/<model>/<run>/                  masks and per-layer sparsities; eval/<model>/ metrics
  sts/<model>/<pairset>.*               sentence-pair similarity vs human scores
  report/index.html                     standalone offline report
"""

from snakemake.utils import min_version

min_version("9.0")


# The default config applies only when no --configfile is given: a config file means what it
# says (Snakemake would otherwise merge it into the default, leaking its domains and models).
# --config key=value still overrides either.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"


wildcard_constraints:
    model=alternatives(MODELS),
    domain=alternatives(DOMAINS),
    shard=r"\d+",


include: "rules/assets.smk"
include: "rules/data.smk"
include: "rules/score.smk"
include: "rules/sts.smk"
include: "rules/analysis.smk"
include: "rules/report.smk"
include: "rules/prune.smk"
include: "rules/provenance.smk"


rule all:
    default_target: True
    input:
        all_outputs(),
