"""Determinism and provenance: the same config and seed give the same bytes and the same scores,
whatever the process (Python's hash seed differs between the runs), and every output records
what it was made from.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from importlib.metadata import version

import numpy as np
import polars as pl
import pytest
import torch

from actpat import __version__
from actpat.data.tables import build_domain, table_metadata, write_parquet
from actpat.engine.store import ScoreStore

from helpers import REPO
from helpers.reliability import RELIABILITY_RUN, base_config, make_workdir, text_rows, write_config, write_jsonl
from helpers.smkrun import snakemake

ASSETS = REPO / "resources" / "assets"

BUILD = """
import sys
from actpat.data.tables import build_domain, write_parquet
spec = {"source": "local", "path": sys.argv[1], "format": sys.argv[2]}
b = build_domain("d", spec, {"seed": int(sys.argv[4]), "pool": 10, "window_words": 8, "heldout_fraction": 0.2})
write_parquet(b.df, sys.argv[3], b.metadata)
"""

SCORE = """
import sys, torch
torch.set_num_threads(1)
from actpat.engine.jobs import score_domain_shard
from actpat.engine.scorer import ScoreOptions
out = sys.argv[3]
score_domain_shard(model_name="tiny", load={"load_from": sys.argv[1], "dtype": "float32"}, table=sys.argv[2],
                   rows=range(0, 6), opts=ScoreOptions(max_tokens=48, thresholds=(1e-3,)), batch_size=3,
                   out_store=out + "/s.zarr", out_stats=out + "/s.stats.parquet", out_gram=out + "/s.gram.parquet")
"""


def _py(code: str, *args, hashseed: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "PYTHONHASHSEED": hashseed, "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]


@pytest.fixture(scope="module")
def wd(tmp_path_factory):
    return make_workdir(tmp_path_factory.mktemp("det"), rows=30)


@pytest.mark.parametrize("fmt,name", [("boolq", "qa"), ("text", "txt")])
def test_tables_are_bit_identical_across_processes(wd, tmp_path, fmt, name):
    src = wd / "data" / f"{name}.jsonl"
    outs = []
    for k, hashseed in enumerate(("1", "2")):
        out = tmp_path / f"{k}.parquet"
        _py(BUILD, src, fmt, out, 1, hashseed=hashseed)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    _py(BUILD, src, fmt, tmp_path / "seed2.parquet", 2, hashseed="3")
    a, b = pl.read_parquet(tmp_path / "0.parquet"), pl.read_parquet(tmp_path / "seed2.parquet")
    assert a.height == b.height == 10 and a["id"].to_list() != b["id"].to_list()  # the seed matters
    # the in-process build writes the same bytes too
    bld = build_domain("d", {"source": "local", "path": str(src), "format": fmt},
                       {"seed": 1, "pool": 10, "window_words": 8, "heldout_fraction": 0.2})
    write_parquet(bld.df, tmp_path / "here.parquet", bld.metadata)
    assert (tmp_path / "here.parquet").read_bytes() == outs[0]


def test_scores_are_identical_across_processes(wd, tmp_path):
    table = tmp_path / "t.parquet"
    rows = text_rows(6, words=12)
    pl.DataFrame({"id": [r["id"] for r in rows], "domain": "t", "text": [r["text"] for r in rows]}).write_parquet(table)
    for k, hashseed in enumerate(("11", "12")):
        _py(SCORE, wd / "model", table, tmp_path / f"r{k}", hashseed=hashseed)
    a, b = ScoreStore(tmp_path / "r0" / "s.zarr"), ScoreStore(tmp_path / "r1" / "s.zarr")
    assert a.names == b.names and len(a.names) == 3 * 7
    for name in a.names:
        np.testing.assert_array_equal(a.read(name), b.read(name), err_msg=name)
    for part in ("stats", "gram"):
        x = pl.read_parquet(tmp_path / "r0" / f"s.{part}.parquet")
        y = pl.read_parquet(tmp_path / "r1" / f"s.{part}.parquet")
        assert x.height > 0 and x.equals(y)
    drop = {"seconds"}  # wall time is the only attribute allowed to differ
    assert {k: v for k, v in a.attrs.items() if k not in drop} == {k: v for k, v in b.attrs.items() if k not in drop}


def test_store_attributes_record_model_data_and_packages(wd, tmp_path):
    table = tmp_path / "t.parquet"
    pl.DataFrame({"id": ["a", "b"], "domain": "t", "text": ["one text", "two texts"]}).write_parquet(table)
    from actpat.engine.jobs import score_domain_shard
    from actpat.engine.scorer import ScoreOptions

    score_domain_shard(model_name="tiny", load={"load_from": str(wd / "model"), "dtype": "float32"}, table=table,
                       rows=range(0, 2), opts=ScoreOptions(), batch_size=2, out_store=tmp_path / "s.zarr",
                       out_stats=tmp_path / "s.stats.parquet", out_gram=tmp_path / "s.gram.parquet")
    at = ScoreStore(tmp_path / "s.zarr").attrs
    weights = sorted((wd / "model").glob("*.safetensors"))
    fp = at["model_fingerprint"]
    assert fp["files"] == {w.name: w.stat().st_size for w in weights}
    assert fp["sha256"] == {w.name: hashlib.sha256(w.read_bytes()).hexdigest() for w in weights}
    assert at["actpat_version"] == __version__ and at["torch_version"] == torch.__version__
    for pkg in ("transformers", "tokenizers", "safetensors", "numpy", "zarr", "numcodecs", "polars"):
        assert at["packages"][pkg] == version(pkg), pkg
    assert at["sample_ids"] and at["rows"] == [0, 2] and at["max_tokens"] == 256


def test_table_metadata_records_spec_seed_and_packages(wd, tmp_path):
    spec = {"source": "local", "path": str(wd / "data" / "qa.jsonl"), "format": "boolq"}
    b = build_domain("qa", spec, {"seed": 7, "pool": 5})
    write_parquet(b.df, tmp_path / "qa.parquet", b.metadata)
    meta = table_metadata(tmp_path / "qa.parquet")
    assert meta["actpat.seed"] == "7" and json.loads(meta["actpat.spec"]) == spec
    assert meta["actpat.version"] == __version__
    assert json.loads(meta["actpat.packages"])["polars"] == version("polars")
    assert json.loads(meta["actpat.counts"])["rows"] == 5
    assert all(s.startswith(f"file:{spec['path']}#") for s in b.df["source"])  # every row says where it came from


@pytest.mark.skipif(not ASSETS.is_dir(), reason="resources/assets absent (fetched by the fetch_asset rule)")
def test_asset_manifests_record_package_version_and_hash():
    from actpat.assets import ASSETS as REGISTRY

    found = [d for d in ASSETS.iterdir() if (d / "MANIFEST.json").is_file()]
    assert found
    for d in found:
        m = json.loads((d / "MANIFEST.json").read_text())
        a = REGISTRY[m["asset"]]
        assert (m["package"], m["version"], m["registry"]) == (a.package, a.version, a.registry)
        digest = m.get("sha256") or m.get("sha512")
        assert digest and len(digest) in (64, 128)
        assert m["files"] and all((d / f).exists() for f in m["files"]), d


def test_provenance_rule(tmp_path):
    """results/provenance.json: config and its hash, packages, workflow commit, file hashes, model fingerprint."""
    wd = make_workdir(tmp_path / "wd", rows=4)
    write_jsonl(wd / "pairs.jsonl", [{"text_a": "a", "text_b": "b", "score": 1.0}])
    cfg = base_config()
    cfg["sts"]["pairsets"] = {"mine": {"source": "local", "path": "pairs.jsonl"}}
    r = snakemake(wd, "results/provenance.json", configfile=write_config(wd / "c.yaml", cfg), timeout=300,
                  **RELIABILITY_RUN)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    p = json.loads((wd / "results" / "provenance.json").read_text())
    assert p["config"]["domains"]["qa"]["path"] == "data/qa.jsonl" and p["config"]["scoring"]["target"] == "max_logit"
    assert len(p["config_sha256"]) == 64 and p["actpat_version"] == __version__
    assert p["packages"]["torch"] == torch.__version__ and p["packages"]["transformers"] == version("transformers")
    for f in ("data/qa.jsonl", "data/txt.jsonl", "pairs.jsonl"):
        assert p["files"][f] == hashlib.sha256((wd / f).read_bytes()).hexdigest()
    st = next((wd / "model").glob("*.safetensors"))
    assert p["models"]["tiny"]["sha256"][st.name] == hashlib.sha256(st.read_bytes()).hexdigest()
    assert p["workflow"]["commit"] is None or len(p["workflow"]["commit"]) == 40
    # the record is not redone while nothing changed (its creation time is not a trigger)
    assert "Nothing to be done" in snakemake(wd, "results/provenance.json", "-n", configfile=wd / "c.yaml",
                                             timeout=600, **RELIABILITY_RUN).stdout
