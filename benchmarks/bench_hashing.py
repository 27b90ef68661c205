"""What content checks cost (actpat.contenthash): the default run's inputs, and a 7B-sized model file.

Times, per directory: writing the manifest (full SHA-256 of every file, once, when the directory
is made), the DAG-time token (``state``: one stat per file), the job-time check (``verify``: stat
only, unless a file changed) and a full re-hash (``verify(full=True)``).  With ``--gb N`` it also
writes an N-GB file of random bytes in a scratch folder (the size of Llama-2-7B's bf16 weights is
13.4 GB) and times the same four steps on it; the first full hash reads it from disk or the page
cache, whichever the machine has, so the run reports both passes.

    python benchmarks/bench_hashing.py [--gb 13.4] [--scratch /tmp] [--out results/hashing.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from actpat import contenthash


def _time(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def measure(d: Path) -> dict:
    size = sum(p.stat().st_size for p in d.rglob("*") if p.is_file())
    saved = (d / contenthash.MANIFEST).read_bytes() if (d / contenthash.MANIFEST).is_file() else None
    try:
        out = {"dir": str(d), "files": sum(1 for p in d.rglob("*") if p.is_file()), "bytes": size,
               "write_manifest_s": _time(lambda: contenthash.write_manifest(d)),
               "state_s": _time(lambda: contenthash.state(d)),
               "verify_stat_s": _time(lambda: contenthash.verify(d)),
               "verify_full_s": _time(lambda: contenthash.verify(d, full=True))}
    finally:
        if saved is not None:  # leave the workflow's own manifest exactly as it was
            (d / contenthash.MANIFEST).write_bytes(saved)
    out["full_hash_gb_per_s"] = size / 1e9 / out["verify_full_s"]
    return out


def big_file(scratch: Path, gb: float) -> dict:
    d = Path(tempfile.mkdtemp(prefix="actpat-hash-", dir=scratch))
    try:
        block = os.urandom(64 << 20)
        left = int(gb * 1e9)
        t = time.perf_counter()
        with open(d / "model.safetensors", "wb") as f:
            while left > 0:
                f.write(block[:min(left, len(block))])
                left -= len(block)
            f.flush()
            os.fsync(f.fileno())
        write_s = time.perf_counter() - t
        first = measure(d)
        second = measure(d)
        return {"gb": gb, "write_file_s": write_s, "first": first, "second": second}
    finally:
        shutil.rmtree(d)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="resources", help="the workflow's resources/ (assets and models)")
    ap.add_argument("--gb", type=float, default=0.0, help="also time one file of this many GB (0: skip)")
    ap.add_argument("--scratch", default=tempfile.gettempdir())
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    root = Path(a.root)
    dirs = sorted(p for p in [*root.glob("assets/*"), *root.glob("models/*")] if p.is_dir())
    res = {"default_run": [measure(d) for d in dirs]}
    tot = {k: sum(r[k] for r in res["default_run"]) for k in ("bytes", "write_manifest_s", "state_s",
                                                              "verify_stat_s", "verify_full_s")}
    res["default_run_total"] = tot
    print(f"default run: {len(dirs)} directories, {tot['bytes'] / 1e6:.0f} MB: "
          f"manifests {tot['write_manifest_s']:.2f} s, "
          f"DAG-time state {1e3 * tot['state_s']:.1f} ms, job-time verify {1e3 * tot['verify_stat_s']:.1f} ms, "
          f"full re-hash {tot['verify_full_s']:.2f} s")
    if a.gb:
        big = res["big_file"] = big_file(Path(a.scratch), a.gb)
        for k in ("first", "second"):
            m = big[k]
            print(f"{a.gb:g} GB file, {k} pass: manifest {m['write_manifest_s']:.1f} s, "
                  f"state {1e3 * m['state_s']:.2f} ms, "
                  f"verify {1e3 * m['verify_stat_s']:.2f} ms, full re-hash {m['verify_full_s']:.1f} s "
                  f"({m['full_hash_gb_per_s']:.2f} GB/s)")
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
