"""``router.http.inprocess``, what the in-process benchmarks and the round-trip test drive the app
with: a request gets the app's real reply (status and body, a stream's events whole), the
lifespan's startup really starts what requests need and its failure is raised, not ignored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from proxy_support import API_KEY, write_config
from router.app import create_app
from router.http.inprocess import call, lifespan, request_scope

AUTH = [(b"authorization", f"Bearer {API_KEY}".encode())]


def chat(content: str, stream: bool = False) -> bytes:
    return json.dumps({"model": "echo", "stream": stream, "messages": [{"role": "user", "content": content}]}).encode()


async def test_a_request_gets_the_apps_reply_and_the_scope_can_be_reused(tmp_path: Path) -> None:
    app = create_app(write_config(tmp_path, auth={"api_keys": [API_KEY]}))
    await lifespan(app, "startup")
    try:
        body = chat("hello there")
        scope = request_scope("/v2/chat/completions", AUTH, body)
        for _ in range(2):  # the scope is copied per call: the app may write to its own
            status, reply = await call(app, scope, body)
            assert status == 200
            assert "hello there" in json.loads(reply)["choices"][0]["message"]["content"]
        status, reply = await call(app, request_scope("/v2/chat/completions", [], body), body)
        assert status == 401 and json.loads(reply)["error"]
        streamed = chat("a stream", stream=True)
        status, reply = await call(app, request_scope("/v2/chat/completions", AUTH, streamed), streamed)
        assert status == 200 and reply.rstrip().endswith(b"data: [DONE]") and b"a stream" in reply
    finally:
        await lifespan(app, "shutdown")


async def test_startup_starts_the_usage_writer_and_shutdown_stops_it(tmp_path: Path) -> None:
    app = create_app(write_config(tmp_path, auth={"api_keys": [API_KEY]}, usage={"path": str(tmp_path / "usage.db")}))
    store = app.state_ref.recorder.store
    assert store._writer is None
    await lifespan(app, "startup")
    assert store._writer is not None and not store._writer.done()
    await lifespan(app, "shutdown")
    assert store._writer is None


async def test_a_failed_startup_is_raised() -> None:
    async def failing(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})

    with pytest.raises(RuntimeError, match="lifespan startup failed: no database"):
        await lifespan(failing, "startup")


async def test_an_app_that_raises_before_answering_is_raised() -> None:
    async def broken(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise ValueError("broken app")

    with pytest.raises(ValueError, match="broken app"):
        await lifespan(broken, "startup")
