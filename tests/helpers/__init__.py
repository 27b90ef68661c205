"""Helpers shared by the test files (importable as ``helpers`` through tests/conftest.py).

* ``helpers.tiny``: tiny random LLaMA/GPT-2 models and an offline tokenizer, built in memory;
* ``helpers.smkrun``: the workflow run from tests (Snakemake runner, tiny working directory, dry-run parser);
* ``helpers.reliability``: local hub-format data files and a small valid configuration that uses them;
* ``helpers.analysis_synth``: synthetic inputs of the analysis stage;
* ``helpers.fetched``: skip marks for tests that read fetched assets;
* ``helpers.chromium_cdp``: headless Chromium over the DevTools protocol.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
