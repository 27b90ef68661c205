"""Convert a GGUF checkpoint shipped in a registry package to a safetensors model directory."""

import os
from pathlib import Path

from actpat.data.sources import checked_asset_dir
from actpat.modelio import convert_gguf
from actpat.workflow import rule_logging

os.environ.setdefault("HF_HUB_OFFLINE", "1")
with rule_logging(snakemake) as log:
    gguf = checked_asset_dir(Path(snakemake.input[0])) / snakemake.params.gguf_file
    convert_gguf(gguf, snakemake.output[0])
    log.info("converted %s -> %s", gguf, snakemake.output[0])
