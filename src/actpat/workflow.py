"""Glue for Snakemake `script:` files: logging into the rule's log file."""

from __future__ import annotations

import contextlib
import logging
import sys
import time

log = logging.getLogger("actpat")


@contextlib.contextmanager
def rule_logging(snakemake):
    """Send logging, warnings and stderr of a script to the rule's log file.

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
    log.info("rule %s started (wildcards %s)", snakemake.rule, dict(snakemake.wildcards))
    try:
        yield log
    except Exception:
        log.exception("rule %s failed", snakemake.rule)
        raise
    finally:
        log.info("rule %s finished in %.1f s", snakemake.rule, time.time() - t0)
        sys.stderr = old_err
        root.removeHandler(handler)
        if path:
            stream.close()
