"""Every rule: its errors reach its log, and its outputs appear only when complete.

* the workflow's rules are listed from rules/*.smk and each must be in ``RULES`` below, which
  says through which writer its outputs go (so a new rule cannot skip this review);
* every rule script runs inside ``rule_logging`` and never writes a file directly;
* every writer those rules use, interrupted in the middle, leaves the earlier output intact and
  no temporary file; outputs get the usual permissions (a 0600 result file or 0700 store on a
  shared cluster is unreadable for the rest of the group).
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from actpat import atomic
from actpat.data import tables as data_tables
from actpat.engine import store as engine_store
from actpat.modelio import ModelError, load_model
from actpat.prune.masks import load_masks, save_masks
from actpat.report.html import write_sections

from helpers import REPO
from helpers.smkrun import rule_blocks
from helpers.tiny import save_tiny_model

# rule -> the writer its outputs go through (all write a temporary name, then rename)
RULES = {
    "fetch_asset": "actpat.assets.fetch: temporary folder renamed",
    "convert_model": "actpat.modelio.convert_gguf: temporary folder renamed",
    "domain_table": "actpat.data.tables.write_parquet",
    "heldout_text": "actpat.atomic.write_text",
    "pairset": "actpat.data.tables.write_parquet",
    "calibration_source": "actpat.data.tables.write_parquet",
    "score_shard": "actpat.engine.store.write_store + actpat.atomic.write_parquet",
    "merge_scores": "actpat.engine.store.write_store + actpat.atomic.write_parquet",
    "score_panel": "actpat.atomic.write_parquet",
    "merge_panel": "actpat.atomic.write_parquet",
    "score_pairs": "actpat.atomic.write_parquet",
    "density": "actpat.atomic.write_parquet",
    "density_table": "actpat.atomic.write_parquet",
    "embed_domains": "actpat.atomic.write_parquet",
    "similarity": "actpat.atomic.write_parquet",
    "relevance": "actpat.atomic.write_parquet + write_json",
    "findings": "actpat.atomic.write_json",
    "analysis_figures": "actpat.report.charts (atomic write_text/write_bytes) + report.html.write_sections",
    "report_html": "actpat.atomic.write_text",
    "prune_evaluate": "actpat.atomic (json, parquet) + prune.masks.save_masks + prune.pipeline.save_model_dir",
    "evaluate_dense": "actpat.atomic.write_json",
    "pruning_table": "actpat.atomic (parquet, text, atomic_path for charts)",
    "sts_eval": "actpat.analysis.sts via actpat.atomic",
    "provenance": "actpat.atomic.write_json",
    "summary": "actpat.atomic.write_text",
}


def _rules() -> dict[str, str | None]:
    """rule name -> its script (None for rules without one), from the rules files."""
    out = {}
    for name, body in rule_blocks().items():
        m = re.search(r'^\s+"\.\./scripts/(\w+\.py)"', body, re.M)
        out[name] = m.group(1) if m else None
    return out


def test_every_rule_is_reviewed():
    rules = _rules()
    assert len(rules) >= 20
    assert set(rules) == set(RULES), f"new or removed rules: {set(rules) ^ set(RULES)}"


@pytest.mark.parametrize("rule", sorted(RULES))
def test_rule_script_logs_and_writes_only_through_the_package(rule):
    script = _rules()[rule]
    assert script, f"rule {rule} has no script"
    text = (REPO / "scripts" / script).read_text()
    assert "with rule_logging(snakemake)" in text
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    direct = re.findall(r"\bopen\([^)]*[\"'][wa]b?[\"']|\.\s*(?:write_parquet|write_text|write_bytes|write_csv|save|"
                        r"savez|save_pretrained)\(|json\.dump\(", body)
    assert not direct, f"{script} writes directly: {direct}"


# ------------------------------------------------------------ interrupted writers

class Boom(Exception):
    pass


def _boom(*a, **k):
    raise Boom("interrupted")


DF = pl.DataFrame({"id": ["a", "b"], "value": [1.0, 2.0]})

# writer id -> (write the new version, the primitive to break mid-way, read back)
WRITERS = {
    "atomic.write_parquet": (lambda p: atomic.write_parquet(DF, p), (pl.DataFrame, "write_parquet"), pl.read_parquet),
    "atomic.write_text": (lambda p: atomic.write_text("new text", p), (Path, "write_text"), Path.read_text),
    "atomic.write_bytes": (lambda p: atomic.write_bytes(b"new bytes", p), (Path, "write_bytes"), Path.read_bytes),
    "atomic.write_json": (lambda p: atomic.write_json({"new": 1}, p), (Path, "write_text"), Path.read_text),
    "data.tables.write_parquet": (lambda p: data_tables.write_parquet(DF, p, {"k": "v"}),
                                  (pl.DataFrame, "write_parquet"), pl.read_parquet),
    "atomic.write_text at the rename": (lambda p: atomic.write_text("new text", p), (os, "replace"), Path.read_text),
    "masks.save_masks": (lambda p: save_masks(p, {"w": np.ones((3, 3), bool)}), (np, "savez"), load_masks),
    "report.write_sections": (lambda p: write_sections([{"id": "x", "title": "t"}], p),
                              (Path, "write_text"), Path.read_text),
    "store.write_store": (lambda p: engine_store.write_store(p, {"w": np.ones((4, 4))}, {"k": 1}),
                          (engine_store, "_to_numpy"), lambda p: dict(engine_store.ScoreStore(p).attrs)),
}


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_interrupted_writer_keeps_the_earlier_output(tmp_path, monkeypatch, writer):
    write, (owner, name), read = WRITERS[writer]
    path = tmp_path / ("out.zarr" if writer == "store.write_store" else "out.dat")
    write(path)
    before = read(path)
    if writer == "masks.save_masks":
        monkeypatch.setattr(np, "savez", lambda f, **k: (f.write(b"partial"), _boom()))
    else:  # a primitive that writes half of its data (Path.write_*) or fails outright (os.replace, ...)
        real = getattr(owner, name)

        def partial(*a, **k):
            if owner is Path and name in ("write_text", "write_bytes"):
                real(a[0], a[1][: len(a[1]) // 2], *a[2:], **k)  # half of it lands on disk, then the crash
            raise Boom("interrupted")

        monkeypatch.setattr(owner, name, partial)
    with pytest.raises(Boom):
        write(path)
    monkeypatch.undo()
    after = read(path)
    if isinstance(before, pl.DataFrame):
        assert after.equals(before)
    elif isinstance(before, tuple):  # masks
        assert np.array_equal(after[0]["w"], before[0]["w"])
    else:
        assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name], list(tmp_path.iterdir())


def test_outputs_get_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        atomic.write_parquet(DF, tmp_path / "g.parquet")
        engine_store.write_store(tmp_path / "s.zarr", {"w": np.ones((4, 4))}, {"k": 1})
        atomic.write_text("text", tmp_path / "t.md")
        atomic.write_json({"a": 1}, tmp_path / "a.json")
        data_tables.write_parquet(DF, tmp_path / "d.parquet")
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes == {"g.parquet": 0o644, "s.zarr": 0o755, "t.md": 0o644, "a.json": 0o644, "d.parquet": 0o644}


def test_merge_panel_rule_concatenates_its_shards(tmp_path):
    """merge_panel looked for an input 'statss' (output name + 's') and failed in every run."""
    from actpat.contracts import GRAM_SCHEMA, STATS_SCHEMA

    from helpers.reliability import RELIABILITY_RUN, base_config, write_config
    from helpers.smkrun import snakemake

    cfg = base_config(similarity={"samples": 4, "per_batch": 2, "deep_window": [1, 2], "shallow_window": [0, 1]},
                      scoring={"samples": 4, "batch_size": 2, "shard_size": 2, "max_tokens": 32})
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text('{"num_hidden_layers": 3}')
    for f in ("qa", "txt"):
        (tmp_path / "data").mkdir(exist_ok=True)
        (tmp_path / "data" / f"{f}.jsonl").write_text("")
    shards = tmp_path / "results/similarity/tiny/panel"
    shards.mkdir(parents=True)
    for i in range(2):  # 4 samples per domain, 2 per batch, shard_size 2: two shards
        pl.DataFrame({"model": ["tiny"], "layer": [i], "id_a": [f"a{i}"], "domain_a": ["qa"], "id_b": [f"b{i}"],
                      "domain_b": ["txt"], "dot": [1.0], "norm2_a": [1.0], "norm2_b": [1.0], "llmdcos": [1.0]},
                     schema=GRAM_SCHEMA).write_parquet(shards / f"{i}.gram.parquet")
        pl.DataFrame({"model": ["tiny"], "domain": ["qa"], "id": [f"a{i}"], "layer": [0], "matrix": ["mlp"],
                      "statistic": ["sum"], "threshold": [None], "value": [float(i)]},
                     schema=STATS_SCHEMA).write_parquet(shards / f"{i}.stats.parquet")
    r = snakemake(tmp_path, "--allowed-rules", "merge_panel", "--rerun-triggers", "mtime", "--",
                  "results/similarity/tiny/panel.gram.parquet", configfile=write_config(tmp_path / "c.yaml", cfg),
                  timeout=300, **RELIABILITY_RUN)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    gram = pl.read_parquet(tmp_path / "results/similarity/tiny/panel.gram.parquet")
    stats = pl.read_parquet(tmp_path / "results/similarity/tiny/panel.stats.parquet")
    assert gram["id_a"].to_list() == ["a0", "a1"] and stats["value"].to_list() == [0.0, 1.0]


# -------------------------------------------------------------------- devices

def test_device_auto_and_missing_cuda(tmp_path):
    d = save_tiny_model(tmp_path / "m")
    model, _ = load_model(str(d), device="auto")  # the evaluation jobs pass the config's device as is
    assert next(model.parameters()).device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="device: cuda was configured but no CUDA device is visible"):
            load_model(str(d), device="cuda")
