"""Which package code a rule runs, as one digest: Snakemake reruns a job when it changes.

Snakemake's ``code`` trigger sees only a rule's script, while the real code lives in this
package.  ``code_digest(script)`` follows the script's imports of ``actpat`` (absolute and
relative, also those inside functions) transitively and hashes each module's syntax tree with
docstrings removed, so editing a comment or a docstring reruns nothing and editing code reruns
exactly the rules whose scripts reach that module.  Rules pass the digest as ``params: code``.
Parsing is cached per file and costs a few milliseconds per module at DAG time.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

PACKAGE = "actpat"
ROOT = Path(__file__).resolve().parent  # the package directory actually imported


def module_file(name: str) -> Path | None:
    """The source file of module ``actpat[.x.y]``, or None when it is not a package module."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = ROOT.joinpath(*parts[1:])
    for p in (base.with_suffix(".py"), base / "__init__.py"):
        if p.is_file():
            return p
    return None


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = [PACKAGE, *rel.parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return tree


@functools.lru_cache(maxsize=None)
def _parsed(path: Path, mtime_ns: int, size: int) -> tuple[str, tuple[str, ...]]:
    """(digest of the code, package modules it imports) of one file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_pkg = path.name == "__init__.py"
    here = _module_name(path) if path.is_relative_to(ROOT) else ""
    imports = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imports.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                pkg = here.split(".") if is_pkg else here.split(".")[:-1]
                pkg = pkg[:len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            imports.add(base)
            imports.update(f"{base}.{a.name}" for a in node.names)  # ``from pkg import submodule``
    found = tuple(sorted(n for n in imports if module_file(n) is not None))
    digest = hashlib.sha256(ast.dump(_strip_docstrings(tree)).encode()).hexdigest()
    return digest, found


def _info(path: Path) -> tuple[str, tuple[str, ...]]:
    st = path.stat()
    return _parsed(path, st.st_mtime_ns, st.st_size)


def modules(script: str | Path) -> list[str]:
    """The package modules ``script`` reaches through its imports, sorted."""
    seen: set[str] = set()
    todo = list(_info(Path(script).resolve())[1])
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(_info(module_file(name))[1])
    return sorted(seen)


def code_digest(script: str | Path) -> str:
    """SHA-256 over the code of every package module ``script`` runs (not the script itself:
    Snakemake's own code trigger covers it)."""
    h = hashlib.sha256()
    for name in modules(script):
        h.update(f"{name}:{_info(module_file(name))[0]}\n".encode())
    return h.hexdigest()[:16]
