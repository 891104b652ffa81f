"""State has one home: ``router/state.py`` holds what a request runs on and how it is built, and
neither ``reload.py`` nor ``state.py`` reaches back into ``app.py`` (no app <-> reload cycle)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import router.state as state_module
from router.state import RuntimeState, StateRef, build_state

ROUTER = Path(state_module.__file__).parent


def imported_modules(path: Path, package: str = "router") -> set[str]:
    """Every module a file of ``package`` imports, at any depth (lazy imports inside functions
    too), with relative imports resolved to absolute names."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[:len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.add(name)
            out.update(f"{name}.{alias.name}" for alias in node.names)
    return out


def test_state_types_and_builder_live_in_state_module() -> None:
    for thing in (RuntimeState, StateRef, build_state):
        assert thing.__module__ == "router.state"


def test_reload_and_state_do_not_import_app() -> None:
    for name in ("reload.py", "state.py"):
        imports = imported_modules(ROUTER / name)
        assert "router.app" not in imports and not any(i.startswith("router.app.") for i in imports), name


def test_imported_modules_sees_lazy_imports(tmp_path: Path) -> None:
    """The checker itself: an import inside a function body counts."""
    (tmp_path / "x.py").write_text("def f():\n    from .app import build_state\n")
    assert "router.app" in imported_modules(tmp_path / "x.py")


def test_state_and_reload_import_on_their_own() -> None:
    """A fresh interpreter can import ``router.state`` first (no import-order trap) and
    ``router.reload`` without loading ``router.app``."""
    code = "import router.state, router.reload, sys; assert 'router.app' not in sys.modules"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def reaches_through(source: str) -> list[str]:
    """``x.ref.recorder``, ``x.ref.metrics``, ``x.pipeline.ref``: a handler pulling a service out of
    the state holder (or out of another service) instead of being given it."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute):
            pair = (node.value.attr, node.attr)
            if pair in {("ref", "recorder"), ("ref", "metrics"), ("pipeline", "ref")}:
                found.append(".".join(pair))
    return found


def test_checker_finds_a_reach_through() -> None:
    assert reaches_through("s = self.ref.recorder.store\nm = self.pipeline.ref.state\n") == ["ref.recorder", "pipeline.ref"]
    assert reaches_through("auth = self.ref.state.auth\n") == []  # the current state itself: what a ref is for


def test_http_handlers_are_given_their_services() -> None:
    """Resources, admin and health hold the :class:`StateRef` only for the current state (a reload
    swaps it); the usage store, metrics and pipeline are handed to them."""
    for path in sorted((ROUTER / "http").glob("*.py")):
        assert reaches_through(path.read_text()) == [], path.name
