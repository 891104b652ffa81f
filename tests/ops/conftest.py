"""Operations tests: the app with its usage store, metrics, health monitor and reloader running.

Helpers live in ``ops_support`` (next to this file) and reuse the router tests' ``proxy_support``
(config writing, wire shapes, the live uvicorn server).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for folder in (HERE, HERE.parent / "router"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from fakes.fixtures import fake_provider  # noqa: E402,F401  (fixture)


# ---- the real PostgreSQL: a schema per test (pg_support.py) --------------------------------------

import pytest  # noqa: E402

import pg_support  # noqa: E402


@pytest.fixture(scope="session")
def _pg_run():
    """Drops whatever is left of this run's schemas when the session ends."""
    yield
    pg_support.drop_run_schemas()


@pytest.fixture
def pg_schema(_pg_run):
    """A fresh PostgreSQL schema name for one test, dropped after it (the store creates it)."""
    schema = pg_support.new_schema()
    yield schema
    pg_support.drop_schema(schema)
