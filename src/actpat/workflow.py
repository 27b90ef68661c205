"""Glue for Snakemake `script:` files: the rule's log file, its threads and its GPUs."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time

log = logging.getLogger("actpat")


class Terminated(BaseException):
    """SIGTERM (SLURM's time limit, Snakemake stopping its jobs) as an exception, so that partial
    outputs are removed by the writers' cleanup and the log says what happened.  A BaseException,
    so that library code catching Exception cannot swallow it."""


def _raise_terminated(signum, frame):
    raise Terminated(f"received {signal.Signals(signum).name}")


@contextlib.contextmanager
def rule_logging(snakemake):
    """Send logging, warnings and stderr of a script to the rule's log file, and give the job what
    it was allotted: ``threads`` torch threads and, for a rule with a ``gpu`` resource, its own
    GPU(s) (``actpat.gpus.claim_gpu``: the scheduler's choice, or a free device of the host).

    Progress bars (tqdm) write to stderr, so they end up in the log too.
    """
    path = snakemake.log[0] if len(snakemake.log) else None
    stream = open(path, "a", buffering=1) if path else sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    old_err = sys.stderr
    if path:
        sys.stderr = stream
    t0 = time.time()
    main = threading.current_thread() is threading.main_thread()
    old_term = signal.signal(signal.SIGTERM, _raise_terminated) if main else None
    log.info("rule %s started (wildcards %s)", snakemake.rule, dict(snakemake.wildcards))
    try:
        _allot(snakemake)
        yield log
    except Terminated as e:
        log.error("rule %s was terminated (%s) after %.1f s; its outputs were not written", snakemake.rule, e,
                  time.time() - t0)
        raise
    except Exception:
        log.exception("rule %s failed", snakemake.rule)
        raise
    finally:
        if main:
            signal.signal(signal.SIGTERM, old_term)
        log.info("rule %s finished in %.1f s", snakemake.rule, time.time() - t0)
        sys.stderr = old_err
        root.removeHandler(handler)
        if path:
            stream.close()


def _allot(snakemake) -> None:
    gpus = int((getattr(snakemake, "resources", None) or {}).get("gpu", 0) or 0)
    if gpus:
        from .gpus import claim_gpu

        claim_gpu(gpus)  # before torch initialises CUDA
    threads = max(1, int(getattr(snakemake, "threads", 1) or 1))
    os.environ["OMP_NUM_THREADS"] = str(threads)  # torch imported later (lazily) reads it
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
