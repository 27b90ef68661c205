"""actpat compare-runs: equal runs pass, any changed value in a store, table or JSON is reported."""

import json
import shutil

import numpy as np
import polars as pl

from actpat.cli import main
from actpat.engine.store import write_store
from actpat.runcompare import compare


def _run(root):
    (root / "t").mkdir(parents=True)
    write_store(root / "s.zarr", {"w": np.arange(12, dtype=np.float32).reshape(3, 4)}, {"k": 1, "seconds": 3.0})
    pl.DataFrame({"layer": [0, 1], "value": [0.5, 0.25], "job_seconds": [1.0, 2.0]}).write_parquet(root / "t/a.parquet")
    (root / "f.json").write_text(json.dumps({"v": 1.5, "timings_s": {"job": 3}, "l": [1, 2]}))
    (root / "r.md").write_text("text")
    return root


def test_identical_runs_and_each_kind_of_difference(tmp_path, capsys):
    a, b = _run(tmp_path / "a"), _run(tmp_path / "b")
    # timings differ between runs without making them differ
    write_store(b / "s.zarr", {"w": np.arange(12, dtype=np.float32).reshape(3, 4)}, {"k": 1, "seconds": 9.0})
    (b / "f.json").write_text(json.dumps({"v": 1.5, "timings_s": {"job": 99}, "l": [1, 2]}))
    assert all(o.same for o in compare(a, b))
    assert main(["compare-runs", str(a), str(b)]) == 0
    c = tmp_path / "c"
    shutil.copytree(b, c)
    w = np.arange(12, dtype=np.float32).reshape(3, 4)
    w[1, 2] += 1e-3
    write_store(c / "s.zarr", {"w": w}, {"k": 1})
    pl.DataFrame({"layer": pl.Series([0, 1], dtype=pl.Int32), "value": [0.5, 0.25],
                  "job_seconds": [5.0, 6.0]}).write_parquet(c / "t/a.parquet")
    (c / "f.json").write_text(json.dumps({"v": 1.5000001, "l": [1, 2]}))
    (c / "r.md").write_text("other text")
    got = {o.path: o for o in compare(a, c)}
    assert not got["s.zarr"].same and "up to 0.001" in got["s.zarr"].note
    assert got["t/a.parquet"].same and "types differ (layer: Int64 vs Int32)" in got["t/a.parquet"].note
    assert not got["f.json"].same and not got["r.md"].same
    assert {o.path for o in compare(a, c, atol=2e-3, float_rtol=1e-6) if not o.same} == {"r.md"}
    assert main(["compare-runs", str(a), str(c)]) == 1
    assert "DIFF  store  s.zarr" in capsys.readouterr().out
