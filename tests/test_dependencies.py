"""pyproject's runtime dependencies are what the product imports: each runtime distribution is
imported by ``router/``, ``dsl/`` or ``backends/``, and no dev-only distribution is (a plain
``pip install .`` must run the server, and must not pull in what only tests and benchmarks use)."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("router", "dsl", "backends", "schemas")

# distribution name -> the module it provides, where the two differ
MODULE_OF = {"pyyaml": "yaml", "google-auth": "google.auth", "prometheus-client": "prometheus_client",
             "pytest-asyncio": "pytest_asyncio", "pytest-httpx": "pytest_httpx", "google-genai": "google.genai",
             "psycopg-pool": "psycopg_pool"}


def dist_names(requirements: list[str]) -> set[str]:
    return {re.match(r"[A-Za-z0-9_.\-]+", r).group().lower() for r in requirements}  # type: ignore[union-attr]


def imported_modules() -> set[str]:
    """Every absolute module name imported by the product, with all its parents (``a.b.c``: also
    ``a.b`` and ``a``)."""
    found: set[str] = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
                else:
                    continue
                for name in names:
                    parts = name.split(".")
                    found |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    return found


def test_runtime_dependencies_are_imported_and_dev_ones_are_not() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    runtime = dist_names(project["dependencies"])
    dev = dist_names(project["optional-dependencies"]["dev"]) - runtime
    imported = imported_modules()
    assert sorted(d for d in runtime if MODULE_OF.get(d, d) not in imported) == []
    assert sorted(d for d in dev if MODULE_OF.get(d, d) in imported) == []
