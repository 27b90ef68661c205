"""One GPU per job on a multi-GPU host: data-parallel scoring through the workflow's shards.

Snakemake runs as many scoring shards at once as `--resources gpu=N` allows but does not
tell a job *which* GPU to use.  ``claim_gpu`` gives each job a free device by holding an
exclusive lock file per GPU for the job's lifetime (released by the OS even if the job is
killed), and points CUDA_VISIBLE_DEVICES at it before torch initialises CUDA.  Under SLURM
(or whenever CUDA_VISIBLE_DEVICES is already set) the scheduler's choice is kept.
Shards then merge exactly (``merge_sum_stores``), so N GPUs give the same result as one.
"""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import time
from pathlib import Path

log = logging.getLogger(__name__)

LOCK_DIR = Path(os.environ.get("ACTPAT_GPU_LOCK_DIR", "/tmp/actpat-gpu-locks"))
_held = []  # keep lock files open for the life of the process


def _count_gpus() -> int:
    if os.environ.get("ACTPAT_GPU_COUNT"):  # simulate a host's GPUs (tests); nvidia-smi otherwise
        return int(os.environ["ACTPAT_GPU_COUNT"])
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=30)
        return len([line for line in out.stdout.splitlines() if line.strip()]) if out.returncode == 0 else 0
    except (OSError, subprocess.TimeoutExpired):
        return 0


def claim_gpu(needed: int = 1, wait_s: float = 3600.0, n_gpus: int | None = None) -> list[int] | None:
    """Reserve ``needed`` GPUs for this process and restrict CUDA to them; None if not applicable."""
    if needed < 1 or os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
        return None  # the scheduler (SLURM) or the user already chose
    n = _count_gpus() if n_gpus is None else n_gpus
    if n <= 1 or needed >= n:
        return None
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    deadline = time.time() + wait_s
    while True:
        got = []
        for i in range(n):
            f = open(LOCK_DIR / f"gpu{i}.lock", "w")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.close()
                continue
            got.append((i, f))
            if len(got) == needed:
                break
        if len(got) == needed:
            _held.extend(f for _, f in got)
            ids = [i for i, _ in got]
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, ids))
            log.info("using GPU(s) %s of %d", ids, n)
            return ids
        for _, f in got:
            f.close()
        if time.time() > deadline:
            raise RuntimeError(f"no free GPU among {n} after {wait_s:.0f} s (locks in {LOCK_DIR})")
        time.sleep(2.0)
