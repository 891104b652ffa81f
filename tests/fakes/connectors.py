"""Shared set-up for connector tests (tests/backends) and dispatch tests (tests/router/pipeline): a
fake provider on 127.0.0.1 and backends built from a real ``config.yaml`` (so schema validation and
env handling run), closed after each test. A folder's conftest imports the fixtures (``build``,
``fake``, ``fake_provider``); test modules import the helpers.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from backends.base import Backend
from backends.factory import build_backends
from fakes.fixtures import fake_provider  # noqa: F401  (fixture)
from fakes.provider import FakeProvider
from router.wire.canonical import ChatRequest, Message, ResponseAccumulator, StreamEvent, TextPart, Tool
from router.config import AppConfig, connector_settings, load_config

OPENAI_KEY = "sk-fake-openai"
ANTHROPIC_KEY = "sk-ant-fake"
GEMINI_KEY = "fake-gemini-key"

BuildFn = Callable[..., Awaitable[dict[str, Backend]]]


def chat(text: str = "hello there", model: str = "fake-model", *, stream: bool = False,
         tools: bool = False) -> ChatRequest:
    return ChatRequest(model=model, messages=[Message("user", [TextPart(text)])], stream=stream,
                       max_tokens=100,
                       tools=[Tool("get_weather", "Weather", {"type": "object", "properties": {"city": {"type": "string"}}})]
                       if tools else [])


async def collect(events: AsyncIterator[StreamEvent]) -> list[StreamEvent]:
    return [event async for event in events]


def fold(events: list[StreamEvent]) -> Any:
    acc = ResponseAccumulator()
    for event in events:
        acc.feed(event)
    return acc.result()


def backend_settings(kind: str, fake: FakeProvider, **extra: Any) -> dict[str, Any]:
    """Settings pointing a backend of ``kind`` at the fake, with the key the fake accepts."""
    if kind in ("openai", "openrouter"):
        out: dict[str, Any] = {"type": kind, "base_url": f"{fake.url}/v1", "api_key": OPENAI_KEY}
    elif kind == "openai-compatible":
        fake.keys["openai"].add(None)  # type: ignore[arg-type]  (a local server without auth)
        out = {"type": kind, "base_url": f"{fake.url}/v1"}
    elif kind == "anthropic":
        out = {"type": kind, "base_url": fake.url, "api_key": ANTHROPIC_KEY}
    elif kind == "gemini":
        out = {"type": kind, "gemini_api_base_url": fake.url, "api_key": GEMINI_KEY}
    else:
        out = {"type": kind, "gemini_api_base_url": fake.url, "token_url": fake.token_url}
    out.update(extra)
    return out


@pytest_asyncio.fixture
async def build(tmp_path: Path) -> AsyncIterator[BuildFn]:
    """``await build(name=settings, ..., proxy_timeout=...)`` -> connectors; all closed at teardown."""
    built: list[Backend] = []

    async def _build(proxy_timeout: float = 5.0, **backends: dict[str, Any]) -> dict[str, Backend]:
        config = make_config(tmp_path, proxy_timeout=proxy_timeout, **backends)
        out = build_backends(connector_settings(config))
        built.extend(out.values())
        return out

    yield _build
    for backend in built:
        await backend.aclose()


def make_config(tmp_path: Path, proxy_timeout: float = 5.0, **backends: dict[str, Any]) -> AppConfig:
    path = tmp_path / f"config-{len(list(tmp_path.glob('config-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump({"proxy_timeout": proxy_timeout, "backends": backends}, sort_keys=False))
    return load_config(str(path), env={})


def write_creds(path: Path, *, access_token: str = "ya29.expired-token", refresh_token: str | None = "1//refresh-token",
                expires_in_ms: int = -60_000) -> Path:
    """Gemini CLI's ``oauth_creds.json`` with a token that expired a minute ago (by default)."""
    import time

    data: dict[str, Any] = {"access_token": access_token, "scope": "https://www.googleapis.com/auth/cloud-platform",
                            "token_type": "Bearer", "id_token": "eyJ.fake.jwt",
                            "expiry_date": int(time.time() * 1000) + expires_in_ms}
    if refresh_token is not None:
        data["refresh_token"] = refresh_token
    path.write_text(json.dumps(data, indent=2))
    return path


@pytest.fixture
def fake(fake_provider: FakeProvider) -> FakeProvider:  # noqa: F811
    return fake_provider
