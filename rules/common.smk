# Shared helpers: config validation, names, model inputs, resources and targets.
# Every rule file registers its final outputs with add_targets(); `rule all` asks for them.

import re
import sys
from pathlib import Path

from snakemake.utils import validate

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from actpat.config import ConfigError, SCHEMA_PATH, check_config

try:
    _checked = check_config(config)
except ConfigError as e:
    raise WorkflowError(str(e))
validate(config, schema=str(SCHEMA_PATH))
config.update(_checked)

MODELS = sorted(config["models"])
DOMAINS = sorted(config["domains"])
TEXT_DOMAINS = [d for d in DOMAINS if config["domains"][d]["format"] == "text"]


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
    }


# ------------------------------------------------------------------------ resources
# Generic resources only (mem_mb, runtime in minutes, gpu); cluster specifics live in profiles/.


def _size_b(model):
    return float(model_spec(model).get("size_b", 1.0))


def on_gpu(model):
    return (
        model_spec(model).get("device") in ("cuda", "auto")
        or model_spec(model).get("device_map") == "auto"
    )


def mem_mb_for(model, kind="score"):
    """Host memory: weights in float32 plus per-kind working memory."""
    gb = (
        _size_b(model) * 4 * {"score": 3.0, "prune": 2.5, "eval": 1.5}.get(kind, 2.0)
        + 2
    )
    return int(gb * 1024)


def gpu_for(model):
    if not on_gpu(model):
        return 0
    per_gpu_gb = 80  # conservative usable memory per GPU for scoring (weights + per-sample gradients)
    return max(1, int(-(-_size_b(model) * 2 * 4 // per_gpu_gb)))


def runtime_for(model, samples, kind="score"):
    """Minutes: samples x per-sample cost scaled by size (CPU ~1 s per 0.1B at 256 tokens)."""
    per_sample_s = (
        _size_b(model)
        * (0.15 if on_gpu(model) else 10.0)
        * {"score": 1.0, "eval": 0.5}.get(kind, 1.0)
    )
    return int(10 + samples * per_sample_s / 60 * 2)


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
