"""Activation density per layer: counts, fractions, top-k share, Gini against hand-computed values."""

import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actpat.analysis.density import TopK, combine, gini, layer_density, top_k_count
from actpat.engine.store import StoreError, write_store
from helpers.analysis_synth import store_from_layers

# Three layers, two matrices each (6 weights per layer, 18 in all):
#   layer 0: {1, 2, 3, 4} and {0, 5}   layer 1: all 6   layer 2: {0, 0, 0, 10} and {0, 0}
HAND = [
    {"a": [[1, 2], [3, 4]], "b": [[0, 5]]},
    {"a": [[6, 6], [6, 6]], "b": [[6, 6]]},
    {"a": [[0, 0], [0, 10]], "b": [[0, 0]]},
]


@pytest.fixture
def hand_store(tmp_path):
    return store_from_layers(tmp_path / "hand.zarr", HAND, domain="boolq", model="toy", n_samples=3)


def _rows(df, measure, param=None):
    sub = df.filter(pl.col("measure") == measure)
    if param is not None:
        sub = sub.filter(pl.col("param") == param)
    return sub.sort("layer")


def test_threshold_counts_and_fractions(hand_store):
    df = layer_density(hand_store, [2.5, 5.5], top_k_percent=20)
    # > 2.5: layer 0 {3, 4, 5}; layer 1 all six; layer 2 {10}
    r = _rows(df, "above_threshold", 2.5)
    assert r["count"].to_list() == [3, 6, 1]
    assert r["value"].to_list() == pytest.approx([3 / 6, 6 / 6, 1 / 6])
    r = _rows(df, "above_threshold", 5.5)
    assert r["count"].to_list() == [0, 6, 1]
    assert r["n_weights"].to_list() == [6, 6, 6]
    assert set(df["model"]) == {"toy"} and set(df["domain"]) == {"boolq"} and set(df["n_samples"]) == {3}


def test_top_k_share_with_ties(hand_store):
    # k = ceil(18 * 20 / 100) = 4; the 4th largest value is 6; values >= 6: six 6s (layer 1) and 10 (layer 2)
    df = layer_density(hand_store, [2.5], top_k_percent=20)
    r = _rows(df, "top_k_share")
    assert r["cut"].to_list() == [6.0, 6.0, 6.0]
    assert r["count"].to_list() == [0, 6, 1]
    assert r["value"].to_list() == pytest.approx([0, 6 / 7, 1 / 7])
    # k = ceil(0.9) = 1: only the 10
    r = _rows(layer_density(hand_store, [2.5], top_k_percent=5), "top_k_share")
    assert r["cut"][0] == 10.0 and r["count"].to_list() == [0, 0, 1] and r["value"].to_list() == [0, 0, 1]


def test_gini_and_mean(hand_store):
    df = layer_density(hand_store, [2.5], top_k_percent=20)
    # Gini = Σ_ij |x_i - x_j| / (2 n² μ): {0..5}: 70 / 180 = 7/18; all equal: 0; {0,0,0,0,0,10}: 100/120 = 5/6
    assert _rows(df, "gini")["value"].to_list() == pytest.approx([7 / 18, 0.0, 5 / 6])
    assert _rows(df, "mean")["value"].to_list() == pytest.approx([15 / 6, 6.0, 10 / 6])


def _gini_pairwise(x):
    x = np.asarray(x, np.float64)
    return np.abs(x[:, None] - x[None, :]).sum() / (2 * x.size ** 2 * x.mean())


@settings(max_examples=40, deadline=None)
# no subnormals: the pairwise reference divides by a mean that underflows to 0 (gini itself is right)
@given(st.lists(st.floats(0, 1e3, allow_nan=False, allow_subnormal=False), min_size=2, max_size=60)
       .filter(lambda v: sum(v) > 0))
def test_gini_matches_pairwise_definition(values):
    assert gini(np.array(values)) == pytest.approx(_gini_pairwise(values), abs=1e-9)


def test_gini_chunking_matches_unchunked(monkeypatch):
    import actpat.analysis.density as dens

    x = np.random.default_rng(0).exponential(size=1000)
    full = gini(x)
    monkeypatch.setattr(dens, "_GINI_CHUNK", 7)
    assert gini(x) == pytest.approx(full, rel=1e-12)
    assert full == pytest.approx(_gini_pairwise(x), rel=1e-9)


def test_gini_rejects_negative():
    with pytest.raises(ValueError, match="non-negative"):
        gini(np.array([1.0, -1.0]))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.integers(0, 20), min_size=1, max_size=30), min_size=1, max_size=6),
       st.integers(1, 40))
def test_topk_exact_against_full_sort(arrays, k):
    # Integer values force many ties; the streaming cut must equal the k-th largest of everything.
    allv = np.concatenate([np.array(a, np.float32) for a in arrays])
    k = min(k, allv.size)
    t = TopK(k)
    for i, a in enumerate(arrays):
        t.add(np.array(a, np.float32), layer=i)
    expect_cut = np.sort(allv)[::-1][k - 1]
    assert t.cut == expect_cut
    expect_counts = [int(np.sum(np.array(a) >= expect_cut)) for a in arrays]
    assert t.counts(len(arrays)).tolist() == expect_counts


def test_top_k_count():
    assert top_k_count(1000, 1.0) == 10
    assert top_k_count(18, 20) == 4
    assert top_k_count(5, 1.0) == 1
    assert top_k_count(106_007_040, 1.0) == 1_060_071
    with pytest.raises(ValueError, match="top_k_percent"):
        top_k_count(10, 0)


def test_random_store_against_numpy(tmp_path):
    rng = np.random.default_rng(3)
    layers = [{"q": rng.exponential(1e-4 * (i + 1), size=(40, 30)), "up": rng.exponential(1e-4, size=(70, 30))}
              for i in range(4)]
    path = store_from_layers(tmp_path / "r.zarr", layers)
    df = layer_density(path, [1e-4], top_k_percent=3)
    flat = [np.concatenate([np.asarray(m, np.float32).ravel() for m in L.values()]) for L in layers]
    allv = np.concatenate(flat)
    k = math.ceil(allv.size * 3 / 100)
    cut = np.sort(allv)[::-1][k - 1]
    counts = [int((f >= cut).sum()) for f in flat]
    assert _rows(df, "top_k_share")["count"].to_list() == counts
    assert _rows(df, "top_k_share")["value"].to_list() == pytest.approx([c / sum(counts) for c in counts])
    assert _rows(df, "above_threshold")["count"].to_list() == [int((f > 1e-4).sum()) for f in flat]
    assert _rows(df, "gini")["value"].to_list() == pytest.approx([_gini_pairwise(f) for f in flat], rel=1e-6)


def test_nonfinite_value_is_rejected(tmp_path):
    path = store_from_layers(tmp_path / "bad.zarr", [{"a": [[1.0, np.inf]]}, {"a": [[1.0, 2.0]]}])
    with pytest.raises(StoreError, match="non-finite value at flat index 1"):
        layer_density(path, [0.5])


def test_store_without_layer_attrs_is_rejected(tmp_path):
    path = write_store(tmp_path / "noattr.zarr", {"w": np.ones((2, 2))}, {"model": "m"})
    with pytest.raises(StoreError, match="'layers' and 'weights'"):
        layer_density(path, [0.5])


def test_combine_sorts_and_rejects_overlap(tmp_path):
    a = layer_density(store_from_layers(tmp_path / "a.zarr", HAND, domain="a"), [2.5])
    b = layer_density(store_from_layers(tmp_path / "b.zarr", HAND, domain="b"), [2.5])
    p = tmp_path / "b.parquet"
    b.write_parquet(p)
    out = combine([p, a])  # a Parquet path and a frame
    assert out.height == a.height + b.height and out["domain"].unique().sort().to_list() == ["a", "b"]
    assert out["domain"].to_list()[: a.height] == ["a"] * a.height  # sorted by domain
    with pytest.raises(ValueError, match="overlap"):
        combine([a, a])
