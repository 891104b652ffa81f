"""A whole upstream reply is read to at most ``backends.<name>.max_response_bytes``: a larger one
(told by its Content-Length before any of it is read, or by its bytes as they arrive, chunked or
ended by the connection closing) is a backend error -- 502 in the client's own error shape naming
the cap and the setting, and the chain's next target answers. Before, ``read_json`` read the whole
body into memory, whatever its size."""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import httpx
import orjson
import pytest

from backends.base import BackendError
from backends.factory import build_backends
from fakes.connectors import chat, make_config
from proxy_support import FRONTENDS, LiveServer, chat_body, chat_path, error_message, reply_text, write_config
from router.app import create_app
from router.config import connector_settings

CAP = 1024 * 1024
PIECE = 64 * 1024


def openai_reply(size: int) -> tuple[bytes, bytes, int]:
    """(head, tail, pad): an OpenAI chat completion of exactly ``size`` bytes is ``head``, ``pad``
    bytes of ``x`` (the reply's text), then ``tail``."""
    head = b'{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,' \
           b'"message":{"role":"assistant","content":"'
    tail = b'"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}'
    return head, tail, size - len(head) - len(tail)


class BigUpstream:
    """An HTTP/1.1 server on 127.0.0.1 whose every reply is a 200 OpenAI chat completion of ``size``
    bytes, written as fast as the socket takes it and framed as ``framing`` says: ``length``
    (Content-Length), ``chunked``, or ``close`` (neither: the body ends when the connection does).
    ``sent`` holds the body bytes written per connection, ``cut`` how many connections the reader
    closed before the body's end."""

    def __init__(self, size: int, framing: str) -> None:
        self.size, self.framing = size, framing
        self.sent: list[int] = []
        self.requests: list[bytes] = []  # each request's first line ("POST /v1/chat/completions ...")
        self.cut = 0
        self.done = asyncio.Event()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return "http://127.0.0.1:%d/v1" % self._server.sockets[0].getsockname()[1]

    async def __aenter__(self) -> BigUpstream:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sent = 0
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.requests.append(head.split(b"\r\n", 1)[0])
            length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            await reader.readexactly(int(length.group(1)) if length else 0)
            headers = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            if self.framing == "length":
                headers += b"content-length: %d\r\n" % self.size
            elif self.framing == "chunked":
                headers += b"transfer-encoding: chunked\r\n"
            else:
                headers += b"connection: close\r\n"
            writer.write(headers + b"\r\n")
            body_head, body_tail, pad = openai_reply(self.size)
            for part in self._parts(body_head, body_tail, pad):
                writer.write(b"%x\r\n%s\r\n" % (len(part), part) if self.framing == "chunked" else part)
                await writer.drain()
                sent += len(part)
            if self.framing == "chunked":
                writer.write(b"0\r\n\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            self.cut += 1
        finally:
            self.sent.append(sent)
            writer.close()
            self.done.set()

    @staticmethod
    def _parts(head: bytes, tail: bytes, pad: int) -> Iterator[bytes]:
        yield head
        filler = b"x" * PIECE
        while pad > 0:
            yield filler[:pad]
            pad -= PIECE
        yield tail


async def complete_with_cap(tmp_path: Path, upstream: BigUpstream, kind: str = "openai") -> Any:
    """One non-streamed call of a ``kind`` connector, capped at ``CAP``, to ``upstream``."""
    backend = build_backends(connector_settings(make_config(tmp_path, b={
        "type": kind, "base_url": upstream.url, "api_key": "sk-test-0123456789abcdef",
        "max_response_bytes": CAP})))["b"]
    try:
        return await backend.complete(chat())
    finally:
        await backend.aclose()


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
async def test_a_reply_of_exactly_the_cap_is_read(tmp_path: Path, framing: str) -> None:
    async with BigUpstream(CAP, framing) as upstream:
        reply = await complete_with_cap(tmp_path, upstream)
    assert len(reply.text()) == openai_reply(CAP)[2]
    assert upstream.sent == [CAP] and upstream.cut == 0


@pytest.mark.parametrize("kind", ["openai", "anthropic", "gemini"])
@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
async def test_a_reply_over_the_cap_is_a_server_error_and_is_not_read_on(tmp_path: Path, framing: str,
                                                                         kind: str) -> None:
    """The fake sends 100 times the cap as fast as the socket takes it: the connector stops
    reading at the cap (one byte over) and drops the connection, so the fake gets through only
    what the sockets between them buffer, nowhere near the whole body."""
    size = 100 * CAP
    async with BigUpstream(size, framing) as upstream:
        with pytest.raises(BackendError) as info:
            await complete_with_cap(tmp_path, upstream, kind)
        await asyncio.wait_for(upstream.done.wait(), 10)
    error = info.value
    assert error.kind == "server" and error.retryable
    assert f"larger than {CAP} bytes (backends.b.max_response_bytes)" in error.message
    if framing == "length":
        assert f"declares {size} bytes" in error.message  # refused before a byte of the body was read
    assert upstream.cut == 1 and upstream.sent[0] < 16 * CAP, upstream.sent


async def test_a_reply_one_byte_over_the_cap_is_refused(tmp_path: Path) -> None:
    async with BigUpstream(CAP + 1, "chunked") as upstream:
        with pytest.raises(BackendError) as info:
            await complete_with_cap(tmp_path, upstream)
    assert "max_response_bytes" in info.value.message and "not read further" in info.value.message


def test_the_default_cap_is_32_mib(tmp_path: Path) -> None:
    settings = connector_settings(make_config(tmp_path, b={"type": "openai", "api_key": "sk-x"}))["b"]
    assert settings.max_response_bytes == 32 * 1024 * 1024


@contextlib.asynccontextmanager
async def proxy(tmp_path: Path, upstream: BigUpstream, route: str | None = None) -> AsyncIterator[httpx.AsyncClient]:
    """The proxy (uvicorn on 127.0.0.1) with a ``big`` backend capped at ``CAP`` pointing at
    ``upstream`` (the default backend), and with ``route`` as every request's route if given."""
    if route is not None:
        rules = tmp_path / "routes.d"
        rules.mkdir(parents=True, exist_ok=True)
        (rules / "10-chain.yaml").write_text(f'rules:\n  - name: chain\n    route: "{route}"\n', encoding="utf-8")
    config = write_config(tmp_path, backends={
        "big": {"type": "openai", "base_url": upstream.url, "api_key": "sk-test-0123456789abcdef",
                "max_response_bytes": CAP},
        "echo": {"type": "echo"}}, default_backend="big")
    server = LiveServer(create_app(config, disable_auth=True)).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            yield client
    finally:
        await asyncio.to_thread(server.stop)


def chat_calls(upstream: BigUpstream) -> list[bytes]:
    """The chat requests the upstream got (the proxy also lists its models once at start)."""
    return [line for line in upstream.requests if line.startswith(b"POST ")]


def post(client: httpx.AsyncClient, frontend: str, text: str = "hi") -> Any:
    path, _, query = chat_path(frontend, "m").partition("?")
    return client.post(path, params=query or None, content=orjson.dumps(chat_body(frontend, text, "m")),
                       headers={"content-type": "application/json"})


@pytest.mark.parametrize("frontend", FRONTENDS)
async def test_an_oversized_reply_is_a_502_in_the_clients_shape(tmp_path: Path, frontend: str) -> None:
    async with BigUpstream(10 * CAP, "chunked") as upstream, proxy(tmp_path, upstream) as client:
        result = await post(client, frontend)
    assert result.status_code == 502, result.text
    message = error_message(frontend, result.json())
    assert f"larger than {CAP} bytes" in message and "backends.big.max_response_bytes" in message
    assert all(sent < 10 * CAP for sent in upstream.sent), upstream.sent  # each try was cut short
    assert len(chat_calls(upstream)) == 1, upstream.requests  # asked once: the same request gets the same reply


@pytest.mark.parametrize("frontend", FRONTENDS)
async def test_an_oversized_reply_fails_over_to_the_next_target(tmp_path: Path, frontend: str) -> None:
    async with BigUpstream(10 * CAP, "length") as upstream, \
            proxy(tmp_path, upstream, route="big:m -> echo:m") as client:
        result = await post(client, frontend, "answered by the next target")
    assert result.status_code == 200, result.text
    assert "answered by the next target" in reply_text(frontend, _Result(result))
    assert upstream.sent and upstream.cut == len(upstream.sent)  # the big target was tried, and cut
    assert len(chat_calls(upstream)) == 1, upstream.requests  # once: not asked again before failing over


class _Result:
    """An httpx response as ``reply_text`` reads a Falcon result (``.json``, ``.text``, ``.headers``)."""

    def __init__(self, response: httpx.Response) -> None:
        self.status_code, self.json, self.text = response.status_code, response.json(), response.text
        self.headers = response.headers
