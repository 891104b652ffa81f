"""Streams are bounded in size and in time by the client: an upstream line that never ends closes
the stream with the client format's error event, and a client that hangs up ends the upstream call
within about a second, even when the upstream is silent (``router/hangup.py``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any, AsyncIterator

import httpx
import pytest

from fakes.fixtures import fake_provider  # noqa: F401  (fixture)
from fakes.provider import FakeProvider, delay, raw_stream, stream_chunks
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
    conductor's one-shot requests hang up at once, which a stream now notices)."""
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
    # Responses clients read the failure from response.failed (Codex ignores a bare error event).
    error = events[-1]["response"]["error"] if frontend == "responses" else events[-1]["error"]
    assert "longer than 65536 bytes" in error["message"] and "max_line_bytes" in error["message"]
    if frontend == "responses":
        assert events[-1]["type"] == "response.failed" and error["code"] == "server_error"
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


UPSTREAMS = {
    "silent": stream_chunks(["first ", "never sent"], gap=60),  # one event, then nothing for 60 s
    "steady": stream_chunks(["first "] + ["more "] * 1200, gap=0.05),  # an event every 50 ms for a minute
}


@pytest.mark.parametrize("frontend,upstream", [(f, "silent") for f in FRONTENDS] + [("openai", "steady")])
async def test_a_client_hanging_up_ends_the_upstream_call_within_a_second(
        tmp_path: Path, fake_provider: FakeProvider, frontend: str, upstream: str,  # noqa: F811
        caplog: pytest.LogCaptureFixture) -> None:
    """The issue's repro: the client left after 12 s and the upstream call ran 109 s more."""
    app = proxy_for(tmp_path, fake_provider)
    fake_provider.enqueue(UPSTREAMS[upstream])
    server = LiveServer(app).start()
    path, query = path_and_query(frontend)
    try:
        with caplog.at_level(logging.INFO):
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
                async with client.stream("POST", path + (f"?{query}" if query else ""),
                                         json=chat_body(frontend, "hi", "fake-model", stream=True)) as response:
                    assert response.status_code == 200
                    body = b""
                    chunks = response.aiter_bytes()
                    while b"first" not in body:
                        body += await chunks.__anext__()
                    request_id = response.headers["x-request-id"]
                # leaving the block closes the connection: the client has gone
                left = time.monotonic()
            upstream = fake_provider.last
            await upstream.wait(timeout=1.5)
            assert upstream.disconnected and not upstream.completed
            assert time.monotonic() - left < 1.5
            record = await _usage_record(server, request_id)
        assert record["finish_reason"] == "incomplete"
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # a hang-up is no error
        assert app.state_ref.metrics.registry.get_sample_value("llm_proxy_active_streams") == 0
    finally:
        await asyncio.to_thread(server.stop)


async def _usage_record(server: LiveServer, request_id: str) -> dict[str, Any]:
    """The usage record of ``request_id``, read over HTTP (the store lives in the server's thread)."""
    deadline = time.monotonic() + 3
    async with httpx.AsyncClient(base_url=server.url, timeout=5) as client:
        while True:
            rows = (await client.get("/v2/usage/recent", params={"limit": 20})).json()["data"]
            found = [r for r in rows if r["request_id"] == request_id]
            if found:
                return found[0]
            if time.monotonic() > deadline:
                raise AssertionError("no usage record for the abandoned stream")
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("frontend", FRONTENDS)
async def test_a_client_leaving_before_the_first_event_ends_the_upstream_call(
        tmp_path: Path, fake_provider: FakeProvider, frontend: str,  # noqa: F811
        caplog: pytest.LogCaptureFixture) -> None:
    """A reasoning model can be silent for minutes before its first token: a client that gives up
    in that time ends the upstream call too (watched after ``FIRST_EVENT_GRACE``), recorded as 499."""
    from router.http.hangup import FIRST_EVENT_GRACE

    app = proxy_for(tmp_path, fake_provider)
    fake_provider.enqueue(delay(30, stream_chunks(["too late"])))
    server = LiveServer(app).start()
    path, query = path_and_query(frontend)
    try:
        with caplog.at_level(logging.INFO):
            async with httpx.AsyncClient(base_url=server.url, timeout=FIRST_EVENT_GRACE + 0.5) as client:
                with pytest.raises(httpx.ReadTimeout):  # no headers yet: the stream has not started
                    await client.post(path + (f"?{query}" if query else ""),
                                      json=chat_body(frontend, "think hard", "fake-model", stream=True))
            left = time.monotonic()
            upstream = fake_provider.last
            await upstream.wait(timeout=1.5)
            assert upstream.disconnected and not upstream.completed
            assert time.monotonic() - left < 1.5
            async with httpx.AsyncClient(base_url=server.url, timeout=5) as client:
                deadline = time.monotonic() + 3
                while not (rows := [r for r in (await client.get("/v2/usage/recent")).json()["data"]
                                    if r["status"] == 499]):
                    assert time.monotonic() < deadline, "no 499 record"
                    await asyncio.sleep(0.05)
        assert rows[0]["error"] == "the client closed the connection"
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    finally:
        await asyncio.to_thread(server.stop)
