"""The jobs `snakemake -n` lists (rule, wildcards, output, resources), for `actpat footprint` and
the workflow tests."""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass
class Job:
    rule: str
    wildcards: dict = field(default_factory=dict)
    resources: dict = field(default_factory=dict)
    output: list = field(default_factory=list)
    reason: str = ""

    @property
    def key(self) -> tuple:
        return (self.rule, *sorted(self.wildcards.items()))


_HEAD = re.compile(r"^(local)?(rule|checkpoint) (\w+):$")


def _pairs(text: str) -> dict:
    out = {}
    for part in re.split(r", (?=\w+=)", text.strip()):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def parse_jobs(output: str) -> list[Job]:
    """Jobs listed by `snakemake -n` (one block per job: rule name, output, wildcards, resources)."""
    jobs: list[Job] = []
    cur = None
    for line in output.splitlines():
        m = _HEAD.match(line)
        if m:
            cur = Job(m.group(3))
            jobs.append(cur)
            continue
        if cur is None or not line.startswith("    "):
            if line.strip() and not line.startswith("    "):
                cur = None
            continue
        key, _, val = line.strip().partition(": ")
        if key == "wildcards":
            cur.wildcards = _pairs(val)
        elif key == "resources":
            cur.resources = _pairs(val)
        elif key == "output":
            cur.output = [p.strip() for p in val.split(", ")]
        elif key == "reason":
            cur.reason = val
    return jobs
