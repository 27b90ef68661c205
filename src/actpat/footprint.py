"""`actpat footprint`: what a configuration will cost before it runs.

Per rule and in total: disk at the end of the run and at its peak, files, the largest memory request
and the predicted time of the model jobs (on GPUs and on CPUs apart; other jobs are light). The job
list and each job's memory and runtime come from Snakemake's dry run (``--forceall``: every job, as
on a fresh checkout), so from the same resource model the rules use (``actpat.resources``); the
predicted time is the runtime request without its safety margin (``resources.job_seconds``). Disk
comes from the sizes below, measured on the default run (stores: benchmarks/NOTES.md).

Peak disk assumes every temporary shard store exists at once (an upper bound: Snakemake deletes a
domain's shards as soon as its merge succeeds). Downloaded assets are not counted."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Sequence

from . import resources
from .config import check_config, load_config_file
from .dryrun import Job, parse_jobs

# zstd on the stored values of mean-activation stores, measured on the default run's stores
STORE_RATIO = {"float32": 0.91, "float16": 0.88, "bfloat16": 0.75}
STORE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
PROBE_BYTES = 3.7  # per probed weight and sample in the .probe.parquet tables (measured)
SMALL = 64 << 10  # any other output file: tables, JSON, figures (an upper bound for most)


def store_files(matrices: int) -> int:
    """A store's files: each matrix's metadata and one shard file, the group's metadata, and the
    timestamp Snakemake leaves in a directory output (a matrix above 256 MB has more shard files)."""
    return 2 * matrices + 2


def architecture(name: str, spec: dict, workdir: Path) -> dict | None:
    """The model's config.json (hidden sizes, depth), if it is on disk already."""
    src = spec.get("path") or (f"resources/models/{name}" if spec["source"] == "gguf_asset" else None)
    path = workdir / src / "config.json" if src else None
    if path is None or not path.is_file():
        return None
    cfg = json.loads(path.read_text())
    return cfg.get("text_config", cfg)


def scored_weights(name: str, spec: dict, workdir: Path) -> tuple[float, int, bool]:
    """(weights scored, matrices, exact?): the decoder blocks' seven linear matrices, from the
    model's config.json when it is on disk, else 95% of size_b in 7 x layers matrices."""
    arch = architecture(name, spec, workdir)
    if arch is None:
        layers = int(spec.get("layers") or 1)
        return 0.95 * resources.size_b(spec) * 1e9, 7 * layers, False
    H, inter, L = arch["hidden_size"], arch["intermediate_size"], arch["num_hidden_layers"]
    heads = arch["num_attention_heads"]
    kv = arch.get("num_key_value_heads") or heads
    hd = arch.get("head_dim") or H // heads
    per_block = 2 * H * heads * hd + 2 * H * kv * hd + 3 * H * inter
    return float(L * per_block), 7 * L, True


def merged_config(configfiles: Sequence[str | Path]) -> dict:
    """The config Snakemake builds from several --configfile files: later ones update earlier ones,
    mappings key by key (lists replaced)."""
    def update(base: dict, new: dict) -> dict:
        for k, v in new.items():
            base[k] = update(base.get(k) or {}, v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
        return base

    cfg: dict = {}
    for f in configfiles:
        update(cfg, load_config_file(f))
    return cfg


def dry_run(configfiles: Sequence[str | Path], snakefile: str | Path, workdir: Path) -> list[Job]:
    cmd = [sys.executable, "-m", "snakemake", "-n", "--forceall", "-s", str(snakefile), "-d", str(workdir),
           "--configfile", *map(str, configfiles), "--cores", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"the dry run of {' '.join(map(str, configfiles))} failed:\n"
                           f"{(proc.stdout + proc.stderr)[-3000:]}")
    return parse_jobs(proc.stdout)


def job_disk(job: Job, cfg: dict, sizes: dict) -> tuple[float, int, bool]:
    """(bytes, files, temporary) a job writes."""
    model = job.wildcards.get("model")
    weights, matrices = sizes[model][:2] if model else (0.0, 0)
    sc = cfg["scoring"]
    if job.rule in ("score_shard", "merge_scores"):  # a store and its three tables (stats, gram, probe)
        shard = job.rule == "score_shard"
        dt = "float32" if shard else sc["store_dtype"]  # shard sums are always float32
        samples = sc["shard_size"] if shard else sc["samples"]
        tables = sc["probe_per_layer"] * (matrices // 7) * samples * PROBE_BYTES + 2 * SMALL
        size = weights * STORE_BYTES[dt] * STORE_RATIO[dt] + tables
        return size, store_files(matrices) + 3, shard and not sc["keep_shards"]
    if job.rule == "prune_evaluate":
        return weights / 8 + 2 * SMALL, 3, False  # bit-packed masks, the sparsity table, the evaluation
    if job.rule == "convert_model":
        spec = cfg["models"][model]
        return resources.size_b(spec) * 1e9 * resources.DTYPE_BYTES[spec.get("dtype", "float32")], 6, False
    return SMALL * len(job.output), len(job.output), False


def footprint(configfiles: str | Path | Sequence[str | Path], snakefile: str | Path = "Snakefile",
              workdir: str | Path = ".") -> dict:
    """The plan of a run with ``configfiles`` (one file, or several merged as Snakemake does)."""
    workdir = Path(workdir)
    configfiles = [configfiles] if isinstance(configfiles, (str, Path)) else list(configfiles)
    cfg = check_config(merged_config(configfiles), base_dir=workdir)
    sizes = {m: scored_weights(m, spec, workdir) for m, spec in cfg["models"].items()}
    rows: dict[str, dict] = defaultdict(lambda: {"jobs": 0, "final_bytes": 0.0, "temp_bytes": 0.0, "files": 0,
                                                "max_mem_mb": 0, "gpu_s": 0.0, "cpu_s": 0.0})
    for job in dry_run(configfiles, snakefile, workdir):
        if job.rule == "all":
            continue
        r = rows[job.rule]
        size, files, temp = job_disk(job, cfg, sizes)
        r["jobs"] += 1
        r["temp_bytes" if temp else "final_bytes"] += size
        r["files"] += 0 if temp else files
        mem = int(job.resources.get("mem_mb", 0) or 0)
        r["max_mem_mb"] = max(r["max_mem_mb"], mem)
        if "gpu" in job.resources:  # a model job: its runtime request comes from resources.runtime_min
            seconds = resources.job_seconds_from_runtime(int(job.resources.get("runtime", 0) or 0))
            r["gpu_s" if int(job.resources["gpu"] or 0) > 0 else "cpu_s"] += seconds
    total = {k: sum(r[k] for r in rows.values()) for k in ("jobs", "final_bytes", "temp_bytes", "files", "gpu_s",
                                                           "cpu_s")}
    total["max_mem_mb"] = max((r["max_mem_mb"] for r in rows.values()), default=0)
    total["peak_bytes"] = total["final_bytes"] + total["temp_bytes"]
    models = {m: {"scored_weights": w, "matrices": n, "exact": e} for m, (w, n, e) in sizes.items()}
    return {"configfile": " ".join(map(str, configfiles)), "models": models, "rules": dict(sorted(rows.items())),
            "total": total}


def markdown(fp: dict) -> str:
    gb = lambda b: f"{b / 1e9:.2f}"  # noqa: E731
    lines = [f"Footprint of {fp['configfile']} (predicted, before running)", ""]
    for m, s in fp["models"].items():
        how = "from its config.json" if s["exact"] else "estimated as 95% of size_b (convert or fetch it for exact)"
        lines.append(f"* {m}: {s['scored_weights'] / 1e9:.3f} B scored weights in {s['matrices']} matrices, {how}")
    lines += ["", "| rule | jobs | disk at the end (GB) | temporary (GB) | files | memory (MB, largest job) | "
                  "GPU time (min) | CPU time (min) |", "|---|---|---|---|---|---|---|---|"]
    for name, r in list(fp["rules"].items()) + [("**total**", fp["total"])]:
        lines.append(f"| {name} | {r['jobs']} | {gb(r['final_bytes'])} | {gb(r['temp_bytes'])} | {r['files']} | "
                     f"{r['max_mem_mb']} | {r['gpu_s'] / 60:.1f} | {r['cpu_s'] / 60:.1f} |")
    t = fp["total"]
    lines += ["", f"Disk: {gb(t['final_bytes'])} GB at the end, at most {gb(t['peak_bytes'])} GB at the peak "
                  "(every temporary shard store at once); downloaded assets not counted."]
    return "\n".join(lines) + "\n"
