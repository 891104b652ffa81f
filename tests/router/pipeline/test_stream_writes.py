"""How a stream's frames leave the proxy: the first event at once, then one write per upstream read.

The real OpenAI connector reads a canned upstream body (no socket); the app is called in process
and every ASGI ``http.response.body`` it sends is kept, so the test sees the writes themselves.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from proxy_support import API_KEY, write_config
from router.app import create_app
from router.http.inprocess import lifespan, receive_once, request_scope
from router.wire.sse import parse_all

BENCHMARKS = str(Path(__file__).resolve().parents[3] / "benchmarks")
if BENCHMARKS not in sys.path:
    sys.path.insert(0, BENCHMARKS)

from inprocess_bench import socketless_streams  # noqa: E402  (the connector over canned reads, no socket)

AUTH = [(b"authorization", f"Bearer {API_KEY}".encode())]
BODY = json.dumps({"model": "up:m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}).encode()


def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    data = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(data).encode() + b"\n\n"


ROLE = chunk({"role": "assistant", "content": ""})
TEXT = [chunk({"content": f"tok{i} "}) for i in range(4)]
END = chunk({}, "stop") + b"data: [DONE]\n\n"


async def body_writes(tmp_path: Path, reads: list[bytes]) -> list[bytes]:
    """The bodies of the ASGI sends of one streamed reply whose upstream sent ``reads``."""
    config = write_config(tmp_path, auth={"api_keys": [API_KEY]},
                          backends={"up": {"type": "openai-compatible", "base_url": "http://127.0.0.1:9/v1"}},
                          default_backend="up")
    app = create_app(config)
    socketless_streams(app.state_ref.state.backends["up"], reads)  # each item one network read
    bodies: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            assert message["status"] == 200
        elif message["type"] == "http.response.body" and message.get("body"):
            bodies.append(message["body"])

    await lifespan(app, "startup")
    try:
        await app(request_scope("/v2/chat/completions", AUTH, BODY), receive_once(BODY), send)
    finally:
        await lifespan(app, "shutdown")
    return bodies


def texts(body: bytes) -> list[str]:
    """The text of each OpenAI chunk in ``body`` ("" for a chunk without text, [DONE] as is)."""
    out = []
    for _event, data in parse_all(body):
        if data == "[DONE]":
            out.append(data)
        else:
            choices = json.loads(data)["choices"]
            out.append(choices[0]["delta"].get("content") or "" if choices else "")
    return out


async def test_the_first_event_is_written_before_the_rest_of_its_upstream_read(tmp_path: Path) -> None:
    """A provider that sends its whole reply in one read (a short one, or a fast network): the
    client's first byte does not wait until every other event of that read has been through the
    guards and the encoder."""
    writes = await body_writes(tmp_path, [ROLE + b"".join(TEXT) + END])
    assert len(writes) == 2
    assert texts(writes[0]) == [""]  # the assistant's role, alone
    assert texts(writes[1]) == ["tok0 ", "tok1 ", "tok2 ", "tok3 ", "", "[DONE]"]


async def test_after_the_first_event_each_upstream_read_is_one_write(tmp_path: Path) -> None:
    writes = await body_writes(tmp_path, [ROLE + TEXT[0], TEXT[1] + TEXT[2], TEXT[3], END])
    assert [texts(write) for write in writes] == [[""], ["tok0 "], ["tok1 ", "tok2 "], ["tok3 "], ["", "[DONE]"]]
