"""Prune one run (or none: the dense model) and evaluate it; see actpat.prune.pipeline."""

from actpat.prune.pipeline import run_job
from actpat.workflow import rule_logging

with rule_logging(snakemake) as log:
    p, inp, out = snakemake.params, snakemake.input, snakemake.output
    run_job(model_name=snakemake.wildcards.model, load=p.load, run=p.run, density=inp.get("density"), gamma=p.gamma,
            activations=inp.get("activations"), float32_matmul=p.float32_matmul,
            calibration_table=inp.get("calibration"), calibration=p.calibration, reserved_bottom=p.reserved_bottom,
            prune_params=p.prune,
            eval_params=dict(p.evaluation, ppl_text=inp.get("heldout"), progress=True,
                             zeroshot_tables={d: inp[f"zeroshot_{d}"] for d in p.zeroshot_domains}),
            out_eval=out.eval, out_sparsity=out.get("sparsity"), out_masks=out.get("masks"),
            out_model=out.get("weights"))
