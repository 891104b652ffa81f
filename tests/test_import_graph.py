"""The layers' import rules, read from the source (every import statement, at any depth, relative
ones resolved), so a forbidden import fails here rather than surfacing as a cycle or a coupling:

- ``dsl/`` (the rules language) imports nothing from ``router/`` or ``backends/``;
- ``backends/`` (the connectors) imports nothing from ``router/`` but the codec layer ``router.wire``;
- ``router/wire/`` (the codec layer) imports nothing from the rest of ``router/``, nor ``backends/``
  or ``dsl/``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _is(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _router_beyond_wire(module: str) -> bool:
    # ``router`` itself (its ``__init__``, a docstring) runs with every import of ``router.wire``;
    # what ``from router import name`` brings in is checked as ``router.name``.
    return _is(module, "router") and module != "router" and not _is(module, "router.wire")


def forbidden(importer: str, imported: str) -> bool:
    """Whether module ``importer`` may not import module ``imported`` (both dotted names)."""
    if _is(importer, "dsl"):
        return _is(imported, "router") or _is(imported, "backends")
    if _is(importer, "backends"):
        return _router_beyond_wire(imported)
    if _is(importer, "router.wire"):
        return _router_beyond_wire(imported) or _is(imported, "backends") or _is(imported, "dsl")
    return False


def imports_of(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, dotted module) of every import in ``source``, the source of ``module``. For
    ``from package import name`` both the package and ``package.name`` are listed: the name may
    be a module (``from router import config``)."""
    package = module if is_package else module.rpartition(".")[0]
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            out.append((node.lineno, target))
            out += [(node.lineno, f"{target}.{alias.name}") for alias in node.names if alias.name != "*"]
    return out


def violations(root: Path, top: str) -> list[str]:
    found = []
    for path in sorted((root / top).rglob("*.py")):
        relative = path.relative_to(root).with_suffix("")
        is_package = relative.name == "__init__"
        module = ".".join(relative.parent.parts if is_package else relative.parts)
        for line, imported in imports_of(path.read_text(encoding="utf-8"), module, is_package):
            if forbidden(module, imported):
                found.append(f"{path.relative_to(root)}:{line}: {module} imports {imported}")
    return found


@pytest.mark.parametrize("top", ["dsl", "backends", "router/wire"])
def test_layers_import_only_what_they_may(top: str) -> None:
    assert list((ROOT / top).rglob("*.py")), f"no modules under {top}"
    assert violations(ROOT, top) == []


@pytest.mark.parametrize("module,source,bad", [
    ("backends.http", "from router.config import AppConfig", ["router.config", "router.config.AppConfig"]),
    ("backends.http", "def f():\n    from router.errors import ProxyError\n", ["router.errors", "router.errors.ProxyError"]),
    ("backends.http", "from router import limits", ["router.limits"]),
    ("backends.http", "import router.limits", ["router.limits"]),
    ("backends.http", "from router.wire import fastjson\nfrom router.wire.codec import CodecError\nfrom .base import B", []),
    ("backends.http", "from router import wire", []),
    ("dsl.parser", "from router.wire import canonical", ["router.wire", "router.wire.canonical"]),
    ("dsl.parser", "import backends.keys", ["backends.keys"]),
    ("dsl.parser", "from . import ir\nfrom .errors import RulesError", []),
    ("router.wire.common", "from ..errors import ProxyError", ["router.errors", "router.errors.ProxyError"]),
    ("router.wire.common", "from router.bounds import check_model", ["router.bounds", "router.bounds.check_model"]),
    ("router.wire.common", "from .codec import CodecError\nfrom router.wire import fastjson", []),
    ("router.wire", "from . import codec", []),  # a package's own relative import
    ("router.wire", "from .. import errors", ["router.errors"]),
])
def test_the_check_sees_every_kind_of_import(module: str, source: str, bad: list[str]) -> None:
    """The rule and the reader of imports, on sources that break it and sources that keep it."""
    is_package = module == "router.wire"
    found = [imported for _, imported in imports_of(source, module, is_package) if forbidden(module, imported)]
    assert found == bad
