"""The workflow on a real SLURM cluster (munged + slurmctld + slurmd on this machine).

A session fixture starts the cluster with scripts/slurm-local.sh (installing Debian's
packages if needed) and stops it at the end.  The tiny config runs with
`--executor slurm --workflow-profile profiles/slurm`; the profile's placeholders are
replaced on the command line by the local cluster's values (partition debug, no account),
everything else comes from the profile as a user would run it.  The first run loses one
scoring shard (scancel while it runs, as a time limit or a node failure would); the second
run must submit exactly that shard and its merge.  The results must equal a local run.

Skipped (with the reason) when not root or when apt cannot install the packages.
Budget: about 12 s per SLURM job on 2 cores; the module runs 7 SLURM jobs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr

from helpers.smkrun import (REPO, job_keys, key, local_rules, parse_jobs, rule_blocks, snakemake, tiny_targets,
                            tiny_workdir)
from helpers.tiny import save_tiny_model

pytestmark = pytest.mark.slurm

SCRIPT = REPO / "scripts" / "slurm-local.sh"
PROFILE = REPO / "profiles" / "slurm"
TARGETS = tiny_targets()
SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.")
LOST = "score_shard", "piqa", "1"  # the shard cancelled in the first run


def _sh(*args, timeout=60):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def slurm_cluster():
    if os.geteuid() != 0:
        pytest.skip("the SLURM test starts system daemons and may install packages: run pytest as root")
    was_running = _sh(SCRIPT, "status").returncode == 0
    try:
        start = _sh(SCRIPT, "start", timeout=600)
    except subprocess.TimeoutExpired:
        pytest.fail("scripts/slurm-local.sh start took more than 10 minutes")
    if start.returncode == 3:
        pytest.skip(f"no SLURM cluster possible here: {start.stderr.strip()[-500:]}")
    assert start.returncode == 0, f"scripts/slurm-local.sh start failed:\n{start.stderr[-4000:]}"
    yield
    if not was_running:  # leave a cluster someone else started (e.g. CI's trap) running
        stop = _sh(SCRIPT, "stop", timeout=120)
        assert stop.returncode == 0, stop.stderr
        assert _sh(SCRIPT, "status").returncode == 3, "daemons still running after stop"


def profile_overrides(profile: dict) -> list[str]:
    """Command-line values for the profile's <placeholders> on the local test cluster.

    A command-line key replaces the profile's whole entry, so the entries are rebuilt
    from the profile with only the placeholders changed: the profile's own resources
    stay in force.
    """
    def local(k, v):
        if isinstance(v, str) and v.startswith("<"):
            assert k == "slurm_partition", f"profile placeholder {k}: {v} has no local value in the test"
            return "debug"
        return v

    default = {k: local(k, v) for k, v in profile["default-resources"].items() if k != "slurm_account"}
    sets = {r: {k: local(k, v) for k, v in res.items()} for r, res in profile["set-resources"].items()}
    args = ["--default-resources", *(f"{k}={v}" for k, v in default.items()),
            "--set-resources", *(f"{r}:{k}={v}" for r, res in sets.items() for k, v in res.items())]
    assert "<" not in " ".join(args)
    return args


def slurm_args() -> list[str]:
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    assert profile["executor"] == "slurm" and profile["slurm-status-command"] == "squeue"
    # the overrides take lists (nargs="+"): they come first, then plain options
    return [*profile_overrides(profile),
            "--executor", "slurm", "--workflow-profile", str(PROFILE),
            "--slurm-no-account",  # the test cluster has no accounts
            "--slurm-init-seconds-before-status-checks", "1",  # MinJobAge=300 >= 3 x 1
            "--slurm-keep-successful-logs",  # kept as evidence of sbatch
            "--jobs", "2", "--latency-wait", "5",
            # one CPU per scoring job, so two shards share the 2-CPU node (also in the local run)
            "--set-threads", "score_shard=1", "--"]


def cancel_when_running(workdir: Path, comment: str, found: dict):
    """Watch squeue for the job with ``comment`` (the plugin's rule/wildcards tag), scancel it."""
    def watch(proc):
        deadline = time.monotonic() + 150
        while proc.poll() is None and time.monotonic() < deadline:
            q = _sh("squeue", "-h", "--states=PENDING,RUNNING", "--format=%i|%k|%T|%Z")
            for line in q.stdout.splitlines():
                jid, com, state, wd = line.split("|")
                if com == comment and Path(wd) == workdir:
                    found.update(jobid=jid, state=state, scancel=_sh("scancel", jid).returncode)
                    return
            time.sleep(0.2)

    def start(proc):
        threading.Thread(target=watch, args=(proc,), daemon=True).start()

    return start


def on_slurm(workdir: Path, *args, timeout: float, on_start=None):
    """A SLURM run; if it had to be killed, its queued and running jobs are cancelled too."""
    run = snakemake(workdir, *slurm_args(), *args, timeout=timeout, on_start=on_start)
    if run.timed_out:
        for uuid in re.findall(r"SLURM run ID: (\S+)", run.output):
            _sh("scancel", f"--name={uuid}")  # the plugin names every job of a run by its run ID
    return run


def submissions(run) -> dict[str, Path]:
    """SLURM job id -> the plugin's log file, from the run's output."""
    return {jid: Path(log) for _, jid, log in SUBMITTED.findall(run.output)}


def scontrol(jobid: str) -> dict:
    out = _sh("scontrol", "show", "job", jobid, "--oneliner").stdout
    return dict(kv.split("=", 1) for kv in out.split() if "=" in kv)


@pytest.fixture(scope="module")
def runs(slurm_cluster, tmp_path_factory):
    base = tmp_path_factory.mktemp("slurm")
    model = save_tiny_model(base / "model")
    swd = tiny_workdir(base / "on_slurm", model)
    lwd = tiny_workdir(base / "local", model)
    t0 = time.monotonic()
    cancelled: dict = {}
    comment = f"rule_{LOST[0]}_wildcards_tiny_{LOST[1]}_{LOST[2]}"
    first = on_slurm(swd, *TARGETS, timeout=240, on_start=cancel_when_running(swd, comment, cancelled))
    after_first = sorted(p.relative_to(swd).as_posix() for p in (swd / "results").rglob("*.zarr/zarr.json"))
    piqa_after_first = sorted(p.name for p in (swd / "results/scores/tiny/shards/piqa").iterdir())
    # the reference run on the head node overlaps the second SLURM run, which mostly waits on squeue
    local_box = {}
    ref = threading.Thread(target=lambda: local_box.update(run=snakemake(
        lwd, "--workflow-profile", str(REPO / "profiles" / "local"), "--cores", "2",
        "--set-threads", "score_shard=1", "--", *TARGETS, timeout=240)))
    ref.start()
    second = on_slurm(swd, *TARGETS, timeout=180)
    seconds = time.monotonic() - t0
    ref.join()
    local = local_box["run"]
    info = {"slurm_seconds": round(seconds, 1), "first": round(first.seconds, 1), "second": round(second.seconds, 1),
            "local": round(local.seconds, 1),
            "slurm_jobs": len(submissions(first)) + len(submissions(second)), "cancelled": cancelled}
    print("SLURM runs:", json.dumps(info))
    return {"slurm": swd, "local": lwd, "first": first, "second": second, "local_run": local,
            "after_first": after_first, "piqa_after_first": piqa_after_first,
            "cancelled": cancelled, "info": info}


def test_first_run_loses_exactly_the_cancelled_shard(runs):
    first, cancelled = runs["first"], runs["cancelled"]
    assert not first.timed_out, first.tail()
    assert cancelled.get("scancel") == 0, f"the shard job was never seen in squeue: {cancelled}\n{first.tail()}"
    assert first.returncode != 0, "a cancelled SLURM job must fail the run"
    assert re.search(rf"SLURM-job '{cancelled['jobid']}' failed, SLURM status is: 'CANCELLED'", first.output), \
        first.tail()
    # keep-going: every other shard finished and boolq merged; the lost shard left no store behind
    assert runs["after_first"] == ["results/scores/tiny/boolq.zarr/zarr.json",
                                   "results/scores/tiny/shards/boolq/0.zarr/zarr.json",
                                   "results/scores/tiny/shards/boolq/1.zarr/zarr.json",
                                   "results/scores/tiny/shards/piqa/0.zarr/zarr.json"]
    # no partial or temp files
    assert runs["piqa_after_first"] == ["0.gram.parquet", "0.probe.parquet", "0.stats.parquet", "0.zarr"]


def test_rerun_submits_only_the_lost_shard_and_its_merge(runs):
    second = runs["second"]
    assert second.returncode == 0, second.tail()
    jobs = job_keys(parse_jobs(second.output))
    assert jobs == {key("score_shard", model="tiny", domain="piqa", shard=1), key("merge_scores", model="tiny",
                                                                                 domain="piqa")}, second.tail()
    assert len(submissions(second)) == 2


def test_jobs_went_through_sbatch(runs):
    """Evidence from SLURM itself: every submitted job id is a COMPLETED (or the one CANCELLED)
    SLURM job whose working directory is the test's and whose output is the plugin's log."""
    swd = runs["slurm"].resolve()
    subs = {**submissions(runs["first"]), **submissions(runs["second"])}
    # 4 shards + 1 merge (boolq) in the first run, 1 shard + 1 merge in the second
    assert len(subs) == 7, runs["first"].tail() + runs["second"].tail()
    states = {}
    for jid, log in subs.items():
        info = scontrol(jid)
        assert info.get("JobId") == jid, f"scontrol does not know job {jid}"
        assert Path(info["WorkDir"]).resolve() == swd
        assert Path(info["StdOut"]).resolve() == (swd / log).resolve()
        assert info["Partition"] == "debug"
        states[jid] = info["JobState"]
        if info["JobState"] == "COMPLETED":  # kept with --slurm-keep-successful-logs
            text = (swd / log).read_text()
            assert "Finished jobid" in text or "Finished job" in text, text[-2000:]
    assert sorted(states.values()) == ["CANCELLED"] + ["COMPLETED"] * 6, states
    assert states[runs["cancelled"]["jobid"]] == "CANCELLED"
    # squeue (the profile's status command) lists them too, until MinJobAge (300 s) passes
    q = _sh("squeue", "-h", "--states=all", "-j", ",".join(subs), "--format=%i|%T|%k").stdout.split()
    rules = sorted(line.split("|")[2].split("_wildcards_")[0] for line in q)
    assert rules == ["rule_merge_scores"] * 2 + ["rule_score_shard"] * 5
    # the plugin's log tree: .snakemake/slurm_logs/rule_<rule>/<wildcards>/<jobid>.log
    # (a job cancelled while PENDING never started, so it has no log)
    logs = {p.resolve() for p in (swd / ".snakemake/slurm_logs").rglob("*.log")}
    completed = {(swd / subs[j]).resolve() for j, st in states.items() if st == "COMPLETED"}
    assert completed <= logs <= {(swd / p).resolve() for p in subs.values()}
    assert all(re.fullmatch(r"rule_(score_shard|merge_scores)/tiny_\w+/\d+\.log",
                            p.relative_to((swd / ".snakemake/slurm_logs").resolve()).as_posix()) for p in logs)
    # light rules ran on the head node, not through sbatch
    assert "localrule domain_table:" in runs["first"].output


def _files(root: Path) -> dict[str, Path]:
    out = {}
    for p in sorted((root / "results").rglob("*")):
        if ".zarr" in p.relative_to(root).as_posix():
            continue
        if p.is_file():
            out[p.relative_to(root).as_posix()] = p
    for p in sorted((root / "results").rglob("*.zarr")):
        out[p.relative_to(root).as_posix()] = p
    return out


@pytest.mark.filterwarnings("ignore:Object at .snakemake_timestamp:UserWarning")
def test_results_equal_a_local_run(runs):
    local_run = runs["local_run"]
    assert local_run.returncode == 0, local_run.tail()
    assert runs["second"].returncode == 0
    remote, local = _files(runs["slurm"]), _files(runs["local"])
    assert sorted(remote) == sorted(local)
    # tables; stats, gram, probe tables per merge and per shard
    assert sum(p.endswith(".parquet") for p in local) == 2 + 2 * 3 + 4 * 3
    assert sum(p.endswith(".zarr") for p in local) == 2 + 4
    for rel, path in local.items():
        other = remote[rel]
        if rel.endswith(".parquet"):  # deterministic: same bytes
            assert path.read_bytes() == other.read_bytes(), rel
        else:
            a, b = zarr.open_group(str(path), mode="r"), zarr.open_group(str(other), mode="r")
            volatile = {"seconds"}  # wall time of the scoring pass
            assert {k: v for k, v in a.attrs.items() if k not in volatile} == \
                   {k: v for k, v in b.attrs.items() if k not in volatile}, rel
            names = sorted(a.array_keys())
            assert names == sorted(b.array_keys()) and len(names) == 3 * 7, rel  # 3 layers x 7 matrices
            for n in names:
                x, y = a[n][...], b[n][...]
                assert x.dtype == y.dtype == np.float32 and np.isfinite(x).all()
                np.testing.assert_array_equal(x, y, err_msg=f"{rel}/{n}")


def test_slurm_profile_placeholders_and_gpu_rules():
    """The profile maps every model-loading rule (gpu resource) to a GPU partition entry,
    and only the data, concatenation and figure rules run on the head node."""
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    blocks = rule_blocks()
    gpu_rules = {name for name, body in blocks.items() if re.search(r"^\s+gpu=", body, re.M)}
    assert {"score_shard", "score_panel", "score_pairs"} <= gpu_rules
    assert gpu_rules <= set(profile["set-resources"])
    local = local_rules()
    assert not local & gpu_rules
    assert {"fetch_asset", "domain_table", "heldout_text", "pairset", "merge_panel", "sts_eval"} <= local
    figure_rules = {name for name, body in blocks.items() if re.search(r"\b(report|figure)\(", body)}
    assert {"analysis_figures", "sts_eval", "pruning_table"} <= figure_rules
    assert figure_rules <= local, f"rules with report() figures must be localrule: {figure_rules - local}"


# ------------------------------------------------------------------ 7B dry run

PAPER = REPO / "config" / "paper.yaml"
GPU_RULES = {"score_shard", "score_panel", "score_pairs", "prune_evaluate", "evaluate_dense"}


@pytest.mark.skipif(not PAPER.is_file(), reason="config/paper.yaml is absent")
def test_7b_dry_run_with_the_slurm_profile(tmp_path):
    """The paper's settings (Llama-2-7B from the hub, 9 hub domains) with the SLURM profile:
    a hub model and hub datasets are no input files, so the dry run needs no network."""
    cfg = yaml.safe_load(PAPER.read_text())
    run = snakemake(tmp_path, "-n", "--executor", "slurm", "--workflow-profile", str(PROFILE), configfile=PAPER,
                    timeout=180)
    assert run.returncode == 0, run.tail()
    jobs = parse_jobs(run.output)
    count = {}
    for j in jobs:
        count[j.rule] = count.get(j.rule, 0) + 1
    (model, spec), = cfg["models"].items()
    assert (spec["source"], spec["device"], spec["dtype"], spec["size_b"]) == ("hub", "cuda", "bfloat16", 6.7)
    sc, sim = cfg["scoring"], cfg["similarity"]
    # 9 domains x 64 samples / shard_size 16 = 36 scoring shards, one merge per domain
    assert count["score_shard"] == len(cfg["domains"]) * -(-sc["samples"] // sc["shard_size"]) == 36
    assert count["merge_scores"] == len(cfg["domains"]) == 9
    assert count["score_panel"] == -(-sim["samples"] // sc["shard_size"]) == 4 and count["merge_panel"] == 1
    assert count["score_pairs"] == len(cfg["sts"]["pairsets"])
    assert "convert_model" not in count  # hub weights: nothing to convert
    print("paper.yaml dry run:", json.dumps(count))
    local = local_rules()
    weight_gb = 6.7 * 2
    for j in jobs:
        r = j.resources
        assert j.rule in local or set(r) >= {"mem_mb", "runtime"}, j
        if j.rule in GPU_RULES:
            assert j.rule not in local and r["gpu"] == "1" and r["slurm_partition"] == "<gpu-partition>", j
            assert int(r["mem_mb"]) > weight_gb * 1024  # the host holds the bf16 weights while loading
        else:
            assert "gpu" not in r, j
            if j.rule not in local:
                assert r["slurm_partition"] == "<cpu-partition>", j
        if j.rule in ("score_shard", "score_panel"):
            assert int(r["mem_mb"]) == int((1.5 * weight_gb + 4) * 1024)
            assert 10 <= int(r["runtime"]) <= 60
        if j.rule == "merge_scores":  # streams one matrix: 24 bytes per element of the largest + 1 GB
            assert int(r["mem_mb"]) == int((24 * 0.28 * 6.7e9 / 32 / 1e9 + 1) * 1024) < 8 * 1024
        if any(o.endswith((".svg", ".png", ".html")) for o in j.output):
            assert j.rule in local, f"{j.rule} writes a figure or page but is not a localrule"
    assert {"domain_table", "merge_panel", "analysis_figures", "report_html"} <= {j.rule for j in jobs} & local
    # docs/cluster.md's worked example prints these counts: they must be this dry run's
    doc = (REPO / "docs" / "cluster.md").read_text()
    gpu = sum(1 for j in jobs if j.rule in GPU_RULES)
    light = sum(1 for j in jobs if j.rule in local and j.rule != "all")
    total = sum(1 for j in jobs if j.rule != "all")
    assert f"lists {total} jobs" in doc and f"and {count['prune_evaluate']} pruning runs" in doc
    assert f"That is {gpu} GPU jobs and {total - gpu - light} CPU jobs through `sbatch`, {light} light jobs" in doc
