"""Shared helpers for the operations tests (usage, metrics, health, reload, redaction, shutdown)."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import yaml
from prometheus_client.parser import text_string_to_metric_families

from proxy_support import BASE_CONFIG, chat_body, chat_path
from router.app import ProxyApp, create_app
from router.config import load_config

CLIENT_KEY = "sk-ops-client-key-A1b2C3d4E5f6"
ADMIN_KEY = "sk-ops-admin-key-Z9y8X7w6V5u4"
AUTH = {"Authorization": f"Bearer {CLIENT_KEY}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_tree(directory: Path, rules: dict[str, str] | None = None, **overrides: Any) -> Path:
    """``config.yaml`` (BASE_CONFIG + overrides, with a client key) and ``routes.d/<name>`` files."""
    directory.mkdir(parents=True, exist_ok=True)
    data = {**BASE_CONFIG, "auth": {"api_keys": [CLIENT_KEY]}, **overrides}
    (directory / "config.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    routes = directory / "routes.d"
    routes.mkdir(exist_ok=True)
    for name, text in (rules or {}).items():
        (routes / name).write_text(text, encoding="utf-8")
    return directory / "config.yaml"


def build_app(directory: Path, rules: dict[str, str] | None = None, **overrides: Any) -> ProxyApp:
    path = write_tree(directory, rules, **overrides)
    return create_app(load_config(str(path), env={}))


def rule_file(*rules: tuple[str, str, str]) -> str:
    """``rules:`` YAML from (name, when, route) triples."""
    lines = ["rules:"]
    for name, when, route in rules:
        lines += [f"  - name: {name}", f"    when: {when}", f"    route: {route}"]
    return "\n".join(lines) + "\n"


async def post_chat(client: Any, frontend: str = "openai", text: str = "hello", *, model: str = "gpt-4",
                    stream: bool = False, headers: dict[str, str] | None = None, **kw: Any) -> Any:
    path = chat_path(frontend, model, stream)
    path, _, query = path.partition("?")
    return await client.simulate_post(path, query_string=query or None, headers={**AUTH, **(headers or {})},
                                      json=chat_body(frontend, text, model, stream), **kw)


async def wait_for(check: Callable[[], Awaitable[Any]], timeout: float = 5.0, interval: float = 0.02) -> Any:
    """Poll ``check`` until it returns something truthy (usage records are written in batches)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value: {value!r})")
        await asyncio.sleep(interval)


async def all_records(client: Any, headers: dict[str, str] | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    """Every usage record through ``/v2/usage/recent`` (all pages), newest first."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": str(limit)} | ({"cursor": str(cursor)} if cursor else {})
        result = await client.simulate_get("/v2/usage/recent", headers=headers or AUTH, params=params)
        assert result.status_code == 200, result.text
        items += result.json["data"]
        cursor = result.json["next_cursor"]
        if cursor is None:
            return items


async def wait_records(client: Any, count: int, headers: dict[str, str] | None = None,
                       timeout: float = 5.0) -> list[dict[str, Any]]:
    async def check() -> list[dict[str, Any]] | None:
        items = await all_records(client, headers)
        return items if len(items) >= count else None

    return await wait_for(check, timeout)


def parse_metrics(text: str) -> dict[str, list[Any]]:
    """Family name → samples, parsed with the Prometheus text parser."""
    return {family.name: list(family.samples) for family in text_string_to_metric_families(text)}


def samples(metrics: dict[str, list[Any]], name: str) -> list[Any]:
    """Samples whose own name is ``name`` (e.g. ``llm_proxy_requests_total``)."""
    return [s for family in metrics.values() for s in family if s.name == name]
