"""Findings verdicts on constructed inputs, both ways, and the paper-side numbers."""

import itertools
import json

import numpy as np
import polars as pl
import pytest

from actpat.analysis import findings as F
from actpat.analysis import paper_values as pv

L = 12  # mid = 0-indexed 2..5, deep half = 6..11, shallow (paper rule) 0..3, deep (paper rule) 6..9
SHALLOW, DEEP = (0, 3), (6, 9)
HUMP = [0.1, 0.5, 0.8, 0.9, 0.9, 0.8, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]
RISING = [0.1 * i for i in range(L)]


def density(profiles: dict[str, list[float]], topk: dict[str, list[float]] | None = None, gamma=1e-5):
    rows = []
    for d, v in profiles.items():
        for layer, x in enumerate(v):
            rows.append({"model": "toy", "domain": d, "n_samples": 4, "layer": layer, "n_weights": 100,
                         "measure": "above_threshold", "param": gamma, "cut": gamma, "count": int(round(x * 100)),
                         "value": x})
    for d, v in (topk or {}).items():
        for layer, x in enumerate(v):
            rows.append({"model": "toy", "domain": d, "n_samples": 4, "layer": layer, "n_weights": 100,
                         "measure": "top_k_share", "param": 1.0, "cut": 0.5, "count": 1, "value": x})
    return pl.DataFrame(rows)


def share(v):
    v = np.asarray(v, float)
    return (v / v.sum()).tolist()


def similarity(profiles: dict[tuple[str, str], list[float]]):
    rows = []
    for (a, b), v in profiles.items():
        for layer, x in enumerate(v):
            rows.append({"model": "toy", "domain_a": a, "domain_b": b, "kind": "within" if a == b else "cross",
                         "layer": layer, "n": 4, "mean": x})
    return pl.DataFrame(rows)


def relevance(deep: dict, shallow: dict, emb: dict | None):
    domains = sorted({d for k in deep for d in k})
    rows = []
    for w, vals, (lo, hi) in (("deep", deep, DEEP), ("shallow", shallow, SHALLOW)):
        for a, b in itertools.product(domains, repeat=2):
            key = (min(a, b), max(a, b))
            rows.append({"model": "toy", "window": w, "first": lo, "last": hi, "domain_a": a, "domain_b": b,
                         "llmdcos": vals[key], "embedding_cos": None if emb is None else (1.0 if a == b else emb[key])})
    return pl.DataFrame(rows, schema_overrides={"embedding_cos": pl.Float64})


def by_id(items):
    return {f["id"]: f for f in items}


# ----------------------------------------------------------------------------- F1


def test_f1_holds_and_fails():
    ok = by_id(F.finding1(density({"a": HUMP, "b": HUMP}, {"a": share(HUMP), "b": share(HUMP)}), 1e-5))
    assert ok["F1"]["verdict"] == "holds" and ok["F1 (top-k)"]["verdict"] == "holds"
    assert ok["F1"]["ours"]["mid"] == pytest.approx(np.mean(HUMP[2:6]))
    assert ok["F1"]["ours"]["deep_half"] == pytest.approx(np.mean(HUMP[6:]))
    assert ok["F1"]["ours"]["first"] == pytest.approx(0.1)
    bad = by_id(F.finding1(density({"a": HUMP, "b": RISING}, {"a": share(HUMP), "b": share(RISING)}), 1e-5))
    assert bad["F1"]["verdict"] == "does not hold"  # one domain out of two breaks the shape
    assert bad["F1"]["ours"]["domains_holding"] == 1 and bad["F1"]["ours"]["domains"] == 2
    # the mid layers must beat layer 1 too, not only the deep half
    high_first = [0.95] + HUMP[1:]
    assert F.finding1(density({"a": high_first}), 1e-5)[0]["verdict"] == "does not hold"


def test_f1_degenerate_threshold_is_not_measured():
    res = by_id(F.finding1(density({"a": [0.0] * L, "b": HUMP}, {"a": share(HUMP), "b": share(HUMP)}), 1e-5))
    assert res["F1"]["verdict"] == "not measured" and "marks no weight or every weight" in res["F1"]["detail"]
    assert res["F1 (top-k)"]["verdict"] == "holds"


def test_f1_threshold_is_selected():
    df = pl.concat([density({"a": HUMP}, gamma=1e-5), density({"a": RISING}, gamma=1e-4)])
    assert F.finding1(df, 1e-5)[0]["verdict"] == "holds"
    assert F.finding1(df, 1e-4)[0]["verdict"] == "does not hold"


def test_f1_paper_numbers():
    counts = np.array(pv.C4_COUNTS, float) / 202_375_168
    f = F.finding1(density({"a": HUMP}), 1e-5)[0]
    assert f["paper"]["first"] == pytest.approx(counts[0])
    assert f["paper"]["mid"] == pytest.approx(counts[2:16].mean())  # 1-indexed layers 3..16
    assert f["paper"]["deep_half"] == pytest.approx(counts[16:].mean())
    assert f["paper_verdict"] == "holds"


def test_f1b_text_vs_task():
    deep_heavy = share([1, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3])
    shallow_heavy = share(HUMP)
    df = density({}, {"c4": deep_heavy, "boolq": shallow_heavy})
    f = F.finding1b(df, ["c4"])
    assert f["verdict"] == "holds"
    assert f["ours"]["text_deep_share"] == pytest.approx(sum(deep_heavy[6:]))
    assert f["ours"]["task_deep_share"] == pytest.approx(sum(shallow_heavy[6:]))
    assert F.finding1b(df, ["boolq"])["verdict"] == "does not hold"
    assert F.finding1b(df, [])["verdict"] == "not measured"


# ----------------------------------------------------------------------------- F2

DROP = [0.9, 0.85, 0.8, 0.8, 0.6, 0.5, 0.4, 0.35, 0.3, 0.3, 0.4, 0.45]
FLAT = [0.8] * L


def test_f2_family_holds():
    sim = similarity({("a", "b"): DROP, ("a", "a"): FLAT, ("b", "b"): FLAT})
    f = by_id(F.finding2(sim, SHALLOW, DEEP))
    assert f["F2"]["verdict"] == "holds"
    assert f["F2"]["ours"]["shallow"] == pytest.approx(np.mean(DROP[0:4]))
    assert f["F2"]["ours"]["deep"] == pytest.approx(np.mean(DROP[6:10]))
    assert f["F2b"]["verdict"] == "holds" and f["F2b"]["ours"]["layer2_min"] == pytest.approx(0.85)
    assert f["F2c"]["verdict"] == "holds"
    assert f["F2c"]["ours"]["drop_within"] == pytest.approx(0.0)


def test_f2_family_fails():
    rising = DROP[::-1]  # shallow mean 0.3625 < deep mean 0.675; layer 2 = 0.4 below the deep mean
    spike2 = list(rising)
    spike2[1] = 0.95  # layer 2 above the deep mean, but the pair still rises overall
    sim = similarity({("a", "b"): rising, ("a", "c"): spike2, ("a", "a"): DROP})
    f = by_id(F.finding2(sim, SHALLOW, DEEP))
    assert f["F2"]["ours"]["shallow"] == pytest.approx(np.mean([np.mean(rising[0:4]), np.mean(spike2[0:4])]))
    assert f["F2"]["ours"]["deep"] == pytest.approx(np.mean(rising[6:10]))
    assert f["F2"]["verdict"] == "does not hold"
    assert f["F2b"]["verdict"] == "does not hold"
    assert (f["F2b"]["ours"]["pairs_above_deep"], f["F2b"]["ours"]["pairs"]) == (1, 2)
    assert f["F2c"]["verdict"] == "does not hold"  # the within pair drops, the cross pairs rise


def test_f2_without_cross_pairs_is_not_measured():
    f = by_id(F.finding2(similarity({("a", "a"): FLAT}), SHALLOW, DEEP))
    assert f["F2"]["verdict"] == f["F2b"]["verdict"] == f["F2c"]["verdict"] == "not measured"


def test_f2_paper_numbers():
    f = by_id(F.finding2(similarity({("a", "b"): DROP}), SHALLOW, DEEP))
    cross = [v for k, v in pv.LLMDCOS_GRADW.items() if k[0] != k[1]]
    s = np.mean([np.nanmean(v[0:12]) for v in cross])
    d = np.mean([np.nanmean(v[16:30]) for v in cross])
    assert f["F2"]["paper"]["shallow"] == pytest.approx(s) and f["F2"]["paper"]["deep"] == pytest.approx(d)
    assert f["F2"]["paper_verdict"] == "holds"


# ----------------------------------------------------------------------------- F3

DOMS = ["a", "b", "c", "d"]
OFF = list(itertools.combinations(DOMS, 2))


def test_f3_holds_and_fails():
    emb = dict(zip(OFF, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]))
    deep = {**dict(zip(OFF, [0.11, 0.21, 0.31, 0.41, 0.51, 0.61])), **{(d, d): 0.9 for d in DOMS}}
    shallow = {**dict(zip(OFF, [0.8, 0.7, 0.9, 0.75, 0.85, 0.7])), **{(d, d): 0.9 for d in DOMS}}
    f = by_id(F.finding3(relevance(deep, shallow, emb)))
    assert f["F3"]["ours"]["rho_deep"] == pytest.approx(1.0) and f["F3"]["verdict"] == "holds"
    assert f["F3b"]["verdict"] == "holds"
    assert f["F3b"]["ours"]["diagonal"] == pytest.approx(0.9)
    assert f["F3b"]["ours"]["off_diagonal"] == pytest.approx(np.mean([0.11, 0.21, 0.31, 0.41, 0.51, 0.61]))
    assert f["F3b"]["ours"]["rows_peaking_on_diagonal"] == 4
    # swap the windows: deep no longer tracks the embeddings, and its diagonal is below the off-diagonal
    deep2 = {**dict(zip(OFF, [0.8, 0.7, 0.9, 0.75, 0.85, 0.7])), **{(d, d): 0.5 for d in DOMS}}
    f = by_id(F.finding3(relevance(deep2, deep, emb)))
    assert f["F3"]["verdict"] == "does not hold" and f["F3b"]["verdict"] == "does not hold"
    assert f["F3b"]["ours"]["rows_peaking_on_diagonal"] == 0


def test_f3_without_embeddings_is_not_measured():
    deep = {**dict(zip(OFF, [0.1] * 6)), **{(d, d): 0.9 for d in DOMS}}
    f = by_id(F.finding3(relevance(deep, deep, None)))
    assert f["F3"]["verdict"] == "not measured" and "embedding_asset" in f["F3"]["detail"]
    assert f["F3b"]["verdict"] == "holds"


def test_f3b_paper_numbers():
    f = by_id(F.finding3(relevance({**dict(zip(OFF, [0.1] * 6)), **{(d, d): 0.9 for d in DOMS}},
                                   {**dict(zip(OFF, [0.1] * 6)), **{(d, d): 0.9 for d in DOMS}}, None)))
    m = np.array(pv.FIG6)
    assert f["F3b"]["paper"]["diagonal"] == pytest.approx(4.60 / 9)
    assert f["F3b"]["paper"]["off_diagonal"] == pytest.approx(m[np.triu_indices(9, 1)].mean())
    # c4 (0.14 < 0.17) and wikitext2 (0.16 < 0.17) peak off the diagonal; the other 7 rows on it
    assert f["F3b"]["paper"]["rows_peaking_on_diagonal"] == 7
    assert f["F3b"]["paper_verdict"] == "holds"


# ----------------------------------------------------------------------------- evaluate


def test_evaluate_is_json_and_checks_depths():
    dens = density({"a": HUMP, "c4": HUMP}, {"a": share(HUMP), "c4": share(RISING)})
    sim = similarity({("a", "c4"): DROP, ("a", "a"): FLAT})
    rel = relevance({("a", "a"): 0.9, ("a", "c4"): 0.2, ("c4", "c4"): 0.8},
                    {("a", "a"): 0.9, ("a", "c4"): 0.8, ("c4", "c4"): 0.9}, {("a", "c4"): 0.3})
    out = F.measure(dens, sim, rel, threshold=1e-5, shallow=SHALLOW, deep=DEEP, text_domains=["c4"], model="toy")
    text = json.dumps(out, allow_nan=False)  # NaN-free
    assert json.loads(text)["n_layers"] == L
    ids = [f["id"] for f in out["findings"]]
    assert ids == ["F1", "F1 (top-k)", "F1b", "F2", "F2b", "F2c", "F3", "F3b"]
    assert out["windows"]["mid"] == [2, 5] and out["windows"]["deep_half"] == [6, 11]
    from actpat.report.analysis import findings_table

    table = findings_table(out)
    assert len(table["rows"]) == len(ids) and all(len(r) == len(table["columns"]) for r in table["rows"])
    with pytest.raises(ValueError, match="different models"):
        F.measure(dens, similarity({("a", "c4"): DROP[:10]}), rel, threshold=1e-5, shallow=SHALLOW, deep=DEEP)
