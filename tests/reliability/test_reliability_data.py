"""Bad data: rejected with the row named, or handled by a documented rule and counted, never dropped silently.

Every case goes through the entry points the rules call: ``build_domain`` (rule domain_table),
``build_pairset`` (rule pairset), ``score_domain_shard`` (rule score_shard), and once through
Snakemake itself.  Property-based fuzzing feeds random records and random bytes to the templates
and the local-file readers: the result is a valid table or a DataError, never another exception.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actpat.data.pairs import build_pairset
from actpat.data.sources.rows import pairs_from_rows
from actpat.data.sources import DataError, read_local_rows
from actpat.data.tables import build_domain, table_metadata, validate_table, write_parquet
from actpat.engine import jobs
from actpat.engine.scorer import ScoreOptions
from actpat.engine.store import ScoreStore

from helpers.reliability import RELIABILITY_RUN, base_config, make_workdir, write_config, write_jsonl
from helpers.smkrun import snakemake
from helpers.tiny import save_tiny_model

DATA = {"seed": 1, "pool": 50, "window_words": 8, "heldout_fraction": 0.2}
MMLU = {"question": "What is 2 + 2?", "subject": "elementary_mathematics", "choices": ["1", "2", "3", "4"], "answer": 3}
SIQA = {"context": "Tracy went to the shop.", "question": "Why?", "answerA": "to buy", "answerB": "to sell",
        "answerC": "to sleep", "label": "1"}
PIQA = {"goal": "Open a jar", "sol1": "twist the lid", "sol2": "paint the lid", "label": 0}
HSWAG = {"activity_label": "Cooking", "ctx": "A man cuts an onion", "endings": ["a", "b", "c", "d"], "label": "2"}
BOOLQ = {"passage": "Penguins are birds.", "question": "can penguins fly", "answer": False}
GOOD = {"boolq": BOOLQ, "mmlu": MMLU, "siqa": SIQA, "piqa": PIQA, "hellaswag": HSWAG,
        "humaneval": {"task_id": "T/0", "prompt": "def f():\n    pass\n"},
        "gsm8k": {"question": "Tom has 2 apples and buys 3. How many?", "answer": "2 + 3 = 5\n#### 5"}}


def local(fmt, path, **kw):
    return {"source": "local", "format": fmt, "path": str(path), **kw}


def rows_with(fmt, bad_index, **change):
    """Four good records of ``fmt``; record ``bad_index`` changed (a value None deletes the column)."""
    rows = [{**GOOD[fmt], "id": f"r{i}"} for i in range(4)]
    for k, v in change.items():
        if v is None:
            rows[bad_index].pop(k, None)
        else:
            rows[bad_index][k] = v
    return rows


# (case, format, file content (rows or raw bytes), file suffix, regex the DataError must match: file, row, column)
REJECTED = [
    ("empty-question", "boolq", rows_with("boolq", 2, question=""), ".jsonl",
     r"q\.jsonl#2 \(id d/r2\): column 'question' is empty"),
    ("whitespace-prompt", "humaneval", rows_with("humaneval", 1, prompt=" \n\t "), ".jsonl",
     r"q\.jsonl#1 \(id d/r1\): column 'prompt' is empty or whitespace-only"),
    ("whitespace-choice", "mmlu", rows_with("mmlu", 3, choices=["1", "  ", "3", "4"]), ".jsonl",
     r"q\.jsonl#3 \(id d/r3\): choices\[1\] is empty"),
    ("missing-column", "siqa", rows_with("siqa", 1, answerC=None), ".jsonl",
     r"q\.jsonl#1 \(id d/r1\): missing column 'answerC'; format 'siqa' expects social_i_qa"),
    ("missing-answer", "boolq", rows_with("boolq", 0, answer=None), ".jsonl", r"#0 .*missing column 'answer'"),
    ("duplicate-id", "piqa", rows_with("piqa", 3, id="r1"), ".jsonl", r"duplicate id 'r1': file:.*#1 and file:.*#3"),
    ("mmlu-answer-7", "mmlu", rows_with("mmlu", 2, answer=7), ".jsonl",
     r"#2 \(id d/r2\): answer not among the choices: column 'answer' = 7"),
    ("mmlu-answer-E", "mmlu", rows_with("mmlu", 2, answer="E"), ".jsonl", r"#2 .*answer not among the choices"),
    ("siqa-label-4", "siqa", rows_with("siqa", 1, label="4"), ".jsonl", r"#1 .*column 'label' = '4'.*expected 1..3"),
    ("piqa-label-2", "piqa", rows_with("piqa", 0, label=2), ".jsonl", r"#0 .*column 'label' = 2 .*2 choices"),
    ("hellaswag-label-x", "hellaswag", rows_with("hellaswag", 3, label="x"), ".jsonl", r"#3 .*column 'label' = 'x'"),
    ("boolq-maybe", "boolq", rows_with("boolq", 1, answer="maybe"), ".jsonl", r"#1 .*'maybe' is not a yes/no answer"),
    ("mmlu-three-choices", "mmlu", rows_with("mmlu", 1, choices=["a", "b", "c"]), ".jsonl",
     r"#1 .*MMLU needs 4 choices, got 3"),
    ("gsm8k-no-final", "gsm8k", rows_with("gsm8k", 2, answer="just reasoning"), ".jsonl", r"#2 .*'<reasoning> #### "),
    ("lone-surrogate", "boolq", b'{"passage": "ok", "question": "q", "answer": true}\n'
                                b'{"passage": "bad \\ud800", "question": "q", "answer": true}\n', ".jsonl",
     r"q\.jsonl#1 \(id d/1\): column 'text' is not valid Unicode"),
    ("non-utf8-jsonl", "boolq", b'{"passage": "ok", "question": "q", "answer": true}\n'
                                b'{"passage": "caf\xe9", "question": "q", "answer": true}\n', ".jsonl",
     r"q\.jsonl#1 \(line 2\): not valid UTF-8 \(byte 0xe9"),
    ("non-utf8-csv", "boolq", b"passage,question,answer\nok,q,true\ncaf\xe9,q,true\n", ".csv",
     r"q\.csv: line 3: not valid UTF-8 \(byte 0xe9"),
    ("invalid-json-line", "boolq", b'{"passage": "ok", "question": "q", "answer": true}\n{"passage": \n', ".jsonl",
     r"q\.jsonl#1 \(line 2\): invalid JSON"),
    ("json-not-object", "boolq", b'{"passage": "ok", "question": "q", "answer": true}\n[1, 2]\n', ".jsonl",
     r"q\.jsonl#1 \(line 2\): expected a JSON object"),
    ("csv-extra-cells", "boolq", b"passage,question,answer\nok,q,true\nx,y,true,surplus\n", ".csv",
     r"q\.csv#1 \(line 3\): 3 columns in the header but more cells"),
    ("csv-missing-cells", "boolq", b"passage,question,answer\nok,q,true\nx,y\n", ".csv",
     r"q\.csv#1 .*missing column 'answer'"),
    ("broken-parquet", "boolq", b"PAR1 this is not a parquet file PAR1", ".parquet",
     r"q\.parquet: cannot be read as parquet"),
    ("empty-file", "boolq", b"", ".jsonl", r"domain 'd': no usable rows"),
    ("text-missing-field", "text", [{"id": "a", "body": "x " * 30}], ".jsonl", r"q\.jsonl#0: missing column 'text'"),
]


@pytest.mark.parametrize("case,fmt,content,suffix,pattern", REJECTED, ids=[c[0] for c in REJECTED])
def test_bad_records_are_rejected_naming_the_row(tmp_path, case, fmt, content, suffix, pattern):
    path = tmp_path / f"q{suffix}"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        write_jsonl(path, content)
    with pytest.raises(DataError, match=pattern):
        build_domain("d", local(fmt, path), DATA)


def test_over_long_text_is_truncated_and_counted(tmp_path, caplog):
    """Documented rule: inputs longer than scoring.max_tokens are truncated; each is counted
    in the job's log and in the store (n_truncated), never dropped."""
    model_dir = save_tiny_model(tmp_path / "m")
    texts = ["short text", "a much longer text " * 40, "tiny", "another very long input " * 30]
    pl.DataFrame({"id": [f"x{i}" for i in range(4)], "domain": "x",
                  "text": texts}).write_parquet(tmp_path / "x.parquet")
    with caplog.at_level(logging.INFO):
        jobs.score_domain_shard(model_name="tiny", load={"load_from": str(model_dir), "dtype": "float32"},
                                table=tmp_path / "x.parquet", rows=range(0, 4), opts=ScoreOptions(max_tokens=16),
                                batch_size=2, out_store=tmp_path / "s.zarr", out_stats=tmp_path / "s.stats.parquet",
                                out_gram=tmp_path / "s.gram.parquet")
    st_ = ScoreStore(tmp_path / "s.zarr")
    assert st_.attrs["n_truncated"] == 2 and st_.attrs["n_samples"] == 4 and st_.attrs["n_excluded"] == 0
    assert "2 of 4 samples longer than 16 tokens were truncated" in caplog.text
    assert sorted(pl.read_parquet(tmp_path / "s.stats.parquet")["id"].unique()) == ["x0", "x1", "x2", "x3"]


def test_skipped_documents_are_counted_in_log_and_metadata(tmp_path, caplog):
    """Text domains: short documents (no window) and exact duplicates are documented rules, counted."""
    docs = [{"id": f"d{i}", "text": " ".join(f"w{i}_{k}" for k in range(30))} for i in range(6)]
    docs += [{"id": "short", "text": "too short"}, {"id": "blank", "text": "   "},
             {"id": "copy", "text": docs[0]["text"]}]
    p = write_jsonl(tmp_path / "t.jsonl", docs)
    with caplog.at_level(logging.INFO):
        b = build_domain("t", local("text", p), DATA)
    write_parquet(b.df, tmp_path / "t.parquet", b.metadata)
    counts = json.loads(table_metadata(tmp_path / "t.parquet")["actpat.counts"])
    assert counts["duplicate documents (exact copies) dropped"] == 1
    held = counts["documents held out"]
    short = counts["documents with at most window_words words (no window)"]
    assert short >= 1 and counts["documents"] == 8 and counts["documents giving windows"] + short + held == 8
    assert "duplicate documents (exact copies) dropped: 1" in caplog.text


# ------------------------------------------------------------------------ pair sets

PAIRS_BAD = [
    ("non-numeric-score", [{"text_a": "a", "text_b": "b", "score": 1.0},
                           {"text_a": "c", "text_b": "d", "score": "high"}],
     r"p\.jsonl#1: column 'score' = 'high' is not a number"),
    ("nan-score", b'{"text_a": "a", "text_b": "b", "score": 1}\n{"text_a": "c", "text_b": "d", "score": NaN}\n',
     r"p\.jsonl#1: column 'score' = nan is not a number"),
    ("empty-text", [{"text_a": "a", "text_b": "b", "score": 1}, {"text_a": " ", "text_b": "d", "score": 2}],
     r"p\.jsonl#1: column 'text_a' is empty"),
    ("missing-columns", [{"sentence1": "a", "score": 1}], r"missing columns; format 'pairs' expects"),
    ("duplicate-id", [{"id": "x", "text_a": "a", "text_b": "b", "score": 1}, {"id": "x", "text_a": "c", "text_b": "d",
                                                                             "score": 2}], r"duplicate id 'x'"),
]


@pytest.mark.parametrize("case,content,pattern", PAIRS_BAD, ids=[c[0] for c in PAIRS_BAD])
def test_bad_pair_files_are_rejected_naming_the_row(tmp_path, case, content, pattern):
    p = tmp_path / "p.jsonl"
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        write_jsonl(p, content)
    with pytest.raises(DataError, match=pattern):
        build_pairset("ps", {"source": "local", "path": str(p), "format": "pairs", "pairs": 10, "selection": "first"})


def test_csv_pair_file_with_non_numeric_score(tmp_path):
    p = tmp_path / "p.csv"
    p.write_text("sentence1,sentence2,score\na cat,a dog,3.5\na car,a bus,n/a\n")
    with pytest.raises(DataError, match=r"p\.csv#1: column 'score' = 'n/a' is not a number"):
        build_pairset("ps", {"source": "local", "path": str(p), "format": "stsb", "pairs": 10, "selection": "first"})


def test_domain_table_rule_fails_naming_the_row(tmp_path):
    """Through Snakemake: the job fails, its log names the file and row, and no table is left behind."""
    wd = make_workdir(tmp_path / "wd", rows=14)
    raw = (wd / "data" / "qa.jsonl").read_bytes().split(b"\n")
    raw[5] = raw[5].replace(b"quick", b"qu\xefck")
    (wd / "data" / "qa.jsonl").write_bytes(b"\n".join(raw))
    cfg = write_config(wd / "c.yaml", base_config())
    proc = snakemake(wd, "results/data/qa.parquet", configfile=cfg, timeout=300, **RELIABILITY_RUN)
    assert proc.returncode != 0
    log = (wd / "logs" / "domain_table" / "qa.log").read_text()
    assert re.search(r"qa\.jsonl#5 \(line 6\): not valid UTF-8 \(byte 0xef", log), log[-2000:]
    assert not (wd / "results" / "data" / "qa.parquet").exists()
    assert not list((wd / "results" / "data").glob(".*tmp"))


# ------------------------------------------------------------------------- fuzzing

json_scalars = (st.none() | st.booleans() | st.integers(-3, 12) | st.floats(allow_nan=False, allow_infinity=False)
                | st.text(max_size=12) | st.sampled_from(["", " ", "A", "yes", "1", "#### 4", "\ud800", "1 #### "]))
json_values = st.recursive(json_scalars, lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(max_size=4), c,
                                                                                              max_size=2), max_leaves=8)


def _records(fmt):
    cols = sorted(set(GOOD[fmt]) | {"id", "ctx_a", "ctx_b", "sol3"})
    return st.lists(st.dictionaries(st.sampled_from(cols), json_values, max_size=len(cols))
                    .map(lambda r, f=fmt: {**GOOD[f], **r} if len(r) % 2 else r), min_size=0, max_size=5)


ROW = re.compile(r"#\d+")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(GOOD)), st.data())
def test_fuzzed_records_give_a_valid_table_or_a_data_error_naming_the_row(fmt, data):
    recs = data.draw(_records(fmt))
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "f.jsonl"
        p.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
        try:
            b = build_domain("d", local(fmt, p), {**DATA, "pool": 5})
        except DataError as e:
            msg = str(e)
            assert ROW.search(msg) or "no usable rows" in msg, msg
            return
    validate_table(b.df, name="d")
    assert fmt != "gsm8k" and b.df.height == min(5, len(recs))  # gsm8k keeps its first 8 records as exemplars


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([".jsonl", ".json", ".csv", ".parquet"]), st.binary(max_size=200) | st.text(max_size=120).map(
    lambda t: t.encode("utf-8", "surrogatepass")))
def test_fuzzed_bytes_into_local_readers(suffix, raw):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / f"f{suffix}"
        p.write_bytes(raw)
        try:
            rows = read_local_rows(p)
        except DataError as e:
            assert "f" + suffix in str(e)
            return
    assert isinstance(rows, list) and all(isinstance(r, dict) for r in rows)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(["text_a", "text_b", "score", "sentence1", "sentence2", "label", "id"]),
                                json_values, max_size=5), max_size=4))
def test_fuzzed_pair_rows(rows):
    try:
        pairs = pairs_from_rows(rows, "pairs", "file:p#", "file:p")
    except DataError as e:
        assert ROW.search(str(e)) or "no rows" in str(e) or "missing columns" in str(e), str(e)
        return
    assert all(isinstance(p.score, float) and p.text_a.strip() and p.text_b.strip() for p in pairs)

