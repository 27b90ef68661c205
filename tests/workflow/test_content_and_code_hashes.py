"""actpat.contenthash (manifests of produced directories) and actpat.codehash (code a rule runs)."""

import hashlib
import os
import time

import pytest

from actpat import codehash, contenthash
from actpat.contenthash import ContentError


def _dir(tmp_path):
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    (d / "a.bin").write_bytes(os.urandom(200_000))
    (d / "sub" / "b.txt").write_text("hello")
    return d


def test_manifest_records_full_hashes_and_stat(tmp_path):
    d = _dir(tmp_path)
    man = contenthash.write_manifest(d)
    assert set(man["files"]) == {"a.bin", "sub/b.txt"}
    assert man["files"]["a.bin"]["sha256"] == hashlib.sha256((d / "a.bin").read_bytes()).hexdigest()
    assert contenthash.state(d) == contenthash.UNCHANGED
    contenthash.verify(d, full=True)
    assert contenthash.state(tmp_path / "not-yet") == contenthash.UNCHANGED  # stable before the rule made it


def test_an_in_place_change_changes_the_state_and_is_refused(tmp_path):
    d = _dir(tmp_path)
    contenthash.write_manifest(d)
    data = bytearray((d / "a.bin").read_bytes())
    data[100_000:100_010] = b"0123456789"  # same size, other bytes
    (d / "a.bin").write_bytes(bytes(data))
    s = contenthash.state(d)
    assert s.startswith("changed:") and s == contenthash.state(d)
    with pytest.raises(ContentError, match=r"a\.bin was changed .*Fix it\.$"):
        contenthash.verify(d, fix="Fix it.")


def test_touch_without_change_passes_verify_and_missing_or_added_files_do_not(tmp_path):
    d = _dir(tmp_path)
    contenthash.write_manifest(d)
    later = time.time() + 10
    os.utime(d / "a.bin", (later, later))
    contenthash.verify(d)  # same bytes: hashed in full, accepted
    assert contenthash.state(d) == contenthash.UNCHANGED  # and no reader reruns
    (d / "extra").write_text("x")
    with pytest.raises(ContentError, match="extra was added"):
        contenthash.verify(d)
    (d / "extra").unlink()
    (d / "sub" / "b.txt").unlink()
    with pytest.raises(ContentError, match="sub/b.txt is missing"):
        contenthash.verify(d)
    with pytest.raises(ContentError, match="no CONTENT.json"):
        contenthash.verify(tmp_path)


def test_stat_digest_follows_replacements(tmp_path):
    d = _dir(tmp_path)
    a = contenthash.stat_digest(d)
    assert a == contenthash.stat_digest(d)
    (d / "sub" / "b.txt").write_text("hellO")
    later = time.time() + 10
    os.utime(d / "sub" / "b.txt", (later, later))
    assert contenthash.stat_digest(d) != a


def test_code_digest_ignores_comments_and_docstrings(tmp_path):
    def digest(src):
        p = tmp_path / "m.py"
        p.write_text(src)
        st = p.stat()
        return codehash._parsed(p, st.st_mtime_ns, st.st_size)[0]

    base = digest('"""Doc."""\nimport os\n\ndef f(x):\n    """Doc."""\n    return x + 1\n')
    assert base == digest('"""Other doc."""\nimport os  # why\n\n\ndef f(x):\n    # note\n    return x + 1\n')
    assert base != digest('"""Doc."""\nimport os\n\ndef f(x):\n    return x + 2\n')


def test_modules_follow_absolute_relative_and_lazy_imports(tmp_path):
    script = tmp_path / "s.py"
    script.write_text("from actpat.analysis.findings import measure\n\ndef g():\n    import actpat.atomic\n")
    mods = codehash.modules(script)
    assert {"actpat.analysis.findings", "actpat.atomic"} <= set(mods)
    # findings imports .uncertainty and .intervals relatively; they are reached transitively
    assert {"actpat.analysis.uncertainty", "actpat.analysis.intervals"} <= set(mods)
    assert "actpat.engine.scorer" not in mods  # not reached
    assert len(codehash.code_digest(script)) == 16
