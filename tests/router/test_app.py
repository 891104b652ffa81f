"""``router.app.ProxyApp``: a finished request leaves nothing behind for the cyclic collector.

uvicorn hands the app its request's scope and, as ``receive``, a bound method of the object that
holds that scope (``RequestResponseCycle``). Whatever the app puts in the scope that refers back
to ``receive`` closes a cycle, which refcounting cannot free: with one per request the collector
ran every ~1,800 requests for ~8 ms in the live proxy. These requests go through an object shaped
like uvicorn's, with the collector off, and that object must be gone once the request is.
"""

from __future__ import annotations

import gc
import json
import weakref
from pathlib import Path
from typing import Any, Iterator

import pytest

from proxy_support import API_KEY, write_config
from router.app import create_app
from router.http.inprocess import lifespan, request_scope

AUTH = [(b"authorization", f"Bearer {API_KEY}".encode())]


class Cycle:
    """uvicorn's RequestResponseCycle as far as references go: it holds the scope and its
    ``receive`` is a method of it."""

    def __init__(self, scope: dict[str, Any], body: bytes) -> None:
        self.scope = scope
        self.body = body
        self.status = 0
        self.chunks: list[bytes] = []

    async def receive(self) -> dict[str, Any]:
        return {"type": "http.request", "body": self.body, "more_body": False}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        elif message["type"] == "http.response.body":
            self.chunks.append(message.get("body", b""))


@pytest.fixture
def collector_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def chat(content: str, stream: bool = False) -> bytes:
    return json.dumps({"model": "echo", "stream": stream, "messages": [{"role": "user", "content": content}]}).encode()


@pytest.mark.parametrize(("path", "body", "headers", "status"), [
    ("/v2/chat/completions", chat("hello"), AUTH, 200),
    ("/v2/chat/completions", chat("a stream", stream=True), AUTH, 200),
    ("/v2/messages", json.dumps({"model": "echo", "max_tokens": 16, "stream": True,
                                 "messages": [{"role": "user", "content": "hi"}]}).encode(), AUTH, 200),
    ("/v2/chat/completions", b'{"model": "echo", "messages": "not a list"}', AUTH, 400),
    ("/v2/chat/completions", chat("no key"), [], 401),
], ids=["json", "stream", "anthropic-stream", "bad-body", "no-key"])
async def test_a_request_is_freed_by_refcounting_alone(tmp_path: Path, collector_off: None, path: str, body: bytes,
                                                       headers: list[tuple[bytes, bytes]], status: int) -> None:
    app = create_app(write_config(tmp_path, auth={"api_keys": [API_KEY]}))
    await lifespan(app, "startup")
    try:
        cycle = Cycle(request_scope(path, headers, body), body)
        await app(cycle.scope, cycle.receive, cycle.send)
        assert cycle.status == status
        assert b"".join(cycle.chunks)
        gone = weakref.ref(cycle)
        del cycle
        assert gone() is None, "the request's scope and receive are still referenced (a cycle)"
    finally:
        await lifespan(app, "shutdown")
