"""Pruning runs named in the config (``prune.runs``), expanded into one job each.

Each entry of ``prune.runs`` expands over its lists, allocation x sparsity x calibration
(default ``prune.calibration.domain``), and each of those over ``prune.calibration.seeds``.
A run name reads ``<method>-<allocation>-s<sparsity>-<calibration>-seed<k>``, e.g.
``wanda-paper-s0.50-c4-seed0``.  Runs that use no calibration data (magnitude pruning with a
uniform or paper allocation) would give identical results for every calibration set and
seed, so they expand once, named ``<method>-<allocation>-s<sparsity>`` (calibration and
seed empty in the tables).  An entry with ``nm`` (N:M patterns, e.g. ``"2:4"``) expands over
its patterns instead of sparsities: ``wanda-uniform-2of4-c4-seed0``, sparsity N/M.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .masks import parse_nm
from .sequential import needs_calibration


@dataclass(frozen=True)
class PruneRun:
    name: str
    method: str
    allocation: str
    sparsity: float
    calibration: str | None
    seed: int | None
    nm: str | None = None  # "N:M" for semi-structured runs

    @property
    def nm_pair(self) -> tuple[int, int] | None:
        from .masks import parse_nm

        return None if self.nm is None else parse_nm(self.nm)

    def as_dict(self) -> dict:
        d = asdict(self)
        if d["nm"] is None:  # unstructured runs keep the fields they always had
            del d["nm"]
        return d


def _listify(x) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def sparsity_label(s: float) -> str:
    """``0.5`` -> ``0.50``; finer values keep their digits (``0.525``)."""
    return f"{s:.2f}" if abs(s * 100 - round(s * 100)) < 1e-9 else f"{s:g}"


def run_name(method: str, allocation: str, sparsity: float, calibration: str | None, seed: int | None,
             nm: str | None = None) -> str:
    shape = f"s{sparsity_label(sparsity)}" if nm is None else nm.replace(":", "of")
    base = f"{method}-{allocation}-{shape}"
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
        shapes = ([(float(s), None) for s in _listify(entry["sparsity"])] if "sparsity" in entry
                  else [(n / m, p) for p in _listify(entry["nm"]) for n, m in [parse_nm(p)]])
        for alloc in _listify(entry.get("allocation", "uniform")):
            for s, nm in shapes:
                if not needs_calibration(method, alloc):
                    r = PruneRun(run_name(method, alloc, s, None, None, nm), method, alloc, s, None, None, nm)
                    out.setdefault(r.name, r)
                    continue
                for cal in cals:
                    for seed in entry_seeds:
                        r = PruneRun(run_name(method, alloc, s, cal, seed, nm), method, alloc, s, cal, int(seed), nm)
                        out.setdefault(r.name, r)
    return list(out.values())


def runs_by_name(prune_cfg: dict) -> dict[str, PruneRun]:
    return {r.name: r for r in expand_runs(prune_cfg)}
