"""What a run used, for ``results/provenance.json`` and the metadata of every output.

Score stores record the model fingerprint and package versions in their attributes, tables in
their Parquet metadata, assets in their ``MANIFEST.json``; ``provenance()`` gathers the whole
run in one place: the validated configuration (and its hash), the workflow's git commit, the
Python and package versions, every asset's manifest (package, version, archive hash), the
SHA-256 of every local data file, and each model's fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

from . import __version__
from .contenthash import file_sha256

# The packages whose versions change numbers or files.
PACKAGES = ("torch", "transformers", "tokenizers", "safetensors", "accelerate", "gguf", "numpy", "scipy", "polars",
            "pyarrow", "zarr", "numcodecs", "datasets", "snakemake", "altair", "vl-convert-python")


def package_versions(names=PACKAGES) -> dict[str, str | None]:
    """Installed versions (None where a package is absent)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def git_state(directory: str | Path) -> dict:
    """The commit of the workflow's repository and whether its tracked files differ from it."""
    def git(*args):
        r = subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True, timeout=30)
        return r.stdout.strip() if r.returncode == 0 else None

    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.TimeoutExpired):
        commit = dirty = None
    return {"commit": commit, "dirty": None if dirty is None else bool(dirty)}


def config_sha256(config: dict) -> str:
    """Hash of the validated configuration (keys sorted), the same for equal configurations."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def provenance(config: dict, *, assets=(), files=(), models: dict | None = None,
               workflow_dir: str | Path | None = None) -> dict:
    """The provenance record of a run (see the module docstring).

    ``assets``: asset folders (each with a MANIFEST.json); ``files``: local input files, hashed;
    ``models``: model name -> what ``actpat.modelio.load_model`` receives (a folder or a hub id).
    """
    from .modelio import model_fingerprint

    manifests = {}
    for d in sorted(set(map(str, assets))):
        man = Path(d) / "MANIFEST.json"
        manifests[Path(d).name] = json.loads(man.read_text()) if man.is_file() else None
    fingerprints = {}
    for name, source in sorted((models or {}).items()):
        spec = config.get("models", {}).get(name, {})
        if spec.get("source") == "hub":
            fingerprints[name] = {"hub_id": source, "revision": spec.get("revision")}
        else:
            fingerprints[name] = model_fingerprint(source)
    return {
        "actpat_version": __version__,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "workflow": git_state(workflow_dir) if workflow_dir else None,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "config_sha256": config_sha256(config),
        "config": config,
        "assets": manifests,
        "files": {str(f): file_sha256(f) for f in sorted(set(map(str, files)))},
        "models": fingerprints,
    }
