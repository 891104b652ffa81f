"""Streams are bounded in size: an upstream line that never ends closes the stream with the client
format's error event."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any, AsyncIterator

import httpx
import pytest

from fakes.fixtures import fake_provider  # noqa: F401  (fixture)
from fakes.provider import FakeProvider, raw_stream
from proxy_support import FRONTENDS, LiveServer, chat_body, chat_path, is_sse, sse_data, write_config
from router.app import ProxyApp, create_app


def proxy_for(tmp_path: Path, fake: FakeProvider, **backend: Any) -> ProxyApp:
    """The proxy with one ``up`` backend (OpenAI wire) pointing at the fake."""
    config = write_config(tmp_path, backends={
        "up": {"type": "openai", "base_url": f"{fake.url}/v1", "api_key": fake.key("openai"), **backend}},
        default_backend="up")
    return create_app(config, disable_auth=True)


@contextlib.asynccontextmanager
async def served(app: ProxyApp) -> AsyncIterator[httpx.AsyncClient]:
    """``app`` behind uvicorn on 127.0.0.1, and a client for it (a real connection: the Falcon test
    conductor's one-shot requests hang up at once)."""
    server = LiveServer(app).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            yield client
    finally:
        await asyncio.to_thread(server.stop)


def path_and_query(frontend: str) -> tuple[str, str | None]:
    path, _, query = chat_path(frontend, "fake-model", stream=True).partition("?")
    return path, query or None


@pytest.mark.parametrize("frontend", FRONTENDS)
async def test_an_endless_upstream_line_ends_the_stream_with_the_formats_error_event(
        tmp_path: Path, fake_provider: FakeProvider, frontend: str) -> None:  # noqa: F811
    """The issue's repro: an upstream stream with no line breaks grew the buffer to ~690 MB."""
    app = proxy_for(tmp_path, fake_provider, max_line_bytes=65536)
    # More than the sockets between the fake and the proxy can buffer: the fake finishes only if
    # the proxy keeps reading.
    fake_provider.enqueue(raw_stream(b"data: " + b"x" * 24_000_000))
    path, query = path_and_query(frontend)
    async with served(app) as client:
        result = await client.post(path, params=query, json=chat_body(frontend, "hi", "fake-model", stream=True))
    assert result.status_code == 200 and is_sse(result)
    assert "partial " in result.text  # the event before the long line reached the client
    events = [e for e in sse_data(result.text) if e != "[DONE]"]
    error = events[-1]["error"]
    assert "longer than 65536 bytes" in error["message"] and "max_line_bytes" in error["message"]
    if frontend == "anthropic":
        assert events[-1]["type"] == "error"
    if frontend == "openai":
        assert sse_data(result.text)[-1] == "[DONE]"
    await fake_provider.last.wait()
    assert fake_provider.last.disconnected and not fake_provider.last.completed  # the proxy hung up


async def test_an_endless_line_before_the_first_event_is_a_502_in_the_clients_shape(
        tmp_path: Path, fake_provider: FakeProvider) -> None:  # noqa: F811
    app = proxy_for(tmp_path, fake_provider, max_line_bytes=65536)
    fake_provider.on_model("fake-model", raw_stream(b"data: " + b"x" * 1_000_000, text=None))  # retries too
    async with served(app) as client:
        result = await client.post("/v2/messages", json=chat_body("anthropic", "hi", "fake-model", stream=True))
    assert result.status_code == 502
    assert result.json()["type"] == "error" and "max_line_bytes" in result.json()["error"]["message"]
