"""Run the real workflow from tests: a tiny offline working directory, snakemake calls that
end in SIGKILL on timeout, and a parser for dry-run job listings.

The tiny config (tests/configs/tiny.yaml) points at paths relative to the working
directory, so two working directories built here give byte-identical results.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from actpat.dryrun import Job, parse_jobs  # noqa: F401  (the tests' dry-run parser lives in the package)
from helpers import REPO, TESTS

TINY_CONFIG = TESTS / "configs" / "tiny.yaml"
HUB_FIXTURES = TESTS / "fixtures" / "hub"
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
# Variables a run gets on top of env()'s unless the caller names others.
RUN_ENV = {"HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def tiny_workdir(path: Path, model_dir: Path) -> Path:
    """A working directory for tests/configs/tiny.yaml: links to the model and the fixtures."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "tiny-llama").symlink_to(model_dir.resolve())
    (path / "fixtures").symlink_to(HUB_FIXTURES)
    return path


def tiny_targets(model: str = "tiny", domains=("boolq", "piqa")) -> list[str]:
    """Data tables + merged scores (each merge pulls in its shards)."""
    return [f"results/data/{d}.parquet" for d in domains] + [
        f"results/scores/{model}/{d}.{ext}" for d in domains for ext in ("zarr", "stats.parquet", "gram.parquet")
    ]


def env(extra: dict | None = None) -> dict:
    """os.environ with the repository's package first on PYTHONPATH and the hub offline, plus ``extra``
    (default RUN_ENV)."""
    # PYTHONPATH: the repository's package wins over any installed copy, also inside SLURM jobs
    # (sbatch --export=ALL passes the environment on).  Never touch the hub from tests.
    return {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1",
            **(RUN_ENV if extra is None else extra)}


@dataclass
class Run:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def tail(self, n: int = 4000) -> str:
        return f"$ snakemake {' '.join(self.args)}\n(rc {self.returncode}, {self.seconds:.0f} s)\n" + self.output[-n:]


def snakemake(workdir: Path, *args: str, configfile: Path = TINY_CONFIG, timeout: float = 120, on_start=None,
              snakefile: Path = REPO / "Snakefile", cores: int | None = None, profile: bool = False,
              env_vars: dict | None = None, popen: bool = False) -> Run | subprocess.Popen:
    """Run snakemake on the repository's Snakefile in ``workdir``.

    The command is ``snakemake -s snakefile -d workdir --configfile configfile`` followed by
    ``--workflow-profile profiles/local`` if ``profile``, ``--cores N`` if ``cores`` is given, and
    ``args``; the environment is env(env_vars).

    The call runs in its own process group.  On timeout the group gets SIGTERM and,
    10 s later, SIGKILL: snakemake answers SIGTERM by waiting for running jobs, which
    can be forever when a cluster never reports them finished.  ``on_start(proc)`` is
    called once after the start (the SLURM test uses it to cancel a job mid-run).
    ``popen=True`` returns the running process at once instead (stderr merged into stdout).
    """
    cmd = [SNAKEMAKE, "-s", str(snakefile), "-d", str(workdir), "--configfile", str(configfile)]
    if profile:
        cmd += ["--workflow-profile", str(REPO / "profiles" / "local")]
    if cores is not None:
        cmd += ["--cores", str(cores)]
    cmd += list(args)
    if popen:
        return subprocess.Popen(cmd, cwd=workdir, env=env(env_vars), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=workdir, env=env(env_vars), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    timed_out = False
    try:
        if on_start is not None:
            on_start(proc)
        out, err = proc.communicate(timeout=max(1.0, timeout - (time.monotonic() - t0)))
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return Run(list(args), proc.returncode, out, err, time.monotonic() - t0, timed_out)


# ------------------------------------------------------------------ dry-run listings

def job_keys(jobs: list[Job], *, skip=("all",)) -> set[tuple]:
    return {j.key for j in jobs if j.rule not in skip}


def key(rule: str, **wildcards) -> tuple:
    return (rule, *sorted((k, str(v)) for k, v in wildcards.items()))


def rule_blocks() -> dict[str, str]:
    """Each rule's body: the indented lines after `rule NAME:` up to the next top-level line
    (so a helper such as common.smk's figure() is never read as part of the rule before it)."""
    blocks = {}
    for path in sorted((REPO / "rules").glob("*.smk")):
        name = None
        for line in path.read_text().splitlines():
            head = re.match(r"rule (\w+):", line)
            if head:
                name = head.group(1)
                blocks[name] = ""
            elif line and not line[0].isspace() and not line.startswith("#"):
                name = None
            elif name:
                blocks[name] += line + "\n"
    return blocks


def local_rules() -> set[str]:
    """Rules marked `localrule: True` in rules/*.smk or listed in a `localrules:` directive.

    A dry run does not say which jobs would run on the head node, so this reads the
    (snakefmt-formatted) rule files.
    """
    local = set()
    for f in sorted((REPO / "rules").glob("*.smk")) + [REPO / "Snakefile"]:
        text = f.read_text()
        for m in re.finditer(r"^localrules:\s*([^\n]+)", text, re.M):
            local |= {n.strip() for n in m.group(1).split(",") if n.strip()}
        blocks = re.split(r"^(?:rule|checkpoint) (\w+):\n", text, flags=re.M)
        for name, body in zip(blocks[1::2], blocks[2::2]):
            if re.search(r"^    localrule: True$", body, re.M):
                local.add(name)
    return local
