"""Our zero-shot evaluator against lm-evaluation-harness on the same questions and model (CPU).

Needs the optional extra (``pip install .[lmeval]``).  The questions are the bottom ``--questions``
rows of each multiple-choice domain table in ``--tables`` (``results/data`` after ``make run``), the
MMLU shots the ``--mmlu-shots`` rows above them, exactly as ``evaluate_task`` takes them; without the
tables, the hand-made records of tests/prune/test_lmeval_agreement.py.  The harness scores them
through a locally defined task per format (same YAML as that test) with ``HFLM`` on the same
model directory.  Both sides load the model once, outside the timings; each side runs
``--repeats`` times and the fastest run counts:

* ours, ``cloze``: ``cloze_predictions`` only (what the harness computes: acc, acc_norm);
* ours, ``evaluate_task``: both scorers (paper + cloze), as the workflow runs it;
* harness: ``simple_evaluate`` (task building, dataset loading from parquet, scoring).

Also reports per task the agreement on the chosen answer (acc: argmax of the summed
log-likelihood; acc_norm: ours vs the harness's ``acc_bytes``, the same byte-length rule, and vs
its character-length ``acc_norm``) and the largest log-likelihood difference.

Usage: python benchmarks/bench_lmeval.py [--model DIR] [--tables DIR] [--questions 16] \\
       [--json benchmarks/results/cpu-lmeval.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "prune"))

FORMATS = ("boolq", "siqa", "piqa", "hellaswag", "mmlu")


def _tables(a, work: Path) -> tuple[dict, str]:
    import polars as pl

    d = Path(a.tables)
    if all((d / f"{f}.parquet").is_file() for f in FORMATS):
        return {f: pl.read_parquet(d / f"{f}.parquet") for f in FORMATS}, str(d)
    from test_lmeval_agreement import domain_tables

    print(f"no domain tables in {d}: using the test's hand-made records", file=sys.stderr)
    return domain_tables(work), "tests/prune/test_lmeval_agreement.py records"


def _model(a, work: Path) -> tuple[Path, str]:
    p = Path(a.model)
    if (p / "config.json").is_file():
        return p, str(p)
    from helpers.tiny import PRUNING_LLAMA, PRUNING_TOKENIZER, tiny_llama, tiny_tokenizer

    print(f"no model in {p}: using the tiny random LLaMA", file=sys.stderr)
    tok = tiny_tokenizer(**PRUNING_TOKENIZER)
    m = tiny_llama(vocab=len(tok), **PRUNING_LLAMA)
    m.config.max_position_embeddings = 4096
    m.save_pretrained(work / "model")
    tok.save_pretrained(work / "model")
    return work / "model", "tiny random LLaMA (tests/helpers/tiny.py)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(REPO / "resources" / "models" / "smollm2-135m"))
    ap.add_argument("--tables", default=str(REPO / "results" / "data"))
    ap.add_argument("--questions", type=int, default=16)
    ap.add_argument("--mmlu-shots", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=8, help="HFLM's batch size")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=str(HERE / "results" / "cpu-lmeval.json"))
    a = ap.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import numpy as np
    import torch
    import lm_eval

    from actpat.evaluate.zeroshot import cloze_predictions, cloze_shot_prefix, evaluate_task, select_questions
    from actpat.modelio import load_model
    from test_lmeval_agreement import harness_lm, harness_scores, sample_logliks

    torch.set_num_threads(a.threads)
    work = Path(tempfile.mkdtemp(prefix="bench-lmeval-"))
    model_dir, model_name = _model(a, work)
    tables, tables_name = _tables(a, work)
    tables = {f: tables[f] for f in FORMATS}
    shots = {"mmlu": a.mmlu_shots}
    n = a.questions

    t = time.perf_counter()
    model, tok = load_model(str(model_dir))
    load_ours = time.perf_counter() - t
    t = time.perf_counter()
    lm = harness_lm(model_dir, a.batch_size)
    load_harness = time.perf_counter() - t

    picked = {f: select_questions(tables[f], n, shots.get(f, 0), where=f) for f in FORMATS}
    times = {"ours_cloze": [], "ours_evaluate_task": [], "harness": []}
    for _ in range(a.repeats):
        t = time.perf_counter()
        cloze = {f: cloze_predictions(model, tok, qs, cloze_shot_prefix(sh)) for f, (qs, sh) in picked.items()}
        times["ours_cloze"].append(time.perf_counter() - t)
        t = time.perf_counter()
        full = {f: evaluate_task(model, tok, qs, sh) for f, (qs, sh) in picked.items()}
        times["ours_evaluate_task"].append(time.perf_counter() - t)
        t = time.perf_counter()
        theirs = harness_scores(lm, Path(tempfile.mkdtemp(dir=work)), tables, n, shots)
        times["harness"].append(time.perf_counter() - t)

    tasks = {}
    for f, (qs, _) in picked.items():
        samples = theirs[f]["samples"]
        lls = [sample_logliks(s) for s in samples]
        same_ids = [s["doc"]["id"] for s in samples] == [q.id for q in qs]
        nbytes = [np.array([len(c.encode("utf-8")) for c in q.choices], float) for q in qs]
        nchars = [np.array([len(c) for c in q.choices], float) for q in qs]
        ours = cloze[f]
        r = theirs[f]["results"]
        tasks[f] = {
            "questions": len(qs), "shots": shots.get(f, 0), "same_rows": same_ids,
            "agree_acc": float(np.mean([o["pred_acc"] == int(np.argmax(h)) for o, h in zip(ours, lls)])),
            "agree_acc_norm_vs_acc_bytes": float(np.mean([o["pred_acc_norm"] == int(np.argmax(h / b))
                                                          for o, h, b in zip(ours, lls, nbytes)])),
            "agree_acc_norm_vs_acc_norm": float(np.mean([o["pred_acc_norm"] == int(np.argmax(h / c))
                                                         for o, h, c in zip(ours, lls, nchars)])),
            "non_ascii_questions": sum(not all(c.isascii() for c in q.choices) for q in qs),
            "max_abs_loglik_diff": float(max(np.max(np.abs(np.array(o["loglik"]) - h)) for o, h in zip(ours, lls))),
            "ours": {"acc": full[f]["acc"], "acc_norm": full[f]["acc_norm"], "paper_acc": full[f]["paper_acc"]},
            "harness": {"acc": r["acc,none"], "acc_norm": r["acc_norm,none"], "acc_bytes": r["acc_bytes,none"]},
        }
    best = {k: min(v) for k, v in times.items()}
    out = {
        "what": "zero-shot multiple-choice scoring: actpat.evaluate.zeroshot vs lm-evaluation-harness (HFLM)",
        "model": model_name, "tables": tables_name, "questions_per_task": n, "mmlu_shots": a.mmlu_shots,
        "harness_batch_size": a.batch_size, "torch_threads": a.threads, "repeats": a.repeats,
        "versions": {"lm_eval": lm_eval.__version__, "torch": torch.__version__,
                     "transformers": __import__("transformers").__version__},
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "loadavg_at_end": os.getloadavg()},
        "load_s": {"ours": load_ours, "harness": load_harness},
        "seconds": times, "best_s": best,
        "ratio_harness_over_ours_cloze": best["harness"] / best["ours_cloze"],
        "ratio_harness_over_ours_evaluate_task": best["harness"] / best["ours_evaluate_task"],
        "tasks": tasks,
    }
    text = json.dumps(out, indent=1)
    print(text)
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
