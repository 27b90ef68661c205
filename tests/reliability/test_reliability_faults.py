"""Faults and interruptions: a killed job, a full disk and a damaged store never pass for results.

* SIGKILL of a real ``score_shard`` job run by Snakemake (tiny saved model, local data): right
  after the kill there is no store that looks complete, Snakemake plans the job again, and the
  rerun equals an uninterrupted computation bit for bit;
* SIGKILL inside ``write_store`` (in a child process, after some arrays were written): the store
  at the final path is still the earlier one, and the leftover temporary folder is removed by
  the next write; SIGTERM (a SLURM time limit) inside a rule removes the partial store at once
  and is logged;
* a full disk (a 2 MB tmpfs, filled): the job fails with ENOSPC, earlier results stay intact,
  no temporary file is left;
* a corrupted or missing Zarr chunk: reading fails naming the store and the array, in the engine
  and in the analysis rules (density through Snakemake), instead of giving numbers.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from actpat.analysis.density import layer_density
from actpat.engine import jobs
from actpat.engine.scorer import ScoreOptions
from actpat.engine.store import ScoreStore, StoreError, merge_sum_stores, write_store

from helpers import REPO
from helpers.analysis_synth import write_workdir
from helpers.reliability import RELIABILITY_RUN, base_config, cmdline, descendants, make_workdir, write_config
from helpers.smkrun import SNAKEMAKE, snakemake
from helpers.tiny import save_tiny_model

LOAD = {"dtype": "float32", "device": "cpu"}


def _arrays(value: float, n: int = 6) -> dict:
    return {f"model.layers.{i}.mlp.w.weight": np.full((64, 32), value, np.float32) for i in range(n)}


def _attrs(n: int = 6) -> dict:
    return {"model": "m", "domain": "d", "target": "max_logit", "layers": n, "kind": "sum", "n_samples": 1,
            "weights": [{"name": f"model.layers.{i}.mlp.w.weight", "layer": i, "matrix": "mlp.w", "shape": [64, 32]}
                        for i in range(n)]}


# ------------------------------------------------------------ killed while writing a store

KILL_DURING_WRITE = """
import os, signal, sys
import numpy as np
from actpat.engine import store
calls = [0]
real = store._to_numpy
def dying(x):
    calls[0] += 1
    if calls[0] == 4:  # three arrays are on disk in the temporary store: die like a node failure
        os.kill(os.getpid(), signal.SIGKILL)
    return real(x)
store._to_numpy = dying
arrays = {f"model.layers.{i}.mlp.w.weight": np.full((64, 32), 2.0, np.float32) for i in range(6)}
store.write_store(sys.argv[1], arrays, {"model": "m", "kind": "sum"})
"""


@pytest.mark.parametrize("earlier", [True, False], ids=["over-earlier-store", "fresh"])
def test_sigkill_inside_write_store_never_leaves_a_complete_looking_store(tmp_path, earlier):
    path = tmp_path / "0.zarr"
    if earlier:
        write_store(path, _arrays(1.0), _attrs())
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([sys.executable, "-c", KILL_DURING_WRITE, str(path)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    stale = list(tmp_path.glob(".0.zarr.*.tmp"))
    assert len(stale) == 1 and len(list(stale[0].rglob("zarr.json"))) >= 3  # the half-written store is there ...
    if earlier:  # ... but the final path still holds the earlier, complete store
        st = ScoreStore(path)
        assert st.attrs["kind"] == "sum" and st.attrs["n_samples"] == 1
        assert all(np.all(a == 1.0) for _, a in st.items())
    else:
        assert not path.exists()
        with pytest.raises(StoreError, match="not a complete score store"):
            ScoreStore(path)
    # the next write of this path (the rerun of the job) clears the leftover
    write_store(path, _arrays(3.0), _attrs())
    assert not list(tmp_path.glob(".0.zarr.*.tmp"))
    assert all(np.all(a == 3.0) for _, a in ScoreStore(path).items())


def test_exception_inside_write_store_cleans_up(tmp_path, monkeypatch):
    from actpat.engine import store

    write_store(tmp_path / "s.zarr", _arrays(1.0), _attrs())
    calls = [0]
    real = store._to_numpy

    def failing(x):
        calls[0] += 1
        if calls[0] == 3:
            raise KeyboardInterrupt  # Ctrl-C, or Snakemake's SIGTERM turned into an exception
        return real(x)

    monkeypatch.setattr(store, "_to_numpy", failing)
    with pytest.raises(KeyboardInterrupt):
        write_store(tmp_path / "s.zarr", _arrays(2.0), _attrs())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr"]
    assert all(np.all(a == 1.0) for _, a in ScoreStore(tmp_path / "s.zarr").items())


TERM_DURING_WRITE = """
import sys, time
from pathlib import Path
from types import SimpleNamespace
import numpy as np
from actpat.engine import store
from actpat.workflow import rule_logging
real = store._to_numpy
def slow(x):
    Path(sys.argv[2]).touch()  # writing has started
    time.sleep(0.5)
    return real(x)
store._to_numpy = slow
smk = SimpleNamespace(log=[sys.argv[3]], rule="score_shard", wildcards={"shard": "0"})
with rule_logging(smk):
    arrays = {f"a{i}": np.full((8, 8), 2.0, np.float32) for i in range(40)}
    store.write_store(sys.argv[1], arrays, {"model": "m"})
"""


def test_sigterm_inside_a_rule_removes_the_partial_store_and_is_logged(tmp_path):
    """SIGTERM (SLURM's time limit, Snakemake stopping its jobs) runs the writers' cleanup."""
    path, started, log = tmp_path / "0.zarr", tmp_path / "started", tmp_path / "job.log"
    write_store(path, _arrays(1.0), _attrs())
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen([sys.executable, "-c", TERM_DURING_WRITE, str(path), str(started), str(log)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while not started.exists() and time.time() - t0 < 120 and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode not in (0, None) and "Terminated: received SIGTERM" in err, err[-2000:]
    assert "rule score_shard was terminated (received SIGTERM)" in log.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.zarr", "job.log", "started"]  # no temporary store
    assert all(np.all(a == 1.0) for _, a in ScoreStore(path).items())  # the earlier store is untouched


# ----------------------------------------------------- SIGKILL of a real score_shard job

SLOW = {"samples": 12, "batch_size": 1, "shard_size": 12, "max_tokens": 96}
SHARD = "results/scores/tiny/shards/qa/0.zarr"


def _wait_for_progress(log: Path, proc, total: int, timeout: float = 240.0) -> int:
    """Block until the job's tqdm line in its log shows 1 <= k < total samples done; return k."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"snakemake ended before the job could be killed:\n{proc.stdout.read()[-3000:]}")
        if log.is_file():
            done = [int(k) for k in re.findall(rf"(\d+)/{total} ", log.read_text(errors="replace"))]
            if done and 1 <= max(done) < total:
                return max(done)
            if done and max(done) >= total:
                raise AssertionError("the job finished before it could be killed; make it slower")
        time.sleep(0.05)
    raise AssertionError(f"no progress in {log} after {timeout} s")


@pytest.mark.slow  # about a minute: three Snakemake runs with a real scoring job
def test_sigkill_of_a_scoring_job_then_rerun_equals_uninterrupted(tmp_path):
    wd = make_workdir(tmp_path / "wd", rows=24)
    cfg = write_config(wd / "config.yaml", base_config(scoring=SLOW, data={"seed": 1, "pool": 20}))
    # the table first (fast), so that the scoring job is the only one running when we kill
    assert snakemake(wd, "results/data/qa.parquet", configfile=cfg, timeout=600, **RELIABILITY_RUN).returncode == 0
    proc = snakemake(wd, SHARD, configfile=cfg, popen=True, profile=True, **RELIABILITY_RUN)
    try:
        done = _wait_for_progress(wd / "logs/score_shard/tiny/qa/0.log", proc, SLOW["samples"])
        job = [p for p in descendants(proc.pid) if "score_shard.py" in cmdline(p)]
        assert len(job) == 1, [cmdline(p) for p in descendants(proc.pid)]
        os.kill(job[0], signal.SIGKILL)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode != 0 and "Error in rule score_shard" in out, out[-3000:]
    assert 1 <= done < SLOW["samples"]
    # right after the kill: nothing that looks like a finished store, stats or gram table
    shard_dir = wd / "results/scores/tiny/shards/qa"
    with pytest.raises(StoreError, match="not a complete score store"):
        ScoreStore(wd / SHARD)
    assert not (shard_dir / "0.stats.parquet").exists() and not (shard_dir / "0.gram.parquet").exists()
    # Snakemake runs the job again (local profile: --rerun-incomplete), and it completes
    rerun = snakemake(wd, SHARD, configfile=cfg, timeout=600, profile=True, **RELIABILITY_RUN)
    out = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, out[-3000:]
    assert re.search(r"score_shard\s+1", out) and "rule score_shard:" in out, out[-3000:]
    assert not list(shard_dir.glob(".*.tmp"))
    # the rerun equals an uninterrupted computation of the same rows, bit for bit
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the job ran with --cores 1, so one thread
    try:
        ref = tmp_path / "ref"
        jobs.score_domain_shard(model_name="tiny", load={"load_from": str(wd / "model"), **LOAD},
                                table=wd / "results/data/qa.parquet", rows=range(0, SLOW["samples"]),
                                opts=ScoreOptions(max_tokens=SLOW["max_tokens"], thresholds=(1e-3,), truncation="left"),
                                batch_size=SLOW["batch_size"], out_store=ref / "0.zarr",
                                out_stats=ref / "0.stats.parquet", out_gram=ref / "0.gram.parquet")
    finally:
        torch.set_num_threads(threads)
    got, want = ScoreStore(wd / SHARD), ScoreStore(ref / "0.zarr")
    assert got.attrs["n_samples"] == want.attrs["n_samples"] == SLOW["samples"]
    assert got.attrs["sample_ids"] == want.attrs["sample_ids"]
    for name in want.names:
        np.testing.assert_array_equal(got.read(name), want.read(name), err_msg=name)
    assert pl.read_parquet(shard_dir / "0.stats.parquet").equals(pl.read_parquet(ref / "0.stats.parquet"))


# ------------------------------------------------- temporary shard stores around the merge

MERGED = "results/scores/tiny/qa.zarr"
SHARDS = [f"results/scores/tiny/shards/qa/{i}.zarr" for i in (0, 1)]


def test_shard_stores_are_deleted_after_a_verified_merge_and_kept_when_it_fails(tmp_path):
    """scoring.keep_shards false (the default): a failed merge (a corrupted shard) keeps every shard
    and writes no merged store; once the shard is scored again, the merge succeeds, reads its store
    back, and Snakemake deletes the shard stores (their small tables stay); a second run does nothing;
    the merged store equals the mean of the shards' sums."""
    wd = make_workdir(tmp_path / "wd", rows=24)
    cfg = write_config(wd / "config.yaml", base_config())
    # the shards alone first (as targets, Snakemake keeps temporary files)
    assert snakemake(wd, *SHARDS, configfile=cfg, timeout=600, **RELIABILITY_RUN).returncode == 0
    sums = [{n: a.astype(np.float64) for n, a in ScoreStore(wd / p).items()} for p in SHARDS]
    n = sum(int(ScoreStore(wd / p).attrs["n_samples"]) for p in SHARDS)
    name = "model.layers.1.mlp.up_proj.weight"
    (chunk,) = [p for p in (wd / SHARDS[1] / name).rglob("*") if p.is_file() and p.name != "zarr.json"]
    good = chunk.read_bytes()
    raw = bytearray(good)
    raw[len(raw) // 3] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    failed = snakemake(wd, MERGED, configfile=cfg, timeout=600, **RELIABILITY_RUN)
    assert failed.returncode != 0 and "Error in rule merge_scores" in failed.stdout + failed.stderr
    assert all((wd / p / "zarr.json").is_file() for p in SHARDS) and not (wd / MERGED).exists()
    chunk.write_bytes(good)  # as if the shard were scored again (same rows, same bytes)
    run = snakemake(wd, MERGED, configfile=cfg, timeout=600, **RELIABILITY_RUN)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert not any((wd / p).exists() for p in SHARDS)  # temporary: deleted after the merge
    assert (wd / "results/scores/tiny/shards/qa/0.stats.parquet").is_file()
    merged = ScoreStore(wd / MERGED)
    for w, a in merged.items():
        np.testing.assert_array_equal(a, ((sums[0][w] + sums[1][w]) / n).astype(np.float32), err_msg=w)
    again = snakemake(wd, MERGED, configfile=cfg, timeout=300, **RELIABILITY_RUN)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


# --------------------------------------------------------------------------- full disk

@pytest.fixture
def tiny_disk(tmp_path):
    """A 2 MB tmpfs (root only); skipped where mounting is not allowed."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(mnt: Path, leave: int = 8 << 10) -> None:
    """Fill the file system up to ``leave`` free bytes."""
    st = os.statvfs(mnt)
    free = st.f_bavail * st.f_frsize
    with open(mnt / "filler", "wb") as f:
        try:
            f.write(b"\0" * max(free - leave, 0))
        except OSError as e:
            assert e.errno == errno.ENOSPC


def test_full_disk_fails_the_job_cleanly_and_keeps_earlier_results(tmp_path, tiny_disk):
    model_dir = save_tiny_model(tmp_path / "m")
    table = tmp_path / "x.parquet"
    pl.DataFrame({"id": [f"x{i}" for i in range(4)], "domain": "x",
                  "text": ["one text here", "and another one", "a third sample", "the fourth"]}).write_parquet(table)
    out = tiny_disk / "shards"

    def shard(rows):
        return jobs.score_domain_shard(model_name="tiny", load={"load_from": str(model_dir), **LOAD}, table=table,
                                       rows=rows, opts=ScoreOptions(thresholds=(1e-3,)), batch_size=2,
                                       out_store=out / "0.zarr", out_stats=out / "0.stats.parquet",
                                       out_gram=out / "0.gram.parquet")

    shard(range(0, 2))  # earlier results, complete
    before = {n: a.copy() for n, a in ScoreStore(out / "0.zarr").items()}
    stats_before = (out / "0.stats.parquet").read_bytes()
    _fill(tiny_disk)
    with pytest.raises(OSError) as e:
        shard(range(0, 4))  # the rerun with other rows cannot be written
    assert e.value.errno == errno.ENOSPC or "No space left" in str(e.value)
    after = ScoreStore(out / "0.zarr")
    assert after.attrs["rows"] == [0, 2] and sorted(after.names) == sorted(before)
    for n, a in before.items():
        np.testing.assert_array_equal(after.read(n), a)
    assert (out / "0.stats.parquet").read_bytes() == stats_before
    assert sorted(p.name for p in out.iterdir()) == ["0.gram.parquet", "0.stats.parquet", "0.zarr"]  # no temp left
    # once space is back, the same job succeeds
    (tiny_disk / "filler").unlink()
    shard(range(0, 4))
    assert ScoreStore(out / "0.zarr").attrs["rows"] == [0, 4]


def test_full_disk_for_atomic_table_writes(tiny_disk):
    from actpat.atomic import write_parquet as atomic_parquet
    from actpat.data.tables import write_parquet as table_parquet

    df = pl.DataFrame({"id": [f"r{i}" for i in range(20)], "text": ["words " * 50] * 20})
    for k, write in enumerate((atomic_parquet, table_parquet)):
        path = tiny_disk / f"t{k}.parquet"
        write(df.head(2), path)
        old = path.read_bytes()
        _fill(tiny_disk, leave=2 << 10)
        big = pl.DataFrame({"id": [f"r{i}" for i in range(4000)], "text": [os.urandom(64).hex() for _ in range(4000)]})
        with pytest.raises(Exception, match="No space left on device"):  # polars wraps ENOSPC in a ComputeError
            write(big, path)
        assert path.read_bytes() == old
        assert sorted(p.name for p in tiny_disk.iterdir() if p.name.startswith(".")) == []
        (tiny_disk / "filler").unlink()


# ------------------------------------------------------------------- damaged stores

@pytest.fixture
def store(tmp_path):
    return write_store(tmp_path / "s.zarr", _arrays(0.5), _attrs())


def _chunks(path: Path, array: str) -> list[Path]:
    return sorted(p for p in (path / array).rglob("*") if p.is_file() and p.name != "zarr.json")


def test_flipped_bytes_fail_the_checksum_naming_store_and_array(store):
    name = "model.layers.2.mlp.w.weight"
    chunk = _chunks(store, name)[0]
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    with pytest.raises(StoreError, match=rf"s\.zarr: array '{re.escape(name)}' cannot be read .*corrupted"):
        ScoreStore(store).read(name)
    with pytest.raises(StoreError, match=re.escape(name)):
        layer_density(store, [0.1])  # the density table, where the pruning allocation's N_i come from
    with pytest.raises(StoreError, match=re.escape(name)):
        merge_sum_stores([store], store.parent / "m.zarr")
    assert not (store.parent / "m.zarr").exists()


def test_missing_chunk_is_detected_instead_of_reading_nan(store):
    name = "model.layers.4.mlp.w.weight"
    for c in _chunks(store, name):
        c.unlink()
    with pytest.raises(StoreError, match=rf"array '{re.escape(name)}' holds a non-finite value at flat index 0 "
                                         r"\(2048 in all; a missing chunk reads as NaN\)"):
        ScoreStore(store).read(name)


def test_truncated_chunk_is_detected(store):
    name = "model.layers.0.mlp.w.weight"
    chunk = _chunks(store, name)[0]
    chunk.write_bytes(chunk.read_bytes()[:5])
    with pytest.raises(StoreError, match=re.escape(name)):
        ScoreStore(store).read(name)


def test_density_analysis_surfaces_corruption(tmp_path):
    from helpers.analysis_synth import humped_store

    path = humped_store(tmp_path / "h.zarr", n_layers=4)
    name = "model.layers.1.mlp.up_proj.weight"
    chunk = _chunks(path, name)[0]
    raw = bytearray(chunk.read_bytes())
    raw[-6] ^= 0x01
    chunk.write_bytes(bytes(raw))
    with pytest.raises(StoreError, match=re.escape(name)):
        layer_density(path, [1e-5])


def test_density_rule_fails_naming_the_array(tmp_path):
    """Through Snakemake: the analysis job fails and its log names store and array; no table is written."""
    wd = write_workdir(tmp_path / "wd")
    store_path = wd / "results/scores/toy/mmlu.zarr"
    name = "model.layers.3.mlp.down_proj.weight"
    chunk = _chunks(store_path, name)[0]
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1"}
    target = "results/analysis/toy/density/mmlu.parquet"
    r = subprocess.run([SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(wd), "--cores", "1", "--allowed-rules",
                        "density", "--rerun-triggers", "mtime", "params", "--", target], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode != 0
    log = (wd / "logs/density/toy/mmlu.log").read_text()
    assert "mmlu.zarr: array 'model.layers.3.mlp.down_proj.weight' cannot be read" in log, log[-2000:]
    assert not (wd / target).exists()


def test_merge_refuses_shards_scored_with_other_weights(tmp_path):
    """Shards of one domain scored with two different checkpoints must not be averaged together."""
    a_dir = save_tiny_model(tmp_path / "a", seed=0)
    b_dir = save_tiny_model(tmp_path / "b", seed=1)
    pl.DataFrame({"id": ["x0", "x1"], "domain": "x",
                  "text": ["one text", "two texts"]}).write_parquet(tmp_path / "x.parquet")
    outs = []
    for k, d in enumerate((a_dir, b_dir)):
        o = tmp_path / f"s{k}"
        jobs.score_domain_shard(model_name="tiny", load={"load_from": str(d), **LOAD}, table=tmp_path / "x.parquet",
                                rows=range(k, k + 1), opts=ScoreOptions(), batch_size=1, out_store=o / "s.zarr",
                                out_stats=o / "s.stats.parquet", out_gram=o / "s.gram.parquet")
        outs.append(o / "s.zarr")
    with pytest.raises(StoreError, match=r"scored with other model weights \(model_fingerprint\.sha256 differs\)"):
        merge_sum_stores(outs, tmp_path / "m.zarr")
