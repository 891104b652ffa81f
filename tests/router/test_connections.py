"""Slow and surplus clients against the real server (uvicorn with ``router/connections.py``), on raw
sockets: headers or a body dribbled a line a second get a 408 in the path's error shape when the
``server`` timeouts run out, an idle connection is closed, connections beyond ``max_connections``
are closed at once, and ordinary clients (kept-alive, split packets) notice nothing."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from proxy_support import API_KEY, LiveServer, error_message, write_config
from router.app import create_app

HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
SLACK = 1.5  # scheduling on a busy test machine


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    config = write_config(tmp_path, auth={"api_keys": [API_KEY]},
                          server={"header_timeout": HEADER_TIMEOUT, "body_timeout": BODY_TIMEOUT, "max_connections": 3})
    app = create_app(config)
    app.reloader.watch = False
    live = LiveServer(app).start()
    try:
        yield live
    finally:
        live.stop()


def _connect(server: LiveServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def _read_reply(sock: socket.socket, deadline: float) -> bytes:
    """Everything until the server closes, or what arrived by ``deadline``."""
    data = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data


def _dribble(sock: socket.socket, lines: list[bytes], every: float = 1.0) -> tuple[bytes, float]:
    """Send ``lines`` one per ``every`` seconds until the server answers or closes; returns
    (reply, seconds from the first line to the reply)."""
    started = time.monotonic()
    for line in lines:
        try:
            sock.sendall(line)
        except (BrokenPipeError, ConnectionResetError):
            break
        sock.settimeout(every)
        try:
            first = sock.recv(65536)
        except socket.timeout:
            continue
        return first + _read_reply(sock, time.monotonic() + 2), time.monotonic() - started
    return _read_reply(sock, time.monotonic() + 2), time.monotonic() - started


def _parse(reply: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, json.loads(body)


HEADER_LINES = [b"X-Slow-%d: %s\r\n" % (i, b"x" * 10) for i in range(12)]


@pytest.mark.parametrize("path,frontend", [(b"/v2/chat/completions", "openai"), (b"/v1/messages", "anthropic"),
                                           (b"/v1beta/models/m:generateContent", "gemini")])
def test_headers_dribbled_a_line_a_second_get_408(server, path, frontend):
    with _connect(server) as sock:
        reply, took = _dribble(sock, [b"POST " + path + b" HTTP/1.1\r\nHost: localhost\r\n", *HEADER_LINES])
    assert reply, "the server never answered the slow client"
    status, headers, body = _parse(reply)
    assert status == 408 and headers["connection"] == "close"
    assert "server.header_timeout" in error_message(frontend, body)
    assert HEADER_TIMEOUT - 0.5 <= took <= HEADER_TIMEOUT + SLACK, took


def test_an_idle_connection_is_closed(server):
    with _connect(server) as sock:
        started = time.monotonic()
        assert _read_reply(sock, started + HEADER_TIMEOUT + SLACK + 2) == b""
        assert time.monotonic() - started <= HEADER_TIMEOUT + SLACK


@pytest.mark.parametrize("key", [True, False], ids=["before-reply", "after-401"])
def test_body_dribbled_a_chunk_a_second(server, key):
    """With a key the app waits for the body: 408. Without, the 401 goes out at once, and the
    client still sending its body is cut off when body_timeout runs out."""
    head = (b"POST /v1/messages HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n" + (b"x-api-key: " + API_KEY.encode() + b"\r\n" if key else b"") + b"\r\n")
    with _connect(server) as sock:
        sock.sendall(head)
        if key:
            reply, took = _dribble(sock, [b'{"model": "m", ' + b" " * 10] + [b" " * 10] * 12)
            status, headers, body = _parse(reply)
            assert status == 408 and "server.body_timeout" in error_message("anthropic", body)
            assert BODY_TIMEOUT - 0.5 <= took <= BODY_TIMEOUT + SLACK, took
        else:
            sock.sendall(b"{")  # Falcon starts on the first piece of body
            sock.settimeout(5)
            assert b" 401 " in sock.recv(65536).split(b"\r\n")[0]
            started = time.monotonic()
            closed = False
            for _ in range(12):
                try:
                    sock.sendall(b" " * 10)
                    time.sleep(1)
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                    break
                sock.settimeout(0.01)
                try:
                    if sock.recv(1) == b"":
                        closed = True
                        break
                except socket.timeout:
                    pass
                except ConnectionResetError:
                    closed = True
                    break
            assert closed and time.monotonic() - started <= BODY_TIMEOUT + SLACK + 1


def _request(path: bytes = b"/v2/models", close: bool = False) -> bytes:
    return (b"GET " + path + b" HTTP/1.1\r\nHost: localhost\r\nx-api-key: " + API_KEY.encode() + b"\r\n"
            + (b"Connection: close\r\n" if close else b"") + b"\r\n")


def _one_reply(sock: socket.socket) -> int:
    """Status of one Content-Length reply on a kept-alive connection."""
    data = b""
    sock.settimeout(5)
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split()[1])


def test_ordinary_clients_notice_nothing(server):
    """Kept-alive requests over more than header_timeout in all, and a request split in packets."""
    with _connect(server) as sock:
        for _ in range(3):
            sock.sendall(_request())
            assert _one_reply(sock) == 200
            time.sleep(HEADER_TIMEOUT * 0.6)  # idle between requests: keep-alive's business, not the header timer's
        request = _request(close=True)
        for part in (request[:10], request[10:30], request[30:]):
            sock.sendall(part)
            time.sleep(HEADER_TIMEOUT * 0.3)
        assert _one_reply(sock) == 200


def test_connections_beyond_the_limit_are_closed(server):
    held = [_connect(server) for _ in range(3)]
    try:
        time.sleep(0.3)  # the server has seen them
        with _connect(server) as extra:
            extra.sendall(_request(close=True))
            reply = _read_reply(extra, time.monotonic() + 3)
            assert reply == b"", reply[:100]
        held.pop().close()
        time.sleep(0.3)
        with _connect(server) as again:
            again.sendall(_request(close=True))
            assert _one_reply(again) == 200
    finally:
        for sock in held:
            sock.close()


def test_a_reload_applies_new_limits_to_new_connections(tmp_path):
    config = write_config(tmp_path, auth={"api_keys": [API_KEY]}, server={"header_timeout": 30})
    app = create_app(config)
    app.reloader.watch = False
    live = LiveServer(app).start()
    try:
        write_config(tmp_path, auth={"api_keys": [API_KEY]}, server={"header_timeout": 1})
        with _connect(live) as sock:
            sock.sendall(b"POST /v2/admin/reload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nx-api-key: "
                         + API_KEY.encode() + b"\r\nConnection: close\r\n\r\n")
            assert b" 200 " in _read_reply(sock, time.monotonic() + 5).split(b"\r\n")[0]
        with _connect(live) as sock:
            reply, took = _dribble(sock, [b"GET /v2/models HTTP/1.1\r\n", *HEADER_LINES])
        assert _parse(reply)[0] == 408 and took <= 1 + SLACK
    finally:
        live.stop()


def test_a_kept_alive_connection_outlives_the_clients_idle_expiry(tmp_path):
    """uvicorn alone closes an idle kept-alive connection after 5 s, a moment a client with a
    longer idle expiry (aiohttp: 15 s) may pick to send its next request, which then fails with a
    disconnect. The proxy keeps it ``server.keep_alive_timeout`` (20 s by default, 7 here): the
    next request after 5.5 s idle is served on the same connection, and the connection closes
    once the timeout passes."""
    config = write_config(tmp_path, auth={"api_keys": [API_KEY]}, server={"keep_alive_timeout": 7})
    app = create_app(config)
    app.reloader.watch = False
    live = LiveServer(app).start()
    request = b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n"
    try:
        with _connect(live) as sock:
            sock.sendall(request)
            assert b" 200 " in sock.recv(65536).split(b"\r\n")[0]
            time.sleep(5.5)
            sock.sendall(request)
            assert b" 200 " in sock.recv(65536).split(b"\r\n")[0]
            idle_from = time.monotonic()
            assert _read_reply(sock, idle_from + 7 + SLACK + 2) == b""  # closed by the server ...
            assert 7 - 0.5 <= time.monotonic() - idle_from <= 7 + SLACK  # ... at keep_alive_timeout
    finally:
        live.stop()
    assert write_config(tmp_path, auth={"api_keys": [API_KEY]}).server.keep_alive_timeout == 20  # the default


async def test_a_pipelined_request_waits_without_cutting_into_the_reply_before_it(tmp_path):
    """Request 2 is pipelined behind a slow streamed reply and finished only after header_timeout:
    the server, not the client, held it up, so the first reply arrives whole and the second too."""
    import asyncio

    from fakes.provider import FakeProvider, delay

    async with FakeProvider() as fake:
        config = write_config(tmp_path, auth={"api_keys": [API_KEY]}, server={"header_timeout": 1, "body_timeout": 1},
                              backends={"up": {"type": "openai-compatible", "base_url": fake.openai_base_url,
                                               "api_key": fake.key("openai")}}, default_backend="up")
        fake.on_model("slow", delay(2.5))
        app = create_app(config)
        app.reloader.watch = False
        live = LiveServer(app).start()
        try:
            body = json.dumps({"model": "slow", "messages": [{"role": "user", "content": "hi"}]}).encode()
            first = (b"POST /v2/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                     b"x-api-key: " + API_KEY.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            second = _request(close=True)

            def exchange() -> bytes:
                with _connect(live) as sock:
                    sock.sendall(first + second[:20])  # the second request begins at once ...
                    time.sleep(1.8)  # ... and is finished after header_timeout, while the first is served
                    sock.sendall(second[20:])
                    return _read_reply(sock, time.monotonic() + 10)

            replies = await asyncio.to_thread(exchange)
        finally:
            live.stop()
    import re

    statuses = [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", replies)]
    assert statuses == [200, 200], replies[:800]
    assert replies.count(b'"object":"chat.completion"') == 1 and replies.endswith(b'"/v2/messages"}}')  # the listing, whole


def test_each_request_on_a_connection_has_its_own_header_clock(server):
    """The first request's headers are timed from connect; a later one's from its own first byte,
    even when it begins in the same packet that ends the one before."""
    import re

    with _connect(server) as sock:
        time.sleep(HEADER_TIMEOUT * 0.6)
        second = _request(close=True)
        sock.sendall(_request() + second[:12])
        time.sleep(HEADER_TIMEOUT * 0.6)  # past header_timeout since connect, not since the second began
        sock.sendall(second[12:])
        replies = _read_reply(sock, time.monotonic() + 5)
    assert [int(c) for c in re.findall(rb"HTTP/1\.1 (\d{3}) ", replies)] == [200, 200], replies[:300]
