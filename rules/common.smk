# Shared helpers: config validation, names, model inputs, resources and targets.
# Every rule file registers its final outputs with add_targets(); `rule all` asks for them.

import re
import sys
from pathlib import Path

from snakemake.utils import validate

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from actpat.config import ConfigError, SCHEMA_PATH, check_config, check_config_files
from actpat.codehash import code_digest
from actpat import contenthash

try:
    # duplicate keys, which Snakemake's own loader drops silently
    check_config_files(workflow.configfiles)
    _checked = check_config(config)
except ConfigError as e:
    raise WorkflowError(str(e))
validate(config, schema=str(SCHEMA_PATH))
config.update(_checked)

MODELS = sorted(config["models"])
DOMAINS = sorted(config["domains"])
TEXT_DOMAINS = [d for d in DOMAINS if config["domains"][d]["format"] == "text"]
# domains with a calibration source of their own (see has_calibration_source)
CALIBRATION_SOURCES = TEXT_DOMAINS + [
    d for d in DOMAINS if config["domains"][d].get("calibration_split")
]


def script_code(script):
    """params: code: a digest of the package modules the rule's script runs (actpat.codehash),
    so a change of the code, not only of the script, reruns the rule."""
    return code_digest(Path(workflow.basedir) / "scripts" / script)


def alternatives(names):
    return "|".join(re.escape(n) for n in names) or "(?!)"


_TARGETS = []


def add_targets(fn):
    """Register a function returning final outputs (called lazily by `rule all`)."""
    _TARGETS.append(fn)


def all_outputs():
    return [p for fn in _TARGETS for p in fn()]


# --------------------------------------------------------------------------- models


def model_spec(model):
    return config["models"][model]


def model_source(model):
    """What actpat.modelio.load_model receives: a directory or a hub id."""
    spec = model_spec(model)
    if spec["source"] == "gguf_asset":
        return f"resources/models/{model}"
    if spec["source"] == "local":
        return spec["path"]
    return spec["id"]


def content_state(paths):
    """params: content: for each input directory this workflow wrote (assets, converted models),
    "as written" or, after a file inside was changed in place, a digest of what is there now
    (actpat.contenthash; a stat per file); local files are input files, watched by Snakemake.
    """
    return {p: contenthash.state(p) for p in paths if not Path(p).is_file()}


def model_content(model):
    """The model directory's content token: manifest-checked when converted here, names, sizes
    and mtimes for a user's local directory, nothing for a hub id (its revision is a param).
    """
    spec = model_spec(model)
    if spec["source"] == "gguf_asset":
        return contenthash.state(model_source(model))
    if spec["source"] == "local":
        return contenthash.stat_digest(spec["path"])
    return None


def gguf_asset_input(wildcards):
    return f"resources/assets/{model_spec(wildcards.model)['asset']}"


def model_input(wildcards):
    """The model directory as an input; hub models have none (they load by id)."""
    spec = model_spec(wildcards.model)
    if spec["source"] == "hub":
        return []
    return model_source(wildcards.model)


def model_load_params(wildcards):
    """Everything that changes the loaded weights or numerics; a params trigger."""
    spec = model_spec(wildcards.model)
    keys = (
        "source",
        "asset",
        "gguf_file",
        "id",
        "path",
        "revision",
        "dtype",
        "device",
        "device_map",
        "trust_remote_code",
        "allow_pickle",
    )
    return {
        "load_from": model_source(wildcards.model),
        **{k: spec.get(k) for k in keys},
        "content": model_content(wildcards.model),
    }


# ------------------------------------------------------------------------ resources
# Generic resources only (mem_mb, runtime in minutes, gpu); cluster specifics live in profiles/.
# Sizes follow the scorer's design: weights in the configured dtype, the per-weight sums in
# float32 (float64 for float64 models) on the scoring device, plus activations and per-sample
# gradient tiles of the batch.  docs/cluster.md has a worked 7B example.

_DTYPE_BYTES = {"float64": 8, "float32": 4, "bfloat16": 2, "float16": 2}
_GPU_GB = 80  # usable memory of one GPU (A100/H100 80 GB); larger GPUs: set gpu in the profile


def _size_b(model):
    return float(model_spec(model).get("size_b", 1.0))


def on_gpu(model):
    return (
        model_spec(model).get("device") in ("cuda", "auto")
        or model_spec(model).get("device_map") == "auto"
    )


def _weight_gb(model):
    """GB of the model's weights in its configured dtype."""
    return _size_b(model) * _DTYPE_BYTES[model_spec(model).get("dtype", "float32")]


def _sums_gb(model):
    """GB of one accumulator per weight (float32, float64 for float64 models)."""
    fp64 = model_spec(model).get("dtype") == "float64"
    return _size_b(model) * (8 if fp64 else 4)


def mem_mb_for(model, kind="score"):
    """Host memory (MB) of one job of ``kind`` on ``model``.

    score: on CPU the weights, the sums and as much again for activations and gradients;
           on GPU those live on the GPU and the host only holds the weights while loading
           (transformers loads on CPU, then moves them) plus about 4 GB of libraries.
    merge: every weight's mean in float32 plus one float64 array being summed.
    Other kinds (prune, eval, ...): float32 weights times a working-memory factor.
    """
    if kind == "score":
        if on_gpu(model):
            gb = 1.5 * _weight_gb(model) + 4
        else:
            gb = 2 * _weight_gb(model) + _sums_gb(model) + 2
    elif kind == "merge":
        gb = 1.2 * _sums_gb(model) + 2
    else:
        gb = _size_b(model) * 4 * {"prune": 2.5, "eval": 1.5}.get(kind, 2.0) + 2
    return int(gb * 1024)


def gpu_for(model):
    """GPUs of a model job: 0 on CPU; 1 with device cuda/auto (a model runs on one device);
    with device_map auto, enough GPUs for the weights, the float32 sums and the activations
    kept for the backward pass (x1.7 + 4 GB: 7B bf16 at batch 16 peaked at 67 GiB on an H200,
    benchmarks/NOTES.md).
    """
    if not on_gpu(model):
        return 0
    if model_spec(model).get("device_map") != "auto":
        return 1
    need_gb = 1.7 * (_weight_gb(model) + _sums_gb(model)) + 4
    return max(1, int(-(-need_gb // _GPU_GB)))


def runtime_for(model, samples, kind="score"):
    """Minutes: loading the weights (0.2 GB/s, a slow shared file system) plus samples x
    per-sample cost scaled by size (CPU ~1 s per 0.1B at 256 tokens), doubled for safety.
    """
    per_sample_s = (
        _size_b(model)
        * (0.15 if on_gpu(model) else 10.0)
        * {"score": 1.0, "eval": 0.5}.get(kind, 1.0)
    )
    load_s = _weight_gb(model) / 0.2
    return int(10 + (load_s + samples * per_sample_s) / 60 * 2)


# ---- data
# Inputs and params of the data rules; what each source reads is in its actpat.data.sources module.

from actpat.data.sources import source_inputs

PAIRSETS = sorted(config["sts"]["pairsets"])


def domain_inputs(wildcards):
    """Asset folder (or local file) a domain's table is built from."""
    return source_inputs(config["domains"][wildcards.domain])


def pairset_inputs(wildcards):
    """Asset folder (or local file) a sentence-pair set is built from."""
    return source_inputs(config["sts"]["pairsets"][wildcards.pairset])


def domain_params(domain):
    """The domain's spec without documentation-only keys (a params trigger)."""
    return {
        k: v
        for k, v in config["domains"][domain].items()
        if k not in ("stands_in_for", "samples")
    }


def domain_data_params(domain):
    """The data.* keys a domain's table depends on (windows only matter for text)."""
    keys = ["seed", "pool"]
    if config["domains"][domain]["format"] == "text":
        keys += ["window_words", "heldout_fraction"]
    return {k: config["data"][k] for k in keys}


def pairset_seed(pairset):
    """The sampling seed, only when the pair set is a seeded sample."""
    spec = config["sts"]["pairsets"][pairset]
    return config["data"]["seed"] if spec["selection"] == "seeded" else None


# ---- scoring


def score_options(model):
    """ScoreOptions for a model's scoring jobs (a params trigger)."""
    sc = config["scoring"]
    return {
        "target": sc["target"],
        "max_tokens": sc["max_tokens"],
        "include": sc["include"],
        "exclude": sc["exclude"],
        "kernel": sc["kernel"],
        "elementwise": sc["elementwise"],
        "thresholds": list(model_spec(model)["thresholds"]),
    }


def domain_truncation(domain):
    """Task prompts keep their end (D is read at their last token); text windows their start."""
    return "right" if config["domains"][domain]["format"] == "text" else "left"


def n_shards(samples, shard_size):
    return -(-samples // shard_size)


def domain_samples(domain):
    """Samples scored for a domain's mean activation: its own `samples` or scoring.samples."""
    return config["domains"][domain].get("samples") or config["scoring"]["samples"]


def shard_rows(domain, shard):
    """Table rows [start, stop) of a domain scoring shard."""
    size = config["scoring"]["shard_size"]
    start = shard * size
    return [start, min(start + size, domain_samples(domain))]


def domain_shard_files(wildcards, ext):
    k = n_shards(domain_samples(wildcards.domain), config["scoring"]["shard_size"])
    return [
        f"results/scores/{wildcards.model}/shards/{wildcards.domain}/{i}.{ext}"
        for i in range(k)
    ]


def panel_rows(shard):
    """Rows of every domain table scored by one panel shard."""
    sim = config["similarity"]
    size = config["scoring"]["shard_size"]
    size -= size % sim["per_batch"]  # whole mixed batches per shard
    size = max(size, sim["per_batch"])
    start = shard * size
    return [start, min(start + size, sim["samples"])]


def panel_shard_files(wildcards, ext):
    sim = config["similarity"]
    size = max(
        config["scoring"]["shard_size"]
        - config["scoring"]["shard_size"] % sim["per_batch"],
        sim["per_batch"],
    )
    return [
        f"results/similarity/{wildcards.model}/panel/{i}.{ext}"
        for i in range(n_shards(sim["samples"], size))
    ]


# ---- analysis
# Report sections: any rules file registers the JSON section files it writes
# (format: actpat.report.html docstring); rules/report.smk builds index.html from all.

_REPORT_SECTIONS = []


def add_report_section(fn):
    """Register a function returning section files for results/report/index.html."""
    _REPORT_SECTIONS.append(fn)


def report_sections():
    return [p for fn in _REPORT_SECTIONS for p in fn()]


def embeddings_enabled():
    return config["relevance"]["embedding_asset"] is not None


def analysis_mem_mb(model):
    """Density streams one layer at a time: about four copies of a layer plus the top-k buffer."""
    return int(1024 + _size_b(model) * 1000 * 0.8)


# ---- prune
# Runs of prune.runs (actpat.prune.runs), their inputs and the config values each uses.

from actpat.prune.runs import runs_by_name
from actpat.prune.allocation import NEEDS_COUNTS
from actpat.prune.sequential import needs_calibration

PRUNE_RUNS = runs_by_name(config["prune"]) if config["prune"]["enabled"] else {}


def prune_run(wildcards):
    return PRUNE_RUNS[wildcards.run]


def activation_domain():
    """Domain whose mean activations give the paper allocation's N_i (default: the calibration set)."""
    return (
        config["prune"]["activation_domain"] or config["prune"]["calibration"]["domain"]
    )


def has_calibration_source(domain):
    """Text domains calibrate on whole documents, hub tasks on their calibration_split."""
    d = config["domains"][domain]
    return d["format"] == "text" or bool(d.get("calibration_split"))


def calibration_table(domain):
    if has_calibration_source(domain):
        return f"results/data/{domain}.calibration.parquet"
    return f"results/data/{domain}.parquet"


def reserved_bottom(domain):
    """Rows at the bottom of a domain table kept for evaluation (questions, MMLU shots)."""
    zs = config["evaluation"]["zeroshot"]
    if domain not in zs["domains"]:
        return 0
    shots = zs["mmlu_shots"] if config["domains"][domain]["format"] == "mmlu" else 0
    return zs["questions"] + shots


def eval_inputs(wildcards):
    """Held-out text (unless read from the hub) and the zero-shot domain tables."""
    ev = config["evaluation"]
    out = {"model": model_input(wildcards)}
    if not ev["perplexity"]["hub"]:
        out["heldout"] = f"results/data/{ev['perplexity']['domain']}.heldout.txt"
    for d in zeroshot_domains(wildcards):
        out[f"zeroshot_{d}"] = f"results/data/{d}.parquet"
    return out


def zeroshot_domains(wildcards):
    """Zero-shot tasks of a job: all for the dense model; for a pruned run only when its
    sparsity is in evaluation.zeroshot.sparsities and its calibration seed in
    evaluation.zeroshot.seeds and its allocation in evaluation.zeroshot.allocations
    (null = every run)."""
    zs = config["evaluation"]["zeroshot"]
    run = PRUNE_RUNS.get(getattr(wildcards, "run", None))
    if run is None:
        return zs["domains"]
    s_ok = zs["sparsities"] is None or any(
        abs(run.sparsity - s) < 1e-9 for s in zs["sparsities"]
    )
    seed_ok = zs["seeds"] is None or run.seed is None or run.seed in zs["seeds"]
    alloc_ok = zs["allocations"] is None or run.allocation in zs["allocations"]
    return zs["domains"] if s_ok and seed_ok and alloc_ok else []


def prune_inputs(wildcards):
    run = prune_run(wildcards)
    out = eval_inputs(wildcards)
    if needs_calibration(run.method, run.allocation):
        out["calibration"] = calibration_table(run.calibration)
    if run.allocation in NEEDS_COUNTS:
        # N_i: the exact counts of the density table, not the full store
        out["density"] = (
            f"results/analysis/{wildcards.model}/density/{activation_domain()}.parquet"
        )
    return out


def eval_params(wildcards):
    """evaluation.* as keyword arguments of actpat.evaluate.suite.evaluate_model; the zero-shot
    settings only for jobs that evaluate zero-shot (so they rerun no perplexity-only run).
    """
    ev = config["evaluation"]
    zs = bool(zeroshot_domains(wildcards))
    return {
        "ppl_hub": ev["perplexity"]["hub"],
        "ppl_seq_len": ev["perplexity"]["seq_len"],
        "ppl_max_windows": ev["perplexity"]["max_windows"],
        "ppl_bos": ev["perplexity"]["bos"],
        "questions": ev["zeroshot"]["questions"] if zs else None,
        "mmlu_shots": ev["zeroshot"]["mmlu_shots"] if zs else None,
    }


def prune_run_params(wildcards):
    """Only the prune.* values this run depends on (so editing OWL's M does not rerun Wanda)."""
    run = prune_run(wildcards)
    pr = config["prune"]
    return {
        "alpha": pr["alpha"] if run.allocation in NEEDS_COUNTS else None,
        "beta": pr["beta"] if run.allocation in NEEDS_COUNTS else None,
        # owl_matched sets lambda from the paper rule; only M is read
        "owl": (
            pr["owl"]
            if run.allocation == "owl"
            else {"M": pr["owl"]["M"]} if run.allocation == "owl_matched" else None
        ),
    }


def calibration_params(wildcards):
    run = prune_run(wildcards)
    if not needs_calibration(run.method, run.allocation):
        return None
    cal = config["prune"]["calibration"]
    return {k: cal[k] for k in ("sequences", "seq_len", "allow_reuse")}


def prune_gamma(wildcards):
    """The model's primary activation threshold, for the allocations that read the counts."""
    if prune_run(wildcards).allocation not in NEEDS_COUNTS:
        return None
    return model_spec(wildcards.model)["thresholds"][0]


def prune_runtime(wildcards):
    zs = config["evaluation"]["zeroshot"]
    n = (
        zs["questions"] * len(zeroshot_domains(wildcards))
        + (config["evaluation"]["perplexity"]["max_windows"] or 64) * 4
        + config["prune"]["calibration"]["sequences"] * 4
    )
    return runtime_for(wildcards.model, n, "eval")


def prune_runtime_dense(wildcards):
    zs = config["evaluation"]["zeroshot"]
    n = (
        zs["questions"] * len(zs["domains"])
        + (config["evaluation"]["perplexity"]["max_windows"] or 64) * 4
    )
    return runtime_for(wildcards.model, n, "eval")


def prune_targets():
    if not config["prune"]["enabled"]:
        return []
    out = [f"results/eval/{m}/dense.json" for m in MODELS]
    out += [f"results/eval/{m}/{r}.json" for m in MODELS for r in PRUNE_RUNS]
    return out + [
        "results/tables/pruning.parquet",
        "results/tables/pruning_summary.parquet",
        "results/tables/pruning.md",
        "results/report/pruning_ppl.svg",
        "results/report/pruning_ppl.png",
        "results/tables/pruning_comparisons.parquet",
        "results/report/pruning_allocations.svg",
    ]


# ---- reliability
# Inputs of the provenance record (results/provenance.json): every asset folder and local
# file the configured domains, pair sets and models read.


def provenance_inputs():
    specs = list(config["domains"].values()) + list(config["sts"]["pairsets"].values())
    paths = {p for spec in specs for p in source_inputs(spec)}
    for m in MODELS:
        if model_spec(m)["source"] == "gguf_asset":
            paths.add(f"resources/assets/{model_spec(m)['asset']}")
    if embeddings_enabled():
        paths.add(f"resources/assets/{config['relevance']['embedding_asset']}")
    assets = sorted(p for p in paths if p.startswith("resources/assets/"))
    models = sorted(
        {model_source(m) for m in MODELS if model_spec(m)["source"] != "hub"}
    )
    return {"assets": assets, "files": sorted(paths - set(assets)), "models": models}


def provenance_models():
    """Model name -> the folder or hub id it loads from (folders are fingerprinted)."""
    return {m: model_source(m) for m in MODELS}
