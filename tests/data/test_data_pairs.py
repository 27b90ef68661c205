"""Sentence-pair sets: Lee corpus, word pairs, STS-B/SICK hub formats, local files, selection."""

import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from actpat.data import pairs as P  # noqa: E402
from actpat.data.sources import DataError  # noqa: E402
from actpat.data.sources.gensim import read_lee  # noqa: E402
from actpat.data.tables import write_parquet  # noqa: E402
from helpers import TESTS  # noqa: E402
from helpers.fetched import ASSETS, needs_assets  # noqa: E402

HUB = TESTS / "fixtures" / "hub"


def local(path, **kw):
    return {"source": "local", "path": str(path), "pairs": 256, "selection": "first", **kw}


@needs_assets("gensim-testdata")
def test_lee_has_1225_pairs_with_hand_checked_scores():
    pairs = read_lee()
    assert len(pairs) == 1225 == 50 * 49 // 2
    by = {p.key: p for p in pairs}
    # Read by eye from similarities0-1.txt: row 0 = "1 0.3 0.24 0.2 0.3 0.5 ...",
    # row 2 = "0 0 1 0.36 0.46 0.26 0.46 0.34 0.22 0.46 0.36 0.46 0.36 0.34 0.24 0.68 ..."
    assert by["00-01"].score == 0.3 and by["00-05"].score == 0.5
    assert by["02-03"].score == 0.36 and by["02-15"].score == 0.68
    docs = (ASSETS / "gensim-testdata" / "lee.cor").read_bytes().decode("latin-1").splitlines()
    assert by["02-15"].text_a == docs[2] and by["02-15"].text_b == docs[15]
    assert by["00-01"].text_a.startswith("The national executive of the strife-torn Democrats")
    assert by["02-15"].source == "pypi:gensim==4.4.0:similarities0-1.txt#2,15"


@needs_assets("gensim-testdata")
def test_lee_table_seeded_and_first(tmp_path):
    b = P.build_pairset("lee", {"source": "gensim_lee", "pairs": 256, "selection": "seeded"}, {"seed": 1})
    df = b.df
    assert df.height == 256 and df["score"].dtype.is_float() and df["id"].n_unique() == 256
    assert b.metadata["actpat.selection"] == "seeded" and b.metadata["actpat.pairs_available"] == "1225"
    again = P.build_pair_table("lee", {"source": "gensim_lee", "pairs": 256, "selection": "seeded"}, {"seed": 1})
    assert df.equals(again)
    other = P.build_pair_table("lee", {"source": "gensim_lee", "pairs": 256, "selection": "seeded"}, {"seed": 2})
    assert set(other["id"]) != set(df["id"])
    first = P.build_pair_table("lee", {"source": "gensim_lee", "pairs": 60, "selection": "first"}, {"seed": 1})
    assert first["id"].to_list()[:50] == [f"lee/00-{j:02d}" for j in range(1, 50)] + ["lee/01-02"]
    write_parquet(df, tmp_path / "a.parquet", b.metadata)
    write_parquet(again, tmp_path / "b.parquet", b.metadata)
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()


@needs_assets("gensim-testdata")
def test_word_pairs():
    sl = P.read_pairs({"source": "gensim_simlex"})
    ws = P.read_pairs({"source": "gensim_wordsim"})
    assert len(sl) == 999 and len(ws) == 353
    assert (sl[0].text_a, sl[0].text_b, sl[0].score) == ("old", "new", 1.58)  # first data line of simlex999.txt
    assert (ws[2].text_a, ws[2].text_b, ws[2].score) == ("tiger", "tiger", 10.0)


@pytest.mark.parametrize("fname,first", [
    ("stsb_st.jsonl", ("A dog runs in the park.", "A dog is running in a park.", 0.92)),
    ("stsb_setfit.jsonl", ("A cat sleeps on the sofa.", "A cat is asleep on a couch.", 4.6)),
    ("sick.jsonl", ("A woman is slicing an onion.", "Someone is cutting an onion.", 4.7)),
    ("pairs.csv", ("A bird sings.", "A bird is singing.", 4.8)),
])
def test_local_pair_shapes(fname, first):
    df = P.build_pair_table("p", local(HUB / fname), {"seed": 1})
    r = df.row(0, named=True)
    assert (r["text_a"], r["text_b"], r["score"]) == first
    assert r["source"] == f"file:{HUB / fname}#0"


def test_format_restricts_shapes():
    with pytest.raises(DataError, match="format 'sick' expects sentence_A/sentence_B/relatedness_score"):
        P.read_pairs(local(HUB / "stsb_st.jsonl", format="sick"))
    assert len(P.read_pairs(local(HUB / "stsb_setfit.jsonl", format="stsb"))) == 2


def test_hub_stsb_and_sick(monkeypatch):
    import datasets

    calls = []

    def fake(path, name=None, split=None, **kw):
        calls.append((path, name, split))
        f = {"SetFit/stsb": "stsb_setfit.jsonl", "sentence-transformers/stsb": "stsb_st.jsonl",
             "sick": "sick.jsonl"}[path]
        return datasets.Dataset.from_list([json.loads(x) for x in (HUB / f).read_text().splitlines()])

    monkeypatch.setattr(datasets, "load_dataset", fake)
    a = P.build_pair_table("stsb", {"source": "hub", "format": "stsb", "path": "SetFit/stsb", "split": "validation",
                                    "pairs": 256, "selection": "first"}, {"seed": 1})
    b = P.build_pair_table("st", {"source": "hub", "format": "stsb", "path": "sentence-transformers/stsb",
                                  "split": "validation", "pairs": 2, "selection": "first"}, {"seed": 1})
    c = P.build_pair_table("sick", {"source": "hub", "format": "sick", "path": "sick", "split": "validation",
                                    "pairs": 256, "selection": "seeded"}, {"seed": 1})
    assert calls == [("SetFit/stsb", None, "validation"), ("sentence-transformers/stsb", None, "validation"),
                     ("sick", None, "validation")]
    assert a["score"].to_list() == [4.6, 0.8] and a["source"][1] == "hub:SetFit/stsb/validation#1"
    assert b["score"].to_list() == [0.92, 0.0]  # the first 2 in file order
    assert c["id"].to_list() == ["sick/11", "sick/12"]  # the file's own id column
    assert c["score"].to_list() == [4.7, 1.1]


def test_non_numeric_score_names_the_row(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("text_a,text_b,score\nA,B,1.0\nC,D,high\n")
    with pytest.raises(DataError, match=r"file:.*bad\.csv#1: column 'score' = 'high' is not a number"):
        P.read_pairs(local(p))
    p.write_text("sentence1,sentence2,score\nA,B,nan\n")
    with pytest.raises(DataError, match=r"bad\.csv#0: column 'score' = 'nan' is not a number"):
        P.read_pairs(local(p))


def test_empty_text_and_missing_columns(tmp_path):
    p = tmp_path / "e.jsonl"
    p.write_text('{"text_a": "x", "text_b": " ", "score": 1}\n')
    with pytest.raises(DataError, match=r"e\.jsonl#0: column 'text_b' is empty"):
        P.read_pairs(local(p))
    p.write_text('{"a": "x", "b": "y", "s": 1}\n')
    with pytest.raises(DataError, match=r"missing columns.*text_a/text_b/score"):
        P.read_pairs(local(p))


def test_selection():
    pairs = [P.Pair(str(i), f"a{i}", f"b{i}", float(i), f"x#{i}") for i in range(100)]
    assert [p.key for p in P.select_pairs(pairs, 5, "first", 1)] == ["0", "1", "2", "3", "4"]
    s1 = P.select_pairs(pairs, 10, "seeded", 1)
    assert [p.key for p in s1] == sorted((p.key for p in s1), key=int)  # kept in file order
    # which pairs are chosen depends on (seed, key), not on the file order
    assert {p.key for p in s1} == {p.key for p in P.select_pairs(list(reversed(pairs)), 10, "seeded", 1)}
    assert {p.key for p in s1} != {p.key for p in P.select_pairs(pairs, 10, "seeded", 2)}
    assert len(P.select_pairs(pairs, 500, "seeded", 1)) == 100
