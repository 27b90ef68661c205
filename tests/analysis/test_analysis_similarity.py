"""Similarity summaries and box-plot statistics on hand-made gram tables."""

import math

import polars as pl
import pytest

from actpat.analysis.similarity import (GramError, figure_pairs, load_pairs, n_layers_of, pair_layer_stats,
                                        select_pairs, window_means, windows)
from actpat.config import ConfigError


def row(layer, da, ia, db, ib, cos, model="toy"):
    # norms of 1 make dot == llmdcos, so every value below is the LLMDcos itself
    return {"model": model, "layer": layer, "id_a": ia, "domain_a": da, "id_b": ib, "domain_b": db,
            "dot": cos, "norm2_a": 1.0, "norm2_b": 1.0, "llmdcos": cos}


HAND_VALUES = [0.1, 0.2, 0.3, 0.4, 0.5, 0.9]


def hand_table():
    rows = []
    for k, v in enumerate(HAND_VALUES):
        # alternate the orientation: mmlu/boolq and boolq/mmlu are the same domain pair
        if k % 2:
            rows.append(row(0, "mmlu", f"m{k}", "boolq", f"b{k}", v))
        else:
            rows.append(row(0, "boolq", f"b{k}", "mmlu", f"m{k}", v))
    rows.append(row(0, "boolq", "b0", "boolq", "b1", 0.8))
    rows.append(row(0, "boolq", "b1", "boolq", "b2", 0.6))
    return rows


def write(tmp_path, name, rows):
    p = tmp_path / name
    pl.DataFrame(rows).write_parquet(p)
    return p


def test_box_statistics_by_hand(tmp_path):
    stats = pair_layer_stats(load_pairs([write(tmp_path, "g.parquet", hand_table())]))
    cross = stats.filter(pl.col("kind") == "cross").row(0, named=True)
    assert (cross["domain_a"], cross["domain_b"], cross["n"]) == ("boolq", "mmlu", 6)
    # sorted 0.1 0.2 0.3 0.4 0.5 0.9; linear quartiles at positions 1.25, 2.5, 3.75
    assert cross["q1"] == pytest.approx(0.225)
    assert cross["median"] == pytest.approx(0.35)
    assert cross["q3"] == pytest.approx(0.475)
    # IQR 0.25: fences -0.15 and 0.85 -> 0.9 is an outlier, whiskers at 0.1 and 0.5
    assert cross["whisker_lo"] == pytest.approx(0.1)
    assert cross["whisker_hi"] == pytest.approx(0.5)
    assert cross["outliers"] == pytest.approx([0.9])
    assert cross["mean"] == pytest.approx(0.4)
    assert cross["std"] == pytest.approx(math.sqrt(0.40 / 5))  # squared deviations sum to 0.40
    assert (cross["min"], cross["max"]) == pytest.approx((0.1, 0.9))
    within = stats.filter(pl.col("kind") == "within").row(0, named=True)
    assert (within["domain_a"], within["domain_b"], within["n"]) == ("boolq", "boolq", 2)
    assert within["mean"] == pytest.approx(0.7) and within["median"] == pytest.approx(0.7)
    assert within["outliers"] == []


def test_low_outlier_and_single_value(tmp_path):
    vals = [0.5, 0.52, 0.54, 0.56, 0.58, 0.0]
    rows = [row(0, "a", f"x{k}", "b", f"y{k}", v) for k, v in enumerate(vals)] + [row(0, "c", "1", "c", "2", 0.3)]
    stats = pair_layer_stats(load_pairs([write(tmp_path, "g.parquet", rows)]))
    ab = stats.filter(pl.col("domain_a") == "a").row(0, named=True)
    # sorted 0 .5 .52 .54 .56 .58: q1 = .5 + .25*.02 = .505, q3 = .54 + .75*.02 = .555, IQR .05
    assert (ab["q1"], ab["q3"]) == pytest.approx((0.505, 0.555))
    assert ab["whisker_lo"] == pytest.approx(0.5) and ab["whisker_hi"] == pytest.approx(0.58)
    assert ab["outliers"] == pytest.approx([0.0])
    cc = stats.filter(pl.col("domain_a") == "c").row(0, named=True)
    assert cc["n"] == 1 and cc["std"] is None and cc["whisker_lo"] == cc["whisker_hi"] == pytest.approx(0.3)


def test_duplicates_across_tables_count_once_and_bad_rows_dropped(tmp_path):
    panel = write(tmp_path, "panel.parquet", hand_table())
    # the same boolq pair in the domain's own gram table (reversed orientation), a new pair,
    # a pair with itself and a zero-norm pair (NaN)
    own = write(tmp_path, "own.parquet", [
        row(0, "boolq", "b1", "boolq", "b0", 0.8),
        row(0, "boolq", "b3", "boolq", "b4", 0.4),
        row(0, "boolq", "b5", "boolq", "b5", 1.0),
        {**row(0, "boolq", "b6", "boolq", "b7", float("nan")), "norm2_a": 0.0, "dot": 0.0},
    ])
    stats = pair_layer_stats(load_pairs([panel, own]))
    within = stats.filter(pl.col("kind") == "within").row(0, named=True)
    assert within["n"] == 3  # 0.8 (once), 0.6, 0.4
    assert within["mean"] == pytest.approx(0.6)


def test_corrupted_rows_are_rejected_with_file_and_row(tmp_path):
    bad = hand_table()
    bad[3] = {**bad[3], "dot": 0.99}
    p = write(tmp_path, "bad.parquet", bad)
    with pytest.raises(GramError, match=r"bad.parquet row 3: llmdcos 0.4 differs"):
        load_pairs([p])
    p2 = write(tmp_path, "miss.parquet", [{k: v for k, v in r.items() if k != "norm2_b"} for r in hand_table()])
    with pytest.raises(GramError, match=r"missing column\(s\) \['norm2_b'\]"):
        load_pairs([p2])
    with pytest.raises(GramError, match="does not exist"):
        load_pairs([tmp_path / "none.parquet"])


def test_figure_pairs_default_and_configured():
    nine = ["boolq", "c4", "gsm8k", "hellaswag", "humaneval", "mmlu", "piqa", "siqa", "wikitext"]
    assert figure_pairs(nine) == [("boolq", "boolq"), ("mmlu", "mmlu"), ("humaneval", "humaneval"),
                                  ("mmlu", "boolq"), ("humaneval", "boolq"), ("mmlu", "humaneval")]
    # without the paper's domains: topped up to 4 panels, within-domain pairs first
    assert figure_pairs(["x", "y", "z"]) == [("x", "x"), ("y", "y"), ("z", "z"), ("x", "y")]
    assert figure_pairs(["boolq", "y"]) == [("boolq", "boolq"), ("y", "y"), ("boolq", "y")]
    assert figure_pairs(nine, [["c4", "mmlu"]]) == [("c4", "mmlu")]
    with pytest.raises(ValueError, match=r"similarity.pairs\[0\]: unknown domain 'nope'"):
        figure_pairs(nine, [["nope", "mmlu"]])


def test_select_pairs_labels_in_given_order(tmp_path):
    stats = pair_layer_stats(load_pairs([write(tmp_path, "g.parquet", hand_table())]))
    sel = select_pairs(stats, [("mmlu", "boolq"), ("boolq", "boolq")])
    assert sel["pair"].to_list() == ["mmlu–boolq", "boolq–boolq"]
    assert sel["pair_order"].to_list() == [0, 1]
    with pytest.raises(ValueError, match="no LLMDcos pairs for mmlu–mmlu"):
        select_pairs(stats, [("mmlu", "mmlu")])


def test_window_means_and_windows(tmp_path):
    rows = [row(layer, "a", "1", "b", "2", v) for layer, v in enumerate([0.9, 0.8, 0.7, 0.2, 0.1, 0.3])]
    pairs = load_pairs([write(tmp_path, "g.parquet", rows)])
    stats = pair_layer_stats(pairs)
    assert n_layers_of(pairs) == 6
    w = window_means(stats, (0, 1)).row(0, named=True)
    assert w["window_mean"] == pytest.approx(0.85) and w["n_layers"] == 2
    assert window_means(stats, (3, 5))["window_mean"][0] == pytest.approx(0.2)
    # paper rules: deep L/2..L-3, shallow first 12/32 of the layers
    assert windows(32) == {"deep": (16, 29), "shallow": (0, 11)}
    assert windows(30) == {"deep": (15, 27), "shallow": (0, 10)}
    assert windows(30, deep=[20, 25]) == {"deep": (20, 25), "shallow": (0, 10)}
    with pytest.raises(ConfigError, match="outside the model's 6 layers"):
        windows(6, deep=[3, 9])
