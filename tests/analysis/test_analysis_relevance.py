"""Relevance matrix, embedding similarity and Spearman on hand-built examples."""

import itertools

import numpy as np
import polars as pl
import pytest
from scipy.stats import spearmanr

from actpat.analysis.relevance import (embedding_similarity, head_texts, llmdcos_matrix, mean_embeddings,
                                       relevance_correlations, relevance_table, spearman)
from actpat.analysis.similarity import load_pairs
from helpers import REPO
from test_analysis_similarity import row


def three_domain_pairs(tmp_path):
    rows = [
        # layer 0 (shallow) and layer 1 (deep); values chosen so means are easy by hand
        row(0, "a", "1", "a", "2", 0.9), row(1, "a", "1", "a", "2", 0.7),
        row(0, "a", "1", "b", "1", 0.8), row(1, "a", "1", "b", "1", 0.2),
        row(0, "b", "2", "a", "2", 0.6), row(1, "b", "2", "a", "2", 0.4),  # reversed orientation
        row(0, "a", "1", "c", "1", 0.5), row(1, "a", "1", "c", "1", 0.1),
        row(0, "b", "1", "c", "1", 0.7), row(1, "b", "1", "c", "1", 0.3),
        row(0, "c", "1", "c", "2", 0.95), row(1, "c", "1", "c", "2", 0.85),
    ]
    p = tmp_path / "g.parquet"
    pl.DataFrame(rows).write_parquet(p)
    return load_pairs([p])


def cell(m, a, b, col="llmdcos"):
    return m.filter((pl.col("domain_a") == a) & (pl.col("domain_b") == b))[col][0]


def test_matrix_by_hand(tmp_path):
    pairs = three_domain_pairs(tmp_path)
    deep = llmdcos_matrix(pairs, (1, 1))
    assert cell(deep, "a", "b") == pytest.approx((0.2 + 0.4) / 2)
    assert cell(deep, "b", "a") == pytest.approx(0.3)  # symmetric
    assert cell(deep, "a", "a") == pytest.approx(0.7)
    assert cell(deep, "b", "c") == pytest.approx(0.3)
    assert deep.filter((pl.col("domain_a") == "b") & (pl.col("domain_b") == "b")).height == 0  # no b-b pairs
    both = llmdcos_matrix(pairs, (0, 1))  # pooled over pairs and layers
    assert cell(both, "a", "b") == pytest.approx((0.8 + 0.2 + 0.6 + 0.4) / 4)
    assert cell(both, "a", "b", "n_pairs") == 2 and cell(both, "a", "b", "n_values") == 4
    assert cell(both, "a", "c", "std") == pytest.approx(np.std([0.5, 0.1], ddof=1))


def test_embedding_similarity_against_direct_formulas():
    rng = np.random.default_rng(0)
    texts = {d: rng.normal(size=(n, 5)) for d, n in (("a", 4), ("b", 3), ("c", 5))}
    unit = {d: v / np.linalg.norm(v, axis=1, keepdims=True) for d, v in texts.items()}
    emb = pl.DataFrame({"domain": list(unit), "n_texts": [len(v) for v in unit.values()], "dim": 5,
                        "mean": [v.mean(0).tolist() for v in unit.values()]})
    sim = embedding_similarity(emb)
    for a, b in itertools.product(unit, repeat=2):
        ma, mb = unit[a].mean(0), unit[b].mean(0)
        assert cell(sim, a, b, "embedding_cos") == pytest.approx(ma @ mb / np.linalg.norm(ma) / np.linalg.norm(mb))
        # brute force: mean cosine over text pairs (distinct texts on the diagonal)
        cos = [x @ y for i, x in enumerate(unit[a]) for j, y in enumerate(unit[b]) if a != b or i != j]
        assert cell(sim, a, b, "embedding_pair_cos") == pytest.approx(np.mean(cos))


def test_spearman_hand_value_and_scipy():
    x = [0.1, 0.4, 0.2, 0.3, 0.6, 0.5]
    y = [1, 3, 2, 6, 5, 4]
    # ranks 1 4 2 3 6 5 vs 1 3 2 6 5 4: Σd² = 12, rho = 1 - 6·12/(6·35) = 23/35
    r = spearman(x, y)
    assert r["rho"] == pytest.approx(23 / 35)
    assert r["p"] == pytest.approx(spearmanr(x, y).pvalue)
    assert r["n"] == 6
    assert spearman([1, 2], [2, 1])["rho"] is None  # too few
    assert spearman([1, 1, 1], [1, 2, 3])["rho"] is None  # constant
    assert spearman([1, 2, np.nan, 3], [1, 2, 5, 3])["n"] == 3  # non-finite pairs are left out


def test_relevance_correlations_over_offdiagonal_pairs():
    domains = ["a", "b", "c", "d"]
    offd = list(itertools.combinations(domains, 2))  # 6 pairs, in this order
    deep = dict(zip(offd, [0.1, 0.4, 0.2, 0.3, 0.6, 0.5]))
    shallow = dict(zip(offd, [0.6, 0.5, 0.4, 0.3, 0.2, 0.1]))
    embc = dict(zip(offd, [1, 3, 2, 6, 5, 4]))
    rows = []
    for w, vals in (("deep", deep), ("shallow", shallow)):
        for a, b in itertools.product(domains, repeat=2):
            key = (min(a, b), max(a, b))
            v = 0.99 if a == b else vals[key]
            rows.append({"window": w, "domain_a": a, "domain_b": b, "llmdcos": v,
                         "embedding_cos": 1.0 if a == b else float(embc[key])})
    corr = relevance_correlations(pl.DataFrame(rows))
    assert corr["deep"]["rho"] == pytest.approx(23 / 35)  # the diagonal does not enter
    assert corr["shallow"]["rho"] == pytest.approx(spearmanr([0.6, 0.5, 0.4, 0.3, 0.2, 0.1], [1, 3, 2, 6, 5, 4])[0])
    assert corr["deep"]["n"] == 6


def test_relevance_table_joins_embeddings(tmp_path):
    pairs = three_domain_pairs(tmp_path)
    emb = pl.DataFrame({"domain": ["a", "b", "c"], "n_texts": [2, 2, 2], "dim": 2,
                        "mean": [[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]})
    t = relevance_table(pairs, {"deep": (1, 1), "shallow": (0, 0)}, emb, model="toy")
    d = t.filter(pl.col("window") == "deep")
    assert cell(d, "a", "b", "embedding_cos") == pytest.approx(0.6)
    assert cell(d, "a", "c", "embedding_cos") == pytest.approx(0.0)
    assert cell(t.filter(pl.col("window") == "shallow"), "a", "b") == pytest.approx(0.7)
    assert set(t["first"].to_list()) == {0, 1} and set(t["model"]) == {"toy"}
    no_emb = relevance_table(pairs, {"deep": (1, 1)}, None)
    assert no_emb["embedding_cos"].null_count() == no_emb.height


def test_head_texts(tmp_path):
    p = tmp_path / "t.parquet"
    pl.DataFrame({"id": ["1", "2", "3"], "text": ["x", "y", "z"]}).write_parquet(p)
    assert head_texts(p, 2) == ["x", "y"]
    assert head_texts(p, 10) == ["x", "y", "z"]
    pl.DataFrame({"id": ["1"], "text": [None]}, schema={"id": pl.String, "text": pl.String}).write_parquet(p)
    with pytest.raises(ValueError, match="null 'text'"):
        head_texts(p, 1)


MINILM = REPO / "resources" / "assets" / "minilm"


@pytest.mark.skipif(not (MINILM / "model" / "config.json").is_file() and not (MINILM / "config.json").is_file(),
                    reason="resources/assets/minilm is not fetched (snakemake resources/assets/minilm)")
def test_mean_embeddings_with_minilm():
    texts = {"code": ["def f(x): return x + 1", "for i in range(10): print(i)"],
             "cook": ["Boil the pasta for ten minutes.", "Add salt and olive oil to the sauce."],
             "code2": ["def g(y): return y * 2"]}
    emb = mean_embeddings(texts, MINILM)
    assert emb["n_texts"].to_list() == [2, 2, 1] and emb["dim"][0] == 384
    sim = embedding_similarity(emb)
    # two code snippets are closer to each other than to cooking instructions
    assert cell(sim, "code", "code2", "embedding_cos") > cell(sim, "code", "cook", "embedding_cos")
    from actpat.embeddings import embed_texts

    direct = embed_texts(texts["cook"], MINILM).astype(np.float64).mean(0)
    assert np.allclose(emb["mean"][1].to_numpy(), direct, atol=1e-6)
