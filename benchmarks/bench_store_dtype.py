"""What keeping the per-weight means in float16 or bfloat16 (scoring.store_dtype) changes.

For every merged store of a finished run (results/scores/<model>/<domain>.zarr, float32), the
means are rounded as the half-precision store would keep them (torch's conversion, which
``actpat.engine.store`` matches bit for bit) and compared with float32: the fraction of weights
whose side of each threshold γ changes, and the largest change of any per-layer density
(the share of a block's weights above γ, Finding 1).  One store per model is also written in
each dtype to measure its disk size and file count.

Usage:  python benchmarks/bench_store_dtype.py --run RUN_DIR --model smollm2-135m --gamma 1e-3 3e-4
                                               [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
from actpat.engine.store import ScoreStore, write_store  # noqa: E402

DTYPES = ("float16", "bfloat16")


def disk(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a finished run's directory (holds results/)")
    ap.add_argument("--model", required=True)
    ap.add_argument("--gamma", type=float, nargs="+", required=True)
    ap.add_argument("--json")
    a = ap.parse_args()
    stores = sorted((Path(a.run) / "results" / "scores" / a.model).glob("*.zarr"))
    rows = []
    for path in stores:
        st = ScoreStore(path)
        layer_of = st.layer_of()
        L = int(st.attrs["layers"])
        total = np.zeros(L)
        above = {(d, g): np.zeros(L) for d in ("float32", *DTYPES) for g in a.gamma}
        flips = {(d, g): 0 for d in DTYPES for g in a.gamma}
        for name, m in st.items():
            i = layer_of[name]
            total[i] += m.size
            t = torch.from_numpy(m)
            kept = {"float32": m, **{d: t.to(getattr(torch, d)).float().numpy() for d in DTYPES}}
            for g in a.gamma:
                side = m > g
                above[("float32", g)][i] += side.sum()
                for d in DTYPES:
                    s = kept[d] > g
                    above[(d, g)][i] += s.sum()
                    flips[(d, g)] += int((s != side).sum())
        for d in DTYPES:
            for g in a.gamma:
                dens, ref = above[(d, g)] / total, above[("float32", g)] / total
                rows.append({"domain": st.attrs["domain"], "dtype": d, "gamma": g, "weights": int(total.sum()),
                             "flipped": flips[(d, g)], "flipped_fraction": flips[(d, g)] / total.sum(),
                             "max_density_change": float(np.abs(dens - ref).max()),
                             "max_density_relative_change": float(np.max(np.abs(dens - ref) / np.maximum(ref, 1e-12)))})
        print(json.dumps(rows[-1]), flush=True)
    sizes = {}
    with tempfile.TemporaryDirectory() as tmp:
        st = ScoreStore(stores[0])
        for d in ("float32", *DTYPES):
            out = write_store(Path(tmp) / f"{d}.zarr", st.items(), st.attrs, d)
            sizes[d] = dict(zip(("bytes", "files"), disk(out)))
            shutil.rmtree(out)
    worst = {(r["dtype"], r["gamma"]): r for r in sorted(rows, key=lambda r: r["flipped_fraction"])}
    print(f"\n{a.model}: {len(stores)} stores; store of {stores[0].name} on disk: "
          + ", ".join(f"{d} {v['bytes'] / 1e6:.0f} MB in {v['files']} files" for d, v in sizes.items()))
    print("| dtype | γ | weights changing side (worst domain) | largest per-layer density change |")
    print("|---|---|---|---|")
    for (d, g), r in sorted(worst.items()):
        dens = max(x["max_density_change"] for x in rows if x["dtype"] == d and x["gamma"] == g)
        print(f"| {d} | {g:g} | {r['flipped_fraction']:.2e} ({r['domain']}) | {dens:.2e} |")
    if a.json:
        Path(a.json).write_text(json.dumps({"model": a.model, "stores": len(stores), "gamma": a.gamma,
                                            "sizes": sizes, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
