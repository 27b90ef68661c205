"""One workflow job: load a model, prune it for one run (or not: ``dense``), evaluate, write.

Pruning and evaluation happen in the same process so pruned weights never need to be
written (``prune.save_models`` writes them anyway, as safetensors).  Outputs:

* ``results/prune/<model>/<run>/sparsity.parquet``: one row per decoder block
  (``layer, target, achieved, n_weights, n_pruned, n_expected`` plus the allocation's input:
  ``n_active`` for the paper rule, ``lod`` for OWL, ``rule`` = the rule's value before any
  clipping), with run columns (``model, run, method, allocation, calibration, seed, sparsity``);
* ``results/prune/<model>/<run>/masks.npz``: bit-packed masks (True = pruned), see
  ``actpat.prune.masks.load_masks``;
* ``results/eval/<model>/<run>.json``: perplexity, zero-shot accuracies per task and scorer,
  per-question predictions, sparsity check, timings.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Mapping

import numpy as np
import polars as pl
import torch

from .. import __version__
from ..atomic import atomic_dir, write_json, write_parquet
from ..evaluate.suite import evaluate_model
from .calibration import build_calibration, example_texts, text_windows, usable_rows
from .masks import save_masks
from .runs import PruneRun
from .sequential import PruneResult, needs_calibration, prune_model

log = logging.getLogger(__name__)


def calibration_ids(table_path: str | Path, tokenizer, *, sequences: int, seq_len: int, seed: int,
                    reserved_bottom: int = 0, allow_reuse: bool = False) -> tuple[torch.Tensor, dict]:
    """Calibration token ids from a calibration source (documents of a text domain: random
    windows) or a task table (examples from the top, evaluation rows excluded)."""
    table = pl.read_parquet(table_path)
    n = usable_rows(table.height, reserved_bottom, table_path)
    kw = {"n_sequences": sequences, "seq_len": seq_len, "seed": seed, "allow_reuse": allow_reuse}
    if table.height and table["task"][0] == "text":
        ids, record = text_windows(table["text"].to_list()[:n], tokenizer, **kw)
    else:
        ids, record = build_calibration(example_texts(table, n), tokenizer, **kw)
    record["table"] = str(table_path)
    record["rows_used_from_top"] = n
    return ids, record


def save_model_dir(model, tokenizer, out: str | Path) -> Path:
    """Pruned weights as a safetensors model directory, written under a temporary name first."""
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return Path(out)


def activation_counts(density: str | Path, gamma: float, n_layers: int | None = None) -> np.ndarray:
    """N_i of the paper's allocation: per block, weights whose mean activation exceeds gamma.

    Read from the domain's density table (``actpat.analysis.density``: exact counts over the
    merged store at each configured threshold), so a pruning job never reads the full store.
    """
    t = pl.read_parquet(density).filter(pl.col("measure") == "above_threshold")
    rows = t.filter((pl.col("param") - gamma).abs() <= 1e-12 * abs(gamma)).sort("layer")
    if rows.height == 0:
        have = sorted(t["param"].unique().to_list())
        raise ValueError(f"{density} has no counts at gamma = {gamma} (it has {have}); gamma must be one of the "
                         "model's thresholds")
    counts = rows["count"].to_numpy().astype(np.int64)
    if not np.array_equal(rows["layer"].to_numpy(), np.arange(len(counts))):
        raise ValueError(f"{density}: layers {rows['layer'].to_list()} are not 0..{len(counts) - 1}")
    if n_layers is not None and len(counts) != n_layers:
        raise ValueError(f"{density} has {len(counts)} layers but the model has {n_layers}; it was scored with "
                         "another model")
    if counts.sum() == 0:
        raise ValueError(f"{density}: no weight has a mean activation above gamma = {gamma}; lower "
                         "models.<model>.thresholds[0] (the primary threshold)")
    log.info("activated weights per block (gamma %g, %s): %s", gamma, density, counts.tolist())
    return counts


def sparsity_frame(result: PruneResult, model_name: str, run: PruneRun) -> pl.DataFrame:
    rows = []
    for r in result.layers:
        i = r["layer"]
        rows.append({
            "model": model_name, "run": run.name, "method": run.method, "allocation": run.nm or run.allocation,
            "calibration": run.calibration, "seed": run.seed, "sparsity": run.sparsity, **r,
            "rule": result.extra["rule"][i],
            "n_active": result.extra["n_active"][i] if "n_active" in result.extra else None,
            "lod": result.extra["lod"][i] if "lod" in result.extra else None,
            "owl_lambda": result.extra.get("owl_lambda"),
        })
    return pl.DataFrame(rows, schema_overrides={"calibration": pl.String, "seed": pl.Int64, "n_active": pl.Int64,
                                                "lod": pl.Float64, "owl_lambda": pl.Float64})


def sparsity_check(result: PruneResult) -> dict:
    """The global check: allocated mean == target, and what per-row rounding left over."""
    return {
        "target": result.target, "allocated_mean": result.allocated, "achieved": result.achieved,
        "n_weights": result.n_weights, "n_pruned": result.n_pruned, "n_expected": result.expected_pruned,
        "counts_exact": result.n_pruned == result.expected_pruned, "allocation_adjusted": result.adjusted,
    }


def prune_and_evaluate(
    model,
    tokenizer,
    *,
    model_name: str,
    run: PruneRun | None,
    calibration_table: str | Path | None = None,
    calibration: Mapping | None = None,
    reserved_bottom: int = 0,
    counts=None,
    prune_params: Mapping | None = None,
    eval_params: Mapping,
    out_eval: str | Path,
    out_sparsity: str | Path | None = None,
    out_masks: str | Path | None = None,
    out_model: str | Path | None = None,
    mean_activation=None,
) -> dict:
    """Prune ``model`` in place for ``run`` (``None`` = dense), evaluate, and write the outputs."""
    record: dict = {"model": model_name, "actpat_version": __version__, "timings_s": {},
                    "float32_matmul": torch.get_float32_matmul_precision()}
    t0, c0 = time.perf_counter(), time.process_time()
    if run is None:
        record.update(run="dense", method="dense", allocation=None, calibration=None, seed=None, sparsity=0.0)
    else:
        record.update(run.as_dict(), run=run.name)
        ids = None
        if needs_calibration(run.method, run.allocation):
            ids, cal = calibration_ids(calibration_table, tokenizer, sequences=calibration["sequences"],
                                       seq_len=calibration["seq_len"], seed=run.seed, reserved_bottom=reserved_bottom,
                                       allow_reuse=calibration.get("allow_reuse", False))
            record["calibration_set"] = {k: v for k, v in cal.items() if k not in ("examples", "windows")}
            log.info("calibration: %d x %d tokens from %s (%s, seed %d, %d reused)", *ids.shape,
                     calibration_table, cal["kind"], run.seed, cal["reused"])
        pp = {k: v for k, v in (prune_params or {}).items() if v is not None}
        owl, ap = pp.get("owl") or {}, pp.get("alphapruning") or {}
        result = prune_model(
            model, method=run.method, target=run.sparsity, allocation=run.allocation, calibration_ids=ids,
            counts=counts, alpha=pp.get("alpha", 2.0), beta=pp.get("beta", 0.2), owl_M=owl.get("M", 5.0),
            owl_lambda=owl.get("lambda", 0.08), batch_size=pp.get("batch_size", 8),
            permutation_seed=run.seed or 0,  # permuted: one permutation per calibration seed
            nm=run.nm_pair, mean_activation=mean_activation, alpha_epsilon=ap.get("epsilon"),
            alpha_mapping=ap.get("mapping", "matrix"))
        check = sparsity_check(result)
        record["sparsity_check"] = check
        for k in ("matrix_sparsity", "alpha_hill", "alpha_epsilon", "alpha_mapping"):  # AlphaPruning's inputs
            if k in result.extra:
                record[k] = result.extra[k]
        log.info("pruned %d of %d weights: achieved %.6f, target %.4f, allocated mean %.6f%s", result.n_pruned,
                 result.n_weights, result.achieved, result.target, result.allocated,
                 " (allocation clipped and renormalised)" if result.adjusted else "")
        if not check["counts_exact"]:
            log.warning("pruned %d weights, the per-row/per-block counts add up to %d (SparseGPT zeroes inputs that "
                        "never fire as well)", result.n_pruned, result.expected_pruned)
        write_parquet(sparsity_frame(result, model_name, run), out_sparsity)
        save_masks(out_masks, result.masks, {"model": model_name, **run.as_dict()})
        if out_model:
            save_model_dir(model, tokenizer, out_model)
        record["timings_s"]["prune"] = time.perf_counter() - t0
    ev = evaluate_model(model, tokenizer, **eval_params)
    record["timings_s"].update(ev.pop("timings_s"))
    record.update(ev)
    record["timings_s"]["job"] = time.perf_counter() - t0
    record["timings_s"]["job_cpu"] = time.process_time() - c0
    write_json(record, out_eval)
    return record


def run_job(*, model_name: str, load: Mapping, run: Mapping | None, density: str | Path | None = None,
            gamma: float | None = None, activations: str | Path | None = None, float32_matmul: str = "highest",
            **kw) -> dict:
    """One ``prune_evaluate`` / ``evaluate_dense`` job: load the model its ``load`` spec names, read
    N_i when the allocation needs them and the mean activations when the method ranks by them
    (``activations``: the activation domain's score store), then ``prune_and_evaluate`` (``kw``:
    its remaining arguments).  ``float32_matmul``: PyTorch's float32 matmul precision for the whole
    job (``high`` = TF32 tensor cores on a GPU; no effect on a CPU)."""
    from ..engine.store import ScoreStore
    from ..modelio import load_for_job, num_layers
    from .allocation import NEEDS_COUNTS

    torch.set_float32_matmul_precision(float32_matmul)
    model, tok = load_for_job(dict(load))
    run = PruneRun(**run) if run else None
    counts = None
    if run is not None and run.allocation in NEEDS_COUNTS:
        counts = activation_counts(density, gamma, num_layers(model))
    if activations is not None:
        kw["mean_activation"] = ScoreStore(activations).read  # one matrix at a time
    return prune_and_evaluate(model, tok, model_name=model_name, run=run, counts=counts, **kw)
