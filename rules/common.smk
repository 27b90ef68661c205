# Shared helpers: config validation, names, model inputs, resources and targets.
# Every rule file registers its final outputs with add_targets(); `rule all` asks for them.

import re
import sys
from pathlib import Path

from snakemake.utils import validate

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from actpat.config import ConfigError, SCHEMA_PATH, check_config, check_config_files
from actpat.codehash import code_digest
from actpat import contenthash, resources
from actpat.modelio import LOAD_KEYS

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
    """Where the weights come from and everything that changes them or the numerics
    (actpat.modelio.LOAD_KEYS); a params trigger, read by actpat.modelio.load_for_job.
    """
    spec = model_spec(wildcards.model)
    keys = ("source", "asset", "gguf_file", "id", "path") + LOAD_KEYS
    return {
        "load_from": model_source(wildcards.model),
        **{k: spec.get(k) for k in keys},
        "content": model_content(wildcards.model),
    }


# ------------------------------------------------------------------------ resources
# The resource model lives in actpat.resources (tested); these read the model's config entry.


def on_gpu(model):
    return resources.on_gpu(model_spec(model))


def mem_mb_for(model, kind="score"):
    return resources.mem_mb(model_spec(model), kind)


def gpu_for(model):
    return resources.gpus(model_spec(model))


def runtime_for(model, samples, kind="score"):
    return resources.runtime_min(model_spec(model), samples, kind)


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


def domain_samples(domain):
    """Samples scored for a domain's mean activation: its own `samples` or scoring.samples."""
    return config["domains"][domain].get("samples") or config["scoring"]["samples"]


def shard_rows(domain, shard):
    """Table rows [start, stop) of a domain scoring shard."""
    return resources.shard_range(
        shard, config["scoring"]["shard_size"], domain_samples(domain)
    )


def shard_store(path):
    """A shard's store of sums: temp() (Snakemake deletes it after the merge) unless kept."""
    return path if config["scoring"]["keep_shards"] else temp(path)


def domain_shard_files(wildcards, ext):
    k = resources.n_shards(
        domain_samples(wildcards.domain), config["scoring"]["shard_size"]
    )
    return [
        f"results/scores/{wildcards.model}/shards/{wildcards.domain}/{i}.{ext}"
        for i in range(k)
    ]


def _panel_size():
    return resources.panel_shard_size(
        config["scoring"]["shard_size"], config["similarity"]["per_batch"]
    )


def panel_rows(shard):
    """Rows of every domain table scored by one panel shard."""
    return resources.shard_range(shard, _panel_size(), config["similarity"]["samples"])


def panel_shard_files(wildcards, ext):
    k = resources.n_shards(config["similarity"]["samples"], _panel_size())
    return [f"results/similarity/{wildcards.model}/panel/{i}.{ext}" for i in range(k)]


# ---- figures
def figure(path, name, category, fmt=None, per_model=True, caption=None, **labels):
    """A figure output registered for `snakemake --report`: caption report/<name>.rst, labels
    model/figure/format (one home for what every report() entry repeats)."""
    fmt = fmt or path.rsplit(".", 1)[1]
    return report(
        path,
        caption=f"../report/{caption or name}.rst",
        category=category,
        subcategory="{model}" if per_model else None,
        labels={
            **({"model": "{model}"} if per_model else {}),
            **labels,
            "figure": name,
            "format": fmt,
        },
    )


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
    return resources.mem_mb(model_spec(model), "density")


# ---- prune
# Runs of prune.runs (actpat.prune.runs), their inputs and the config values each uses.

from actpat.prune.runs import runs_by_name
from actpat.prune.allocation import NEEDS_COUNTS
from actpat.prune.sequential import ACTIVATION_METHODS, needs_calibration

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
    # methods that rank weights by their stored mean activation read the store itself
    if run.method in ACTIVATION_METHODS:
        out["activations"] = (
            f"results/scores/{wildcards.model}/{activation_domain()}.zarr"
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
        **(
            {"alphapruning": pr["alphapruning"]}
            if run.allocation == "alphapruning"
            else {}
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
