"""Pruning runs named in the config (``prune.runs``), expanded into one job each.

Each entry of ``prune.runs`` expands over its lists, allocation x sparsity x calibration
(default ``prune.calibration.domain``), and each of those over ``prune.calibration.seeds``.
A run name reads ``<method>-<allocation>-s<sparsity>-<calibration>-seed<k>``, e.g.
``wanda-paper-s0.50-c4-seed0``.  Runs that use no calibration data (magnitude pruning with a
uniform or paper allocation) would give identical results for every calibration set and
seed, so they expand once, named ``<method>-<allocation>-s<sparsity>`` (calibration and
seed empty in the tables).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .sequential import needs_calibration


@dataclass(frozen=True)
class PruneRun:
    name: str
    method: str
    allocation: str
    sparsity: float
    calibration: str | None
    seed: int | None

    def as_dict(self) -> dict:
        return asdict(self)


def _listify(x) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def sparsity_label(s: float) -> str:
    """``0.5`` -> ``0.50``; finer values keep their digits (``0.525``)."""
    return f"{s:.2f}" if abs(s * 100 - round(s * 100)) < 1e-9 else f"{s:g}"


def run_name(method: str, allocation: str, sparsity: float, calibration: str | None, seed: int | None) -> str:
    base = f"{method}-{allocation}-s{sparsity_label(sparsity)}"
    return base if calibration is None else f"{base}-{calibration}-seed{seed}"


def expand_runs(prune_cfg: dict) -> list[PruneRun]:
    """All runs of ``prune_cfg`` (the validated ``prune`` section), in config order, unique."""
    default_cal = prune_cfg["calibration"]["domain"]
    seeds = prune_cfg["calibration"]["seeds"]
    out: dict[str, PruneRun] = {}
    for entry in prune_cfg.get("runs", []):
        method = entry["method"]
        cals = _listify(entry.get("calibration") or default_cal)
        entry_seeds = entry.get("seeds") or seeds  # an entry may repeat over fewer (or other) seeds
        for alloc in _listify(entry.get("allocation", "uniform")):
            for s in _listify(entry["sparsity"]):
                if not needs_calibration(method, alloc):
                    r = PruneRun(run_name(method, alloc, s, None, None), method, alloc, float(s), None, None)
                    out.setdefault(r.name, r)
                    continue
                for cal in cals:
                    for seed in entry_seeds:
                        r = PruneRun(run_name(method, alloc, s, cal, seed), method, alloc, float(s), cal, int(seed))
                        out.setdefault(r.name, r)
    return list(out.values())


def runs_by_name(prune_cfg: dict) -> dict[str, PruneRun]:
    return {r.name: r for r in expand_runs(prune_cfg)}
