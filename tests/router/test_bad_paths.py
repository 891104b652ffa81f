"""Odd percent-encodings, control characters and invalid UTF-8 in paths and query strings, sent on
a raw socket to the real server: always a 4xx (or a 200 where the request means something) with a
JSON body in the front end's error shape, the connection answered, never a traceback in the log."""

from __future__ import annotations

import json
import logging
import socket
from typing import Any

import pytest

from proxy_support import API_KEY, LiveServer, chat_body, error_message
from router.frontends import frontend_for_path

# Paths (percent-encoded as a client sends them) that name no endpoint, or name one with odd bytes.
ODD_PATHS = [
    b"/v1/%E2%82%AC",  # a euro sign: non-ASCII in the /v1 successor Link header
    b"/v1/%0d%0a",  # CR LF: header injection into the Link header
    b"/v1/%0D%0AX-Injected:%201",
    b"/v1/%00",
    b"/v1/models/%00",
    b"/v1/%ff",  # invalid UTF-8
    b"/v1/%C3%28",  # invalid UTF-8 continuation
    b"/v1/%ED%A0%80",  # an encoded UTF-16 surrogate
    b"/v1/%F4%90%80%80",  # beyond U+10FFFF
    b"/v1/%E2%82",  # truncated sequence
    b"/v1/%",  # a lone percent sign
    b"/v1/%zz",
    b"/v1/%7f%1b[31m",
    b"/v1/models/%C3%28:generateContent",
    b"/v1/%2e%2e/%2e%2e/etc/passwd",
    b"/v2/%E2%82%AC",
    b"/v2/%0d%0a",
    b"/v2/models/%0a",
    b"/v1beta/models/%ff",
    b"/%0d%0a",
    b"/v1/" + b"%E2%82%AC" * 500,
]
ODD_QUERIES = [b"%ff=%fe", b"key=%00", b"alt=%0d%0a", b"%00", b"a=%E2%82", b"=&=&%", b"x=%0d%0aSet-Cookie:%20a=b",
               b"alt=%ff"]


def _exchange(server: LiveServer, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send one request, read the whole reply (the server closes: ``Connection: close``)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data, f"connection closed without a reply to {request[:120]!r}"
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def _request(method: str, target: bytes, body: Any = None, key: bool = True) -> bytes:
    lines = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: localhost", b"Connection: close"]
    if key:
        lines.append(b"x-api-key: " + API_KEY.encode())
    payload = b""
    if body is not None:
        payload = json.dumps(body).encode()
        lines += [b"Content-Type: application/json", b"Content-Length: " + str(len(payload)).encode()]
    return b"\r\n".join(lines) + b"\r\n\r\n" + payload


def _frontend(target: bytes, method: str = "GET") -> str:
    from urllib.parse import unquote_to_bytes

    path = unquote_to_bytes(target.split(b"?")[0]).decode("utf-8", "replace")
    return frontend_for_path(path, method).name


@pytest.fixture
def no_tracebacks(caplog: pytest.LogCaptureFixture) -> Any:
    """No record with a traceback or at ERROR, ours or uvicorn's ("Exception in ASGI application";
    uvicorn's loggers do not propagate to the root logger, so the capture is attached to them)."""
    caplog.set_level(logging.INFO)
    uvicorn_logger = logging.getLogger("uvicorn")
    uvicorn_logger.addHandler(caplog.handler)
    try:
        yield
    finally:
        uvicorn_logger.removeHandler(caplog.handler)
    crashes = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not crashes, [r.getMessage() for r in crashes]


def _check(status: int, headers: dict[str, str], body: bytes, frontend: str) -> None:
    assert headers.get("content-type", "").startswith("application/json"), (status, headers, body[:200])
    if status >= 400:
        assert 400 <= status < 500, (status, body[:300])
        error_message(frontend, json.loads(body))
    for value in headers.values():  # nothing the client sent breaks a header open
        assert "\r" not in value and "\n" not in value and value.isascii()
    assert "x-injected" not in headers and "set-cookie" not in headers


@pytest.mark.parametrize("path", ODD_PATHS, ids=[p[:40].decode() for p in ODD_PATHS])
@pytest.mark.parametrize("key", [True, False], ids=["key", "no-key"])
def test_odd_paths_get_a_4xx_in_the_error_shape(live_server, no_tracebacks, path, key):
    for method, body in (("GET", None), ("POST", {"model": "m"})):
        status, headers, reply = _exchange(live_server, _request(method, path, body, key=key))
        _check(status, headers, reply, _frontend(path, method))
        assert status == (404 if key else 401) or (key and status in (400, 405)), (path, status, reply[:200])
        if path.startswith(b"/v1/"):
            assert headers["deprecation"] == "true" and headers["link"].startswith("</v2/")


@pytest.mark.parametrize("query", ODD_QUERIES, ids=[q.decode() for q in ODD_QUERIES])
@pytest.mark.parametrize("path", [b"/v1/chat/completions", b"/v2/messages", b"/v1beta/models/m:generateContent",
                                  b"/v1/models", b"/v2/usage/recent", b"/v1/%E2%82%AC"])
def test_odd_query_strings(live_server, no_tracebacks, path, query):
    frontend = _frontend(path, "POST")
    body = None if path.endswith((b"models", b"recent")) else chat_body(frontend, "hi")
    status, headers, reply = _exchange(live_server, _request("POST" if body else "GET", path + b"?" + query, body))
    _check(status, headers, reply, frontend)


@pytest.mark.parametrize("raw", [b"/v1/\xff", b"/v1/\x00", b"/v1/a b", b"/v1/\x7f", b"/v2/models\t", b"\xe2\x82\xac"])
def test_bytes_the_http_parser_refuses_get_a_json_400(live_server, no_tracebacks, raw):
    status, headers, reply = _exchange(live_server, _request("GET", raw))
    assert status == 400, reply
    assert headers["content-type"].startswith("application/json")
    assert "invalid HTTP request" in error_message("openai", json.loads(reply))


def test_odd_paths_in_process(client):
    """The same through Falcon's test client (no server): the Link header stays a valid header."""
    for path in ("/v1/€", "/v1/\r\nX: y", "/v1/\x00", "/v1/\x7f\x1b"):
        result = client.simulate_get(path)
        assert result.status_code == 404, result.text
        link = result.headers["link"]
        assert link.isascii() and link.isprintable() and link.startswith("</v2/")
