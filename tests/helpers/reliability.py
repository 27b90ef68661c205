"""Shared pieces of the reliability tests: a tiny saved model, local hub-format data files,
a small valid configuration that uses them, the settings of their Snakemake runs, and process
look-ups.

Nothing here needs the network or the shipped model: the model is the tiny random LLaMA of
helpers/tiny.py saved as safetensors (save_tiny_model), the data are JSON Lines files in the hub
formats; workflow runs go through helpers.smkrun.snakemake with RELIABILITY_RUN.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from helpers.tiny import save_tiny_model

# How the reliability tests run the workflow (helpers.smkrun.snakemake(..., **RELIABILITY_RUN)):
# one core, and every tqdm update reaches the job logs (a test waits for a job's progress).
RELIABILITY_RUN = {"cores": 1, "env_vars": {"TQDM_MININTERVAL": "0"}}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def boolq_rows(n: int, words: int = 12) -> list[dict]:
    """BoolQ-format records (google/boolq: passage, question, answer)."""
    body = "the quick brown fox jumps over the lazy dog and keeps running"
    return [{"id": f"q{i}", "passage": " ".join([body] * max(1, words // 12)) + f" number {i}.",
             "question": f"is {i} an even number", "answer": i % 2 == 0} for i in range(n)]


def text_rows(n: int, words: int = 40) -> list[dict]:
    """Raw-text documents (format text) long enough to give word windows."""
    vocab = "alpha beta gamma delta parameters layers activate sparse deep shallow model data".split()
    return [{"id": f"d{i}", "text": " ".join(f"{vocab[(i + k) % len(vocab)]}{(i * 31 + k * 7) % 101}"
                                             for k in range(words))} for i in range(n)]


def make_workdir(wd: Path, *, rows: int = 24, layers: int = 3) -> Path:
    """A working directory with model/, data/qa.jsonl (boolq) and data/txt.jsonl (text)."""
    wd.mkdir(parents=True, exist_ok=True)
    save_tiny_model(wd / "model", layers=layers)
    write_jsonl(wd / "data" / "qa.jsonl", boolq_rows(rows))
    write_jsonl(wd / "data" / "txt.jsonl", text_rows(rows))
    return wd


def base_config(**over) -> dict:
    """A small valid configuration over make_workdir's files (paths relative to the workdir)."""
    cfg = {
        "models": {"tiny": {"source": "local", "path": "model", "layers": 3, "thresholds": [1.0e-3]}},
        "domains": {
            "qa": {"source": "local", "path": "data/qa.jsonl", "format": "boolq"},
            "txt": {"source": "local", "path": "data/txt.jsonl", "format": "text"},
        },
        "data": {"seed": 1, "pool": 12, "window_words": 10, "heldout_fraction": 0.2},
        "scoring": {"samples": 4, "batch_size": 2, "shard_size": 2, "max_tokens": 32},
        "similarity": {"samples": 2, "per_batch": 2, "deep_window": [1, 2], "shallow_window": [0, 1]},
        "relevance": {"embedding_asset": None},
        "prune": {"enabled": True, "calibration": {"domain": "txt", "sequences": 2, "seq_len": 16},
                  "runs": [{"method": "wanda", "allocation": ["uniform"], "sparsity": [0.5]}]},
        "evaluation": {"perplexity": {"domain": "txt", "seq_len": 16, "max_windows": 2},
                       "zeroshot": {"domains": ["qa"], "questions": 2, "mmlu_shots": 0}},
        "sts": {"pairsets": {}, "window": [1, 2]},
    }
    for k, v in over.items():
        cfg[k] = v
    return cfg


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(p.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
