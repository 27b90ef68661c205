"""GPU claiming: concurrent jobs on one host get different devices; schedulers' choices are kept."""

import os
import subprocess
import sys
import textwrap


def _claim(lockdir, n_gpus, hold_s):
    code = textwrap.dedent(f"""
        import os, time
        os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        os.environ["ACTPAT_GPU_LOCK_DIR"] = {str(lockdir)!r}
        from actpat.gpus import claim_gpu
        ids = claim_gpu(1, wait_s=5, n_gpus={n_gpus})
        print(os.environ["CUDA_VISIBLE_DEVICES"], flush=True)
        time.sleep({hold_s})
    """)
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)


def test_concurrent_jobs_get_distinct_gpus(tmp_path):
    procs = [_claim(tmp_path, 3, 3) for _ in range(3)]
    got = sorted(p.stdout.readline().strip() for p in procs)
    for p in procs:
        p.wait(timeout=30)
    assert got == ["0", "1", "2"]


def test_lock_released_when_a_job_ends(tmp_path):
    first = _claim(tmp_path, 2, 0)
    first_id = first.stdout.readline().strip()
    first.wait(timeout=30)
    again = [_claim(tmp_path, 2, 1) for _ in range(2)]
    got = sorted(p.stdout.readline().strip() for p in again)
    for p in again:
        p.wait(timeout=30)
    assert first_id in ("0", "1") and got == ["0", "1"]


def test_scheduler_choice_is_kept(monkeypatch):
    from actpat.gpus import claim_gpu

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert claim_gpu(1, n_gpus=8) is None
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"


def test_two_gpu_jobs_started_together_use_different_devices(tmp_path):
    """Every rule with a gpu resource claims its device in rule_logging (scoring, pruning, evaluation alike):
    two jobs started together on a simulated two-GPU host get GPU 0 and GPU 1."""
    code = textwrap.dedent("""
        import os, sys, time, types
        from actpat.workflow import rule_logging
        job = types.SimpleNamespace(rule=sys.argv[1], wildcards={}, log=[sys.argv[2]], threads=1,
                                    resources={"gpu": 1})
        with rule_logging(job):
            print(os.environ["CUDA_VISIBLE_DEVICES"], flush=True)
            time.sleep(3)
    """)
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env |= {"ACTPAT_GPU_COUNT": "2", "ACTPAT_GPU_LOCK_DIR": str(tmp_path / "locks")}
    procs = [subprocess.Popen([sys.executable, "-c", code, rule, str(tmp_path / f"{rule}.log")],
                              stdout=subprocess.PIPE, text=True, env=env)
             for rule in ("prune_evaluate", "score_shard")]
    got = sorted(p.stdout.readline().strip() for p in procs)
    for p in procs:
        p.wait(timeout=30)
    assert got == ["0", "1"]
    assert "using GPU(s)" in (tmp_path / "prune_evaluate.log").read_text()
