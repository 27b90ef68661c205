"""Scoring jobs end to end on a tiny saved model: shards merge exactly, stores keep the contract."""

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from actpat.cli import main as cli
from actpat.engine import jobs
from actpat.engine.reference import batch1_activations, layer_vectors, llmdcos
from actpat.engine.scorer import ActivationScorer, ScoreOptions
from actpat.analysis.density import layer_density
from actpat.engine.store import ScoreStore, StoreError, write_store

from helpers.tiny import tiny_llama, tiny_tokenizer

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Question: is the sky blue?\nAnswer:",
    "def add(a, b):\n    return a + b",
    "Sparse activation in deep layers",
    "A. red B. green C. blue D. yellow Answer:",
    "Parameters in shallow layers are activated by many inputs.",
]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    d = tmp_path_factory.mktemp("model")
    model = tiny_llama(torch.float32)
    model.save_pretrained(d / "m")
    tiny_tokenizer().save_pretrained(d / "m")
    for i, dom in enumerate(("x", "y")):
        pl.DataFrame({"id": [f"{dom}{k}" for k in range(6)], "domain": dom,
                      "text": TEXTS[i:] + TEXTS[:i]}).write_parquet(d / f"{dom}.parquet")
    return d


LOAD = {"dtype": "float32", "device": "cpu"}


def _shard(saved, rows, tag, opts=None, batch_size=2):
    out = saved / tag
    jobs.score_domain_shard(model_name="tiny", load={"load_from": str(saved / "m"), **LOAD}, table=saved / "x.parquet",
                            rows=rows, opts=opts or ScoreOptions(thresholds=(1e-3,)), batch_size=batch_size,
                            out_store=out / "s.zarr", out_stats=out / "s.stats.parquet",
                            out_gram=out / "s.gram.parquet")
    return out


def test_shards_merge_to_the_single_run_and_the_reference(saved):
    a = _shard(saved, range(0, 4), "a")
    b = _shard(saved, range(4, 6), "b")
    whole = _shard(saved, range(0, 6), "whole", batch_size=6)
    jobs.merge_domain([str(a / "s.zarr"), str(b / "s.zarr")], [str(a / "s.stats.parquet"), str(b / "s.stats.parquet")],
                      [str(a / "s.gram.parquet"), str(b / "s.gram.parquet")], out_store=str(saved / "m.zarr"),
                      out_stats=str(saved / "m.stats.parquet"), out_gram=str(saved / "m.gram.parquet"))
    merged = ScoreStore(saved / "m.zarr")
    single = ScoreStore(whole / "s.zarr")
    assert merged.attrs["n_samples"] == 6 and merged.attrs["kind"] == "mean" and merged.attrs["shards"] == 2
    assert single.attrs["kind"] == "sum"
    model, tok = jobs.load_for_job({"load_from": str(saved / "m"), **LOAD})
    model64 = model.to(torch.float64)
    ws = ActivationScorer(model64, tok).weights
    ref = [batch1_activations(model64, tok, t, ws) for t in TEXTS]
    for w in ws:
        m = merged.read(w.name)
        assert m.shape == tuple(w.weight.shape)
        np.testing.assert_allclose(m, single.read(w.name) / 6, rtol=1e-5, atol=1e-9)
        want = torch.stack([r[w.name] for r in ref]).mean(0).numpy()
        assert np.abs(m - want).max() / np.abs(want).max() < 1e-5
    # per-layer counts of the mean against the reference mean
    L = merged.attrs["layers"]
    counts = layer_density(saved / "m.zarr", [1e-4]).filter(pl.col("measure") == "above_threshold").sort("layer")[
        "count"].to_numpy()
    want = np.zeros(L, dtype=np.int64)
    for w in ws:
        mean = torch.stack([r[w.name] for r in ref]).mean(0)
        want[w.layer] += int((mean > 1e-4).sum())
    np.testing.assert_array_equal(counts, want)
    stats = pl.read_parquet(saved / "m.stats.parquet")
    assert set(stats.columns) == {"model", "domain", "id", "layer", "matrix", "statistic", "threshold", "value"}
    assert stats.filter(pl.col("statistic") == "sum")["id"].n_unique() == 6
    g = pl.read_parquet(saved / "m.gram.parquet")
    assert g["llmdcos"].is_between(0, 1 + 1e-9).all()
    # every within-shard pair: LLMDcos equals the reference's
    vecs = {f"x{i}": layer_vectors(r, ws, L) for i, r in enumerate(ref)}
    for row in g.filter(pl.col("layer") == 1).iter_rows(named=True):
        want = llmdcos(vecs[row["id_a"]][1], vecs[row["id_b"]][1])
        assert abs(row["llmdcos"] - want) < 1e-5


def test_cli_score_writes_a_mean_store(saved):
    out = saved / "cli" / "x.zarr"
    threads = torch.get_num_threads()
    try:
        rc = cli(["score", "--model", str(saved / "m"), "--samples", str(saved / "x.parquet"), "-n", "6",
                  "--batch-size", "3", "--out", str(out), "--threshold", "1e-3", "--threads", "1"])
    finally:
        torch.set_num_threads(threads)  # the CLI sets the process-wide thread count
    assert rc == 0
    st = ScoreStore(out)
    assert st.attrs["kind"] == "mean" and st.attrs["n_samples"] == 6
    assert Path(str(out).replace(".zarr", ".stats.parquet")).is_file()
    assert not any(p.name.startswith(".x.shard") for p in out.parent.iterdir())


def test_panel_has_every_domain_pair(saved):
    res = jobs.score_panel(model_name="tiny", load={"load_from": str(saved / "m"), **LOAD},
                           tables={"x": str(saved / "x.parquet"), "y": str(saved / "y.parquet")}, rows=range(0, 4),
                           per_batch=2, opts=ScoreOptions(), out_gram=saved / "p.gram.parquet",
                           out_stats=saved / "p.stats.parquet")
    g = pl.read_parquet(saved / "p.gram.parquet")
    kinds = {tuple(sorted(k)) for k in g.select("domain_a", "domain_b").unique().iter_rows()}
    assert kinds == {("x", "x"), ("x", "y"), ("y", "y")}
    assert res.passes == 8 and not res.sums


def test_pairs_with_shared_texts_and_self_pairs(saved):
    pairs = pl.DataFrame({"id": ["p0", "p1", "p2", "p3"], "text_a": [TEXTS[0], TEXTS[0], TEXTS[2], TEXTS[3]],
                          "text_b": [TEXTS[1], TEXTS[2], TEXTS[1], TEXTS[3]], "score": [0.1, 0.2, 0.3, 1.0],
                          "source": "test"})
    pairs.write_parquet(saved / "pairs.parquet")
    jobs.score_pairs(model_name="tiny", load={"load_from": str(saved / "m"), **LOAD},
                     pairs_table=saved / "pairs.parquet",
                     opts=ScoreOptions(), block_size=2, out_llmdcos=saved / "l.parquet", out_hidden=saved / "h.parquet")
    got = pl.read_parquet(saved / "l.parquet")
    model, tok = jobs.load_for_job({"load_from": str(saved / "m"), **LOAD})
    model = model.to(torch.float64)
    ws = ActivationScorer(model, tok).weights
    L = 3
    vec = {t: layer_vectors(batch1_activations(model, tok, t, ws), ws, L) for t in TEXTS[:4]}
    for pid, a, b in zip(pairs["id"], pairs["text_a"], pairs["text_b"]):
        for layer in range(L):
            v = got.filter((pl.col("id") == pid) & (pl.col("layer") == layer))["llmdcos"].item()
            assert abs(v - llmdcos(vec[a][layer], vec[b][layer])) < 1e-5, (pid, layer)
    h = pl.read_parquet(saved / "h.parquet")
    assert h.filter(pl.col("id") == "p3")["hidden_cos"].item() == pytest.approx(1.0)


def test_interrupted_store_write_leaves_nothing(tmp_path):
    class Boom(dict):
        def items(self):
            yield "a", np.ones((2, 2))
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_store(tmp_path / "s.zarr", Boom(), {"layers": 1})
    assert list(tmp_path.iterdir()) == []


def test_corrupted_chunk_is_detected(tmp_path):
    write_store(tmp_path / "s.zarr", {"w": np.random.rand(64, 64)}, {"layers": 1})
    chunk = next(p for p in (tmp_path / "s.zarr" / "w").rglob("*") if p.is_file() and p.name != "zarr.json")
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=r"s\.zarr.*'w'.*corrupted"):
        ScoreStore(tmp_path / "s.zarr").read("w")


@pytest.mark.parametrize("storage", ["float16", "bfloat16"])
def test_half_precision_stores_read_back_as_the_rounded_means(tmp_path, storage):
    """A mean store kept in float16 / bfloat16 reads back as float32 equal to torch's rounding of the
    float32 means; a missing shard file still reads as a detected NaN."""
    rng = np.random.default_rng(0)
    means = {"a": (10 ** rng.uniform(-9, 1, (70, 33))).astype(np.float32), "b": rng.random((5, 4), dtype=np.float32)}
    means["a"][0, :3] = [0.0, 1e-3, 3.0e38]
    if storage == "float16":
        with pytest.raises(StoreError, match="float16 cannot keep a mean activation of 3e[+]38"):
            write_store(tmp_path / "s.zarr", means, {"layers": 1}, storage)
        assert not (tmp_path / "s.zarr").exists()
        means["a"][0, 2] = 6e4
    path = write_store(tmp_path / "s.zarr", means, {"layers": 1}, storage)
    st = ScoreStore(path)
    assert st.attrs["storage_dtype"] == storage
    for name, m in means.items():
        want = torch.from_numpy(m).to(getattr(torch, storage)).float().numpy()
        got = st.read(name)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want, err_msg=name)
    for f in (path / "b").rglob("*"):
        if f.is_file() and f.name != "zarr.json":
            f.unlink()
    with pytest.raises(StoreError, match="non-finite"):
        st.read("b")
