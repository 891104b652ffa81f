"""Fixtures that run the real app: in-process through Falcon's ASGI test client (fast), or served
by uvicorn on 127.0.0.1 in a background thread (for the official SDKs).

Configs are written as ``config.yaml`` into ``tmp_path`` and loaded with ``load_config(path, env={})``
so nothing from the developer's environment (provider keys, ``LLM_PROXY_*``) leaks in.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import falcon.testing
import pytest

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:  # for ``proxy_support`` and ``ops_support``, the helpers shared by these tests
    sys.path.insert(0, HERE)

from fakes.fixtures import fake_provider  # noqa: E402,F401  (fixture, for every folder below)
from proxy_support import API_KEY, LiveServer, write_config  # noqa: E402
from router.app import ProxyApp, create_app  # noqa: E402


@pytest.fixture
def make_app(tmp_path: Path) -> Callable[..., ProxyApp]:
    """``make_app(**config_overrides, disable_auth=..., disable_commands=...)`` → a fresh app."""
    counter = iter(range(1000))

    def build(*, disable_auth: bool = False, disable_commands: bool = False, loopback: bool = False,
              directory: Path | None = None,
              **overrides: Any) -> ProxyApp:
        config = write_config(directory or tmp_path / f"app{next(counter)}", **overrides)
        return create_app(config, disable_auth=disable_auth, disable_commands=disable_commands, loopback=loopback)

    return build


@pytest.fixture
def make_client(make_app: Callable[..., ProxyApp]) -> Callable[..., falcon.testing.TestClient]:
    """A Falcon test client over a fresh app; same arguments as ``make_app``."""

    def build(**kwargs: Any) -> falcon.testing.TestClient:
        return falcon.testing.TestClient(make_app(**kwargs))

    return build


@pytest.fixture
def client(make_client: Callable[..., falcon.testing.TestClient]) -> falcon.testing.TestClient:
    """No client keys: every request is accepted."""
    return make_client(disable_auth=True)


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server per test module, with a client key (tests use fresh session ids to stay apart)."""
    config = write_config(tmp_path_factory.mktemp("live"), auth={"api_keys": [API_KEY]})
    server = LiveServer(create_app(config)).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """uvicorn replaced by a recorder (``router.server.start_uvicorn``, the one place that runs it):
    ``served[0]["app"]`` is the app the CLI would serve, the rest uvicorn's options."""
    import gc
    import logging

    import router.server

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(router.server, "start_uvicorn", lambda app, **kw: calls.append({"app": app, **kw}) or 0)
    monkeypatch.delenv("LLM_PROXY_API_KEYS", raising=False)
    monkeypatch.delenv("LLM_PROXY_CONFIG", raising=False)
    monkeypatch.setattr(gc, "freeze", lambda: None)  # the server freezes the heap; not in a test run
    root = logging.getLogger()
    handlers, level, threshold = list(root.handlers), root.level, gc.get_threshold()
    yield calls
    # the CLI configures logging on the real root logger: put the test run's back
    root.handlers[:] = handlers
    root.setLevel(level)
    gc.set_threshold(*threshold)


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
