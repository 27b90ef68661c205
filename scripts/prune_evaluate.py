"""Prune one run (or none: the dense model) and evaluate it; see actpat.prune.pipeline."""

import torch

from actpat.modelio import load_model, num_layers
from actpat.prune.allocation import NEEDS_COUNTS
from actpat.prune.pipeline import activation_counts, prune_and_evaluate
from actpat.prune.runs import PruneRun
from actpat.workflow import rule_logging

with rule_logging(snakemake) as log:
    torch.set_num_threads(snakemake.threads)
    p = snakemake.params
    load = dict(p.load)
    model, tok = load_model(load.pop("load_from"), **{k: load[k] for k in (
        "dtype", "device", "device_map", "trust_remote_code", "allow_pickle", "revision")})
    run = PruneRun(**p.run) if p.run else None
    counts = None
    if run is not None and run.allocation in NEEDS_COUNTS:
        counts = activation_counts(snakemake.input.density, p.gamma, num_layers(model))
    out = snakemake.output
    prune_and_evaluate(
        model, tok, model_name=snakemake.wildcards.model, run=run,
        calibration_table=snakemake.input.get("calibration"), calibration=p.calibration,
        reserved_bottom=p.reserved_bottom, counts=counts, prune_params=p.prune,
        eval_params=dict(p.evaluation, ppl_text=snakemake.input.get("heldout"),
                         zeroshot_tables={d: snakemake.input[f"zeroshot_{d}"] for d in p.zeroshot_domains},
                         progress=True),
        out_eval=out.eval, out_sparsity=out.get("sparsity"), out_masks=out.get("masks"),
        out_model=out.get("weights"),
    )
