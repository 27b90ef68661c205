#!/usr/bin/env bash
# Run config/gpu.yaml on the device machine in /tmp/run (kept while the machine is warm), after
# `dev/device_stage.sh unpack`.  Usage: bash dev/device_run.sh SECONDS [snakemake args...]
# Copies the code in on every call (content hashes decide what reruns), runs snakemake for at most
# SECONDS, then packs the small results, the logs' rule times and nvidia-smi's view into $OUT.
set -uo pipefail
limit=${1:?seconds}; shift
export PYTHONPATH=/tmp/site:/tmp/run/src PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 PATH=/tmp/site/bin:$PATH
for p in Snakefile rules scripts src config envs profiles report pyproject.toml benchmarks; do
    rm -rf "/tmp/run/$p" && cp -a "$p" /tmp/run/
done
cd /tmp/run
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader
( while sleep 20; do nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader; done ) \
    > "$OUT/gpu-util.txt" 2>&1 &
mon=$!
start=$(date +%s)
timeout -s INT "$limit" python3 -m snakemake --configfile config/gpu.yaml --cores 16 --resources gpu=8 \
    --keep-going --rerun-incomplete "$@" > "$OUT/snakemake.log" 2>&1
rc=$?
echo "snakemake rc=$rc after $(( $(date +%s) - start )) s"
kill $mon 2>/dev/null
tail -25 "$OUT/snakemake.log"
python3 benchmarks/rule_times.py logs --json "$OUT/rule-times.json" | tail -30
tar -czf "$OUT/results.tgz" --exclude='*.zarr' --exclude='*.npy' --exclude='*.npz' results/summary.md results/tables results/eval results/provenance.json \
    results/analysis results/sts results/prune results/report/index.html logs 2>/dev/null
ls -la "$OUT"
