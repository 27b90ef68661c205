"""Incremental reruns: editing the config reruns exactly the jobs that depend on the edit.

The tiny config's data, scoring and panel jobs run once for real (one minute on 2 cores);
every check after that is a dry run (`snakemake -n`) on an edited copy of the config, with
the rerun triggers of profiles/local (mtime, params, input, code, software-env).  Each rule
passes every config value it uses through `params:`, so a changed value shows up as
"Params have changed since last execution" on exactly the jobs that read it, and their
downstream jobs follow through their updated inputs.
"""

from __future__ import annotations

import copy
import os
import shutil

import pytest
import yaml

from helpers.smkrun import REPO, TINY_CONFIG, job_keys, key, parse_jobs, snakemake, tiny_targets, tiny_workdir
from helpers.tiny import save_tiny_model

PROFILE = ["--workflow-profile", str(REPO / "profiles" / "local")]
BASE = yaml.safe_load(TINY_CONFIG.read_text())
PANEL = ["results/similarity/tiny/panel.gram.parquet"]
DOMAINS = ("boolq", "piqa")


def targets(domains=DOMAINS):
    return tiny_targets(domains=domains) + PANEL


def tables(*ds):
    return {key("domain_table", domain=d) for d in ds}


def shards(*ds, n=2):
    return {key("score_shard", model="tiny", domain=d, shard=s) for d in ds for s in range(n)}


def merges(*ds):
    return {key("merge_scores", model="tiny", domain=d) for d in ds}


PANEL_JOBS = {key("score_panel", model="tiny", shard=s) for s in (0, 1)} | {key("merge_panel", model="tiny")}


SNAKEFILE = {}  # the workflow copy the module's runs use (fixture code)


@pytest.fixture(scope="module")
def code(tmp_path_factory):
    """A copy of the workflow and the package, so that a test can edit the package code."""
    copy_ = tmp_path_factory.mktemp("code") / "repo"
    copy_.mkdir()
    for part in ("Snakefile", "rules", "scripts", "src", "report", "envs", "config"):
        src = REPO / part
        (shutil.copytree(src, copy_ / part, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
         if src.is_dir() else shutil.copy2(src, copy_ / part))
    return copy_


@pytest.fixture(scope="module")
def done(tmp_path_factory, code):
    """A working directory where the tiny workflow (tables, shards, merges, panel) has run."""
    base = tmp_path_factory.mktemp("incremental")
    wd = tiny_workdir(base / "wd", save_tiny_model(base / "model"))
    run = snakemake(wd, *PROFILE, "--cores", "2", "--set-threads", "score_shard=1", "score_panel=1", "--",
                    *targets(), timeout=300, snakefile=code / "Snakefile")
    assert run.returncode == 0, run.tail()
    SNAKEFILE["path"] = code / "Snakefile"
    return wd


def dry(wd, cfg: dict, targets_=None, *extra, sort_keys=True):
    path = wd.parent / "edited.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=sort_keys))
    run = snakemake(wd, *PROFILE, "-n", *extra, "--", *(targets_ or targets()), configfile=path, timeout=120,
                    snakefile=SNAKEFILE["path"])
    assert run.returncode == 0, run.tail()
    return run, parse_jobs(run.output)


def edited(**changes):
    """A copy of the tiny config with `section.key=value` edits (underscores for dots)."""
    cfg = copy.deepcopy(BASE)
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = cfg
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return cfg


def test_unchanged_config_has_nothing_to_do(done):
    _, jobs = dry(done, BASE)
    assert job_keys(jobs) == set()


def test_code_changes_rerun_exactly_the_rules_that_run_that_code(done):
    """params: code (actpat.codehash): editing package code reruns the rules whose scripts reach it."""
    pkg = SNAKEFILE["path"].parent / "src" / "actpat"
    store = pkg / "engine" / "store.py"
    unrelated = pkg / "analysis" / "sts.py"  # reached by no rule of these targets
    script = SNAKEFILE["path"].parent / "scripts" / "merge_scores.py"
    saved = {p: p.read_text() for p in (store, unrelated, script)}
    script_stat = script.stat()
    try:
        # comments and docstrings are not code
        store.write_text(saved[store].replace('"""', '"""Edited docstring. ', 1) + "\n# a comment\n")
        unrelated.write_text(saved[unrelated] + "\n\ndef added():\n    return 1\n")
        _, jobs = dry(done, BASE)
        assert job_keys(jobs) == set()
        # code: the store module is run by the scoring shards, the merges and the panel
        store.write_text(saved[store] + "\n\ndef added():\n    return 1\n")
        _, jobs = dry(done, BASE)
        assert job_keys(jobs) == shards(*DOMAINS) | merges(*DOMAINS) | PANEL_JOBS
        for j in jobs:  # the merges follow their shards (Snakemake names that reason first)
            if j.rule in ("score_shard", "score_panel"):
                assert "Params have changed since last execution" in j.reason, (j.rule, j.reason)
        store.write_text(saved[store])
        # a rule's own script: Snakemake's code trigger (the script's mtime), that rule only
        script.write_text(saved[script] + "\nlog_done = True\n")
        _, jobs = dry(done, BASE)
        assert job_keys(jobs) == merges(*DOMAINS)
    finally:
        for p, text in saved.items():
            p.write_text(text)
        os.utime(script, ns=(script_stat.st_atime_ns, script_stat.st_mtime_ns))
    _, jobs = dry(done, BASE)
    assert job_keys(jobs) == set()


def reversed_keys(x):
    if isinstance(x, dict):
        return {k: reversed_keys(x[k]) for k in reversed(list(x))}
    return x


def test_reordered_keys_and_explicit_defaults_rerun_nothing(done):
    """YAML mappings are unordered: the params trigger must not see key order (Snakemake
    compares the repr of each param, so actpat.config.check_config sorts every mapping)."""
    cfg = reversed_keys(BASE)
    cfg["domains"]["piqa"]["split"] = "validation"  # the schema's default, now written out
    _, jobs = dry(done, cfg, sort_keys=False)
    assert list(cfg["domains"]["boolq"]) == ["path", "format", "source"]
    assert job_keys(jobs) == set()


def test_batch_size_reruns_the_scoring_shards_only(done):
    run, jobs = dry(done, edited(scoring__batch_size=1))
    assert job_keys(jobs) == shards(*DOMAINS) | merges(*DOMAINS)
    for j in jobs:
        if j.rule == "score_shard":
            assert "Params have changed since last execution" in j.reason, j.reason
        elif j.rule == "merge_scores":  # follows its shards, its own params are unchanged
            assert "Params have changed" not in j.reason and "Input files updated by another job" in j.reason
    # (`snakemake --list-changes params` cannot say the same: in 9.27.1 it prints one output of
    # every job, changed or not; the reasons of a dry run are right)


def test_scoring_options_rerun_every_model_job_but_no_table(done):
    # max_tokens (and target, include, exclude, thresholds) reach the domain shards and the panel
    _, jobs = dry(done, edited(scoring__max_tokens=32))
    assert job_keys(jobs) == shards(*DOMAINS) | merges(*DOMAINS) | PANEL_JOBS


def test_panel_settings_rerun_the_panel_only(done):
    _, jobs = dry(done, edited(similarity__per_batch=2))
    # per_batch 2 > shard_size 1: one panel shard (one mixed batch of 2 rows per domain) replaces two
    assert job_keys(jobs) == {key("score_panel", model="tiny", shard=0), key("merge_panel", model="tiny")}


def test_more_samples_add_shards_and_keep_the_old_ones(done):
    _, jobs = dry(done, edited(scoring__samples=3))
    assert job_keys(jobs) == {key("score_shard", model="tiny", domain=d, shard=2) for d in DOMAINS} | merges(*DOMAINS)


def test_data_seed_reruns_everything_downstream_of_the_tables(done):
    _, jobs = dry(done, edited(data__seed=2))
    assert job_keys(jobs) == tables(*DOMAINS) | shards(*DOMAINS) | merges(*DOMAINS) | PANEL_JOBS


def test_unrelated_and_documentation_keys_rerun_nothing(done):
    cfg = edited(sts__bootstrap=10, relevance__texts=3, report__title="other")
    cfg["domains"]["boolq"]["stands_in_for"] = "boolq"  # documentation only
    _, jobs = dry(done, cfg)
    assert job_keys(jobs) == set()


def test_adding_a_domain_adds_its_jobs_and_the_cross_domain_panel(done):
    """The new domain gets its table, shards and merge; the existing domains keep theirs.
    The panel mixes every domain into each batch, so its pairs change with the domain set:
    its shards rerun (new params `domains` and a new input table), and so does the merge."""
    cfg = copy.deepcopy(BASE)
    cfg["domains"]["siqa"] = {"source": "local", "format": "siqa", "path": "fixtures/siqa.jsonl"}
    _, jobs = dry(done, cfg, targets(DOMAINS + ("siqa",)))
    assert job_keys(jobs) == tables("siqa") | shards("siqa") | merges("siqa") | PANEL_JOBS
    panel = [j for j in jobs if j.rule == "score_panel"]
    assert len(panel) == 2 and all("results/data/siqa.parquet" in j.reason for j in panel), [j.reason for j in panel]


def test_a_changed_model_invalidates_its_scores_not_the_tables(done):
    # a different dtype (or id, path, revision ...) is a params change of every model job
    _, jobs = dry(done, edited(models__tiny__dtype="float64"))
    assert job_keys(jobs) == shards(*DOMAINS) | merges(*DOMAINS) | PANEL_JOBS


def test_new_weights_in_the_same_folder_invalidate_the_scores(done, tmp_path):
    """Same config, new weights (e.g. a model re-converted in place): the model folder is an
    input of every model job, so its newer modification time reruns them; tables stay."""
    copy_ = tmp_path / "wd"
    shutil.copytree(done, copy_, symlinks=True)  # keeps mtimes and .snakemake metadata
    (copy_ / "tiny-llama").unlink()
    save_tiny_model(copy_ / "tiny-llama")  # written now: newer than every score
    _, jobs = dry(copy_, BASE)
    assert job_keys(jobs) == shards(*DOMAINS) | merges(*DOMAINS) | PANEL_JOBS
    assert all("Updated input files: tiny-llama" in j.reason for j in jobs if j.rule in ("score_shard",
                                                                                          "score_panel"))


def test_a_lost_shard_reruns_alone(done, tmp_path):
    """A shard whose job failed (Snakemake removes a failed job's outputs) is the only
    scoring job to rerun; the other shard of the domain is kept.  tests/workflow/test_slurm.py shows
    the same with a shard cancelled on a real SLURM cluster."""
    copy_ = tmp_path / "wd"
    shutil.copytree(done, copy_, symlinks=True)
    for p in (copy_ / "results/scores/tiny/shards/piqa").glob("1.*"):
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    for p in (copy_ / "results/scores/tiny").glob("piqa.*"):  # a failed run never merged piqa
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    _, jobs = dry(copy_, BASE)
    assert job_keys(jobs) == {key("score_shard", model="tiny", domain="piqa", shard=1)} | merges("piqa")


def test_a_model_file_changed_in_place_reruns_every_model_job(done):
    """params: load.content: a local model directory's names, sizes and mtimes (actpat.contenthash)."""
    w = done / "tiny-llama" / "config.json"
    st = w.stat()
    text = w.read_text()
    try:
        w.write_text(text)  # same bytes, rewritten: a replaced file
        _, jobs = dry(done, BASE)
        assert job_keys(jobs) == shards(*DOMAINS) | merges(*DOMAINS) | PANEL_JOBS
    finally:
        os.utime(w, ns=(st.st_atime_ns, st.st_mtime_ns))
    _, jobs = dry(done, BASE)
    assert job_keys(jobs) == set()


def test_footprint_counts_the_jobs_files_and_weights_of_the_run(done):
    """actpat footprint before a run, against the finished tiny run: the scored weights equal a store's
    sizes, the merged stores' files are exactly what was written, the jobs those of a full dry run."""
    from actpat.engine.store import ScoreStore
    from actpat.footprint import footprint, markdown

    fp = footprint(TINY_CONFIG, SNAKEFILE["path"], done)
    st = ScoreStore(done / "results/scores/tiny/boolq.zarr")
    assert fp["models"]["tiny"] == {"scored_weights": sum(a.size for _, a in st.items()), "matrices": len(st.names),
                                    "exact": True}
    merged = [p for d in DOMAINS for p in (done / "results/scores/tiny").glob(f"{d}.*")]
    files = sum(1 if p.is_file() else sum(1 for f in p.rglob("*") if f.is_file()) for p in merged)
    assert fp["rules"]["merge_scores"]["files"] == files and fp["rules"]["merge_scores"]["jobs"] == len(DOMAINS)
    assert fp["rules"]["score_shard"]["jobs"] == 4 and fp["rules"]["score_shard"]["temp_bytes"] == 0  # kept shards
    assert fp["total"]["gpu_s"] == 0 and fp["total"]["cpu_s"] > 0  # a CPU model
    assert "| **total** |" in markdown(fp)
