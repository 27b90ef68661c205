"""Per-rule job time of a workflow run, read from its logs (``rule X started`` / ``finished in``).

    python benchmarks/rule_times.py [LOGS_DIR] [--gpu-rules score_shard,...] [--json OUT]
    python benchmarks/rule_times.py --from-json SAVED.json --markdown     (a saved summary as a table)

For each rule: jobs, summed job seconds, the longest job, and the wall-clock span its jobs cover
(union of their intervals).  GPU time is the span covered by any job of a rule that holds a GPU
(jobs that share one GPU count once).  A job's time runs from `rule_logging` entry to exit, so the
interpreter start and imports (a few seconds per job) are not in it; the run's own wall time is.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
from collections import defaultdict
from pathlib import Path

LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO actpat: rule (\w+) "
                  r"(?:started|finished in ([\d.]+) s)")
# rules whose jobs hold a GPU (those with a `gpu` resource in rules/*.smk)
GPU_RULES = ("score_shard", "score_panel", "score_pairs", "prune_evaluate", "evaluate_dense")


def intervals(logs: Path) -> dict[str, list[tuple[float, float]]]:
    out = defaultdict(list)
    for path in sorted(logs.rglob("*.log")):
        start = None
        for line in re.split(r"[\r\n]", path.read_text(errors="replace")):
            m = LINE.match(line)
            if not m:
                continue
            t = dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            if m.group(3) is None:
                start = t
            elif start is not None:
                out[m.group(2)].append((start, start + float(m.group(3))))
                start = None
    return out


def covered(spans: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(spans):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def summarise(logs: Path, gpu_rules=GPU_RULES) -> dict:
    iv = intervals(logs)
    rules = {r: {"jobs": len(s), "job_s": round(sum(b - a for a, b in s), 1),
                 "longest_s": round(max(b - a for a, b in s), 1), "span_s": round(covered(s), 1),
                 "gpu": r in gpu_rules} for r, s in sorted(iv.items())}
    gpu = [x for r, s in iv.items() if r in gpu_rules for x in s]
    every = [x for s in iv.values() for x in s]
    return {"rules": rules, "gpu_s": round(covered(gpu), 1), "jobs_s": round(sum(b - a for a, b in every), 1),
            "first_to_last_s": round(max(b for _, b in every) - min(a for a, _ in every), 1) if every else 0.0}


def markdown(s: dict) -> str:
    rows = ["| rule | jobs | job time (s) | longest job (s) | wall span (s) | holds a GPU |",
            "|---|---|---|---|---|---|"]
    for r, v in sorted(s["rules"].items(), key=lambda kv: -kv[1]["job_s"]):
        rows.append(f"| {r} | {v['jobs']} | {v['job_s']:.0f} | {v['longest_s']:.0f} | {v['span_s']:.0f} | "
                    f"{'yes' if v['gpu'] else ''} |")
    rows.append(f"\nGPU time (wall span covered by GPU jobs): {s['gpu_s']:.0f} s; summed job time {s['jobs_s']:.0f} s; "
                f"first job start to last job end {s['first_to_last_s']:.0f} s.")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("logs", nargs="?", default="logs")
    ap.add_argument("--gpu-rules", default=",".join(GPU_RULES))
    ap.add_argument("--json")
    ap.add_argument("--from-json", help="read a summary written by --json instead of logs")
    ap.add_argument("--markdown", action="store_true")
    a = ap.parse_args()
    if a.from_json:
        s = json.loads(Path(a.from_json).read_text())
    else:
        s = summarise(Path(a.logs), tuple(a.gpu_rules.split(",")))
    if a.markdown:
        print(markdown(s))
        return
    print(f"{'rule':<20}{'jobs':>6}{'job s':>10}{'longest s':>11}{'span s':>9}  gpu")
    for r, v in s["rules"].items():
        gpu = "yes" if v["gpu"] else ""
        print(f"{r:<20}{v['jobs']:>6}{v['job_s']:>10.1f}{v['longest_s']:>11.1f}{v['span_s']:>9.1f}  {gpu}")
    print(f"GPU time (span of GPU jobs) {s['gpu_s']:.1f} s; job time {s['jobs_s']:.1f} s; "
          f"first start to last end {s['first_to_last_s']:.1f} s")
    if a.json:
        Path(a.json).write_text(json.dumps(s, indent=1) + "\n")


if __name__ == "__main__":
    main()
