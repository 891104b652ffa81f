"""Provider and socket failures become classified :class:`BackendError` s: the provider's message is
kept, keys are redacted, retry hints are read (Retry-After header, or google.rpc.RetryInfo in the
body for Gemini/Code Assist), and broken or stalled connections end promptly instead of hanging.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from backends.base import BackendError
from fakes.provider import FakeProvider, delay, error, reset, reset_after_chunks, stream_chunks, stream_error
from router.wire.canonical import StreamError, StreamStart

from .conftest import OPENAI_KEY, backend_settings, chat, collect, make_config

FAMILY_KINDS = ["openai", "anthropic", "gemini"]

# status -> expected kind (generic); Anthropic's 529 and 503 are "overloaded" too
STATUS_CASES = [
    (400, "bad_request"), (401, "auth"), (403, "auth"), (404, "not_found"), (429, "rate_limited"),
    (500, "server"), (503, "overloaded"), (504, "timeout"),
]


async def one(build, fake: FakeProvider, kind: str, **extra):
    return (await build(b=backend_settings(kind, fake, **extra)))["b"]


async def attempt(backend, stream: bool) -> BackendError:
    with pytest.raises(BackendError) as info:
        if stream:
            await collect(backend.stream(chat(stream=True)))
        else:
            await backend.complete(chat())
    return info.value


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("kind", FAMILY_KINDS)
@pytest.mark.parametrize("status,expected", STATUS_CASES)
async def test_status_classification(build, fake: FakeProvider, kind: str, status: int, expected: str,
                                     stream: bool) -> None:
    backend = await one(build, fake, kind)
    fake.enqueue(error(status, message=f"provider says {status}"))
    exc = await attempt(backend, stream)
    assert exc.kind == expected and exc.status == status
    assert f"provider says {status}" in exc.message
    assert exc.backend == "b"


async def test_anthropic_529_overloaded(build, fake: FakeProvider) -> None:
    backend = await one(build, fake, "anthropic")
    fake.enqueue(error(529))
    exc = await attempt(backend, False)
    assert exc.kind == "overloaded" and exc.status == 529 and "Overloaded" in exc.message and exc.retryable


async def test_anthropic_overloaded_body_with_other_status(build, fake: FakeProvider) -> None:
    backend = await one(build, fake, "anthropic")
    fake.enqueue(error(500, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}))
    assert (await attempt(backend, False)).kind == "overloaded"


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
@pytest.mark.parametrize("header,seconds", [("7", 7.0), ("0", 0.0)])
async def test_retry_after_header(build, fake: FakeProvider, kind: str, header: str, seconds: float) -> None:
    backend = await one(build, fake, kind)
    fake.enqueue(error(429, headers={"Retry-After": header}))
    exc = await attempt(backend, False)
    assert exc.kind == "rate_limited" and exc.retry_after == seconds


async def test_retry_after_http_date(build, fake: FakeProvider) -> None:
    import email.utils
    import time

    backend = await one(build, fake, "openai")
    fake.enqueue(error(429, headers={"Retry-After": email.utils.formatdate(time.time() + 30, usegmt=True)}))
    exc = await attempt(backend, False)
    assert 25 <= exc.retry_after <= 31


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_gemini_retry_info_in_body(build, fake: FakeProvider, stream: bool) -> None:
    backend = await one(build, fake, "gemini")
    fake.enqueue(error(429, retry_after=17))
    exc = await attempt(backend, stream)
    assert exc.kind == "rate_limited" and exc.retry_after == 17.0
    assert "Resource has been exhausted" in exc.message


@pytest.mark.parametrize("delay_text,seconds", [("2.5s", 2.5), ("30s", 30.0), ("0.250s", 0.25)])
async def test_google_retry_delay_formats(build, fake: FakeProvider, delay_text: str, seconds: float) -> None:
    backend = await one(build, fake, "gemini")
    body = {"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED", "details": [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay_text}]}}
    fake.enqueue(error(429, body))
    exc = await attempt(backend, False)
    assert exc.retry_after == seconds and "Quota exceeded" in exc.message


async def test_html_502_body(build, fake: FakeProvider) -> None:
    backend = await one(build, fake, "openai")
    html = "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>"
    fake.enqueue(error(502, html, content_type="text/html"))
    exc = await attempt(backend, False)
    assert exc.kind == "server" and exc.status == 502 and exc.retryable
    assert "502 Bad Gateway" in exc.message


async def test_empty_error_body(build, fake: FakeProvider) -> None:
    backend = await one(build, fake, "openai")
    fake.enqueue(error(500, b""))
    exc = await attempt(backend, False)
    assert exc.kind == "server" and exc.message.startswith("500")


@pytest.mark.parametrize("kind,key", [("openai", "sk-proj-abcdefghijklmnop1234"), ("anthropic", "sk-ant-api03-secretsecret"),
                                      ("gemini", "AIzaSyD-abcdefghijklmnopqrstuvwxyz12")])
async def test_key_redacted_from_provider_message(build, fake: FakeProvider, kind: str, key: str) -> None:
    family = kind
    fake.keys[family] = {key}
    backend = await one(build, fake, kind, api_key=key)
    fake.enqueue(error(400, message=f"Your key {key} is not allowed to use this model; Bearer {key}"))
    exc = await attempt(backend, False)
    assert key not in exc.message and key not in str(exc)
    assert "[redacted]" in exc.message and "is not allowed to use this model" in exc.message


async def test_unknown_shaped_key_redacted(build, fake: FakeProvider) -> None:
    """A key with no provider-typical prefix is still removed (the connector knows its own keys)."""
    key = "plain-custom-key-9f8e7d6c5b4a"
    fake.keys["openai"] = {key}
    backend = await one(build, fake, "openai", api_key=key)
    fake.enqueue(error(403, message=f"key {key} blocked"))
    exc = await attempt(backend, False)
    assert key not in exc.message and "blocked" in exc.message


async def test_wrong_key_echoed_by_provider_is_redacted(build, fake: FakeProvider) -> None:
    key = "sk-wrong-but-secret-key-0123456789"
    backend = await one(build, fake, "openai", api_key=key)
    exc = await attempt(backend, False)
    assert exc.kind == "auth" and exc.status == 401
    assert key not in exc.message and key[-4:] in exc.message  # OpenAI's own mask survives


# --- sockets ------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("kind", FAMILY_KINDS)
async def test_connection_refused(build, fake: FakeProvider, kind: str, stream: bool) -> None:
    settings = backend_settings(kind, fake)
    port = free_port()
    for field in ("base_url", "gemini_api_base_url"):
        if field in settings:
            settings[field] = settings[field].replace(str(fake.port), str(port))
    backend = (await build(b=settings))["b"]
    exc = await attempt(backend, stream)
    assert exc.kind == "connection" and exc.retryable and exc.status is None


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("kind", FAMILY_KINDS)
async def test_reset_before_headers(build, fake: FakeProvider, kind: str, stream: bool) -> None:
    backend = await one(build, fake, kind)
    fake.enqueue(reset())
    exc = await asyncio.wait_for(attempt(backend, stream), 5)
    assert exc.kind == "connection" and exc.retryable


@pytest.mark.parametrize("kind", FAMILY_KINDS)
async def test_reset_mid_stream_ends_with_error(build, fake: FakeProvider, kind: str) -> None:
    """After some events the socket dies: the stream must end with an error, never hang or end cleanly."""
    backend = await one(build, fake, kind)
    fake.enqueue(reset_after_chunks(2))
    events = []

    async def consume() -> None:
        async for event in backend.stream(chat(stream=True)):
            events.append(event)

    with pytest.raises(BackendError) as info:
        await asyncio.wait_for(consume(), 5)
    assert info.value.kind in ("connection", "server")
    assert isinstance(events[0], StreamStart)
    assert "".join(getattr(e, "text", "") for e in events) == "chunk chunk "


@pytest.mark.parametrize("kind", FAMILY_KINDS)
async def test_reset_mid_json_body(build, fake: FakeProvider, kind: str) -> None:
    backend = await one(build, fake, kind)
    fake.enqueue(reset_after_chunks(3))
    exc = await asyncio.wait_for(attempt(backend, False), 5)
    assert exc.kind == "connection"


@pytest.mark.parametrize("kind", FAMILY_KINDS)
async def test_in_stream_provider_error_event(build, fake: FakeProvider, kind: str) -> None:
    backend = await one(build, fake, kind)
    fake.enqueue(stream_error(after_chunks=1, message="Overloaded right now"))
    events = await asyncio.wait_for(collect(backend.stream(chat(stream=True))), 5)
    assert isinstance(events[-1], StreamError) and "Overloaded right now" in events[-1].message


TIMEOUTS = {"connect": 1.0, "first_byte": 0.3, "idle": 0.3}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("kind", FAMILY_KINDS)
async def test_first_byte_timeout(build, fake: FakeProvider, kind: str, stream: bool) -> None:
    backend = await one(build, fake, kind, timeout=TIMEOUTS)
    fake.enqueue(delay(3))
    loop = asyncio.get_running_loop()
    started = loop.time()
    exc = await attempt(backend, stream)
    assert exc.kind == "timeout" and exc.retryable
    assert loop.time() - started < 1.5
    rec = await fake.last.wait(3)
    assert rec.disconnected  # we hung up; the provider noticed


async def test_timeout_as_single_number(build, fake: FakeProvider) -> None:
    backend = await one(build, fake, "openai", timeout=0.3)
    fake.enqueue(delay(3))
    exc = await attempt(backend, False)
    assert exc.kind == "timeout" and "0.3" in exc.message


async def test_proxy_timeout_is_the_default(build, fake: FakeProvider) -> None:
    backend = (await build(proxy_timeout=0.3, b=backend_settings("openai", fake)))["b"]
    fake.enqueue(delay(3))
    assert (await attempt(backend, False)).kind == "timeout"


@pytest.mark.parametrize("kind", FAMILY_KINDS)
async def test_idle_timeout_between_chunks(build, fake: FakeProvider, kind: str) -> None:
    backend = await one(build, fake, kind, timeout=TIMEOUTS)
    fake.enqueue(stream_chunks(["a", "b", "c"], gap=2.0))
    events = []
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def consume() -> None:
        async for event in backend.stream(chat(stream=True)):
            events.append(event)

    with pytest.raises(BackendError) as info:
        await asyncio.wait_for(consume(), 5)
    assert info.value.kind == "timeout"
    assert loop.time() - started < 1.5
    assert isinstance(events[0], StreamStart)


async def test_slow_but_steady_stream_is_fine(build, fake: FakeProvider) -> None:
    """Each gap is under the idle limit, the total is well over it: no timeout."""
    backend = await one(build, fake, "openai", timeout=TIMEOUTS)
    fake.enqueue(stream_chunks(["a", "b", "c", "d", "e"], gap=0.1))
    events = await collect(backend.stream(chat(stream=True)))
    assert "".join(getattr(e, "text", "") for e in events) == "abcde"


async def test_closing_stream_early_closes_upstream(build, fake: FakeProvider) -> None:
    backend = await one(build, fake, "openai")
    fake.enqueue(stream_chunks(["x"] * 50, gap=0.02))
    events = backend.stream(chat(stream=True))
    await events.__anext__()
    await events.__anext__()
    await events.aclose()
    rec = await fake.last.wait(3)
    assert rec.disconnected and not rec.completed


async def test_html_body_with_200_is_server_error(build, fake: FakeProvider) -> None:
    """A captive portal or misrouted proxy answering 200 with HTML: a provider fault, not a crash."""
    backend = await one(build, fake, "openai")
    fake.enqueue(error(200, "<html><body>Please log in to the Wi-Fi</body></html>", content_type="text/html"))
    exc = await attempt(backend, False)
    assert exc.kind == "server" and "not JSON" in exc.message


async def test_unreadable_json_reply_is_server_error(build, fake: FakeProvider) -> None:
    backend = await one(build, fake, "anthropic")
    fake.enqueue(error(200, {"type": "message", "content": "not a list of blocks"}))
    exc = await attempt(backend, False)
    assert exc.kind == "server" and exc.retryable


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_first_byte_limit_longer_than_idle(build, fake: FakeProvider, stream: bool) -> None:
    """A slow-to-start model (first_byte 1 s) with a short idle gap (0.3 s): waiting 0.6 s for the
    headers is within the first-byte limit and must not be cut by the idle limit."""
    backend = await one(build, fake, "openai", timeout={"connect": 1.0, "first_byte": 1.0, "idle": 0.3})
    fake.enqueue(delay(0.6))
    if stream:
        events = await collect(backend.stream(chat("late", stream=True)))
        assert "".join(getattr(e, "text", "") for e in events) == "late"
    else:
        assert (await backend.complete(chat("late"))).text() == "late"
    fake.enqueue(stream_chunks(["a", "b", "c"], gap=0.6))  # ...while the idle limit still holds between chunks
    with pytest.raises(BackendError) as info:
        await collect(backend.stream(chat(stream=True)))
    assert info.value.kind == "timeout"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("limits", [{"first_byte": 0.3, "idle": 2.0}, {"first_byte": 0.3, "idle": 0.3},
                                    {"first_byte": 0.4, "idle": 0.2}], ids=["fb<idle", "fb=idle", "fb>idle"])
async def test_first_byte_limit_applies_whatever_idle_is(build, fake: FakeProvider, stream: bool,
                                                         limits: dict[str, float]) -> None:
    backend = await one(build, fake, "anthropic", timeout={"connect": 1.0, **limits})
    fake.enqueue(delay(3))
    loop = asyncio.get_running_loop()
    started = loop.time()
    exc = await attempt(backend, stream)
    elapsed = loop.time() - started
    assert exc.kind == "timeout"
    assert limits["first_byte"] - 0.05 <= elapsed < limits["first_byte"] + 0.5


# --- provider text is redacted at the boundary, on every path -------------------------------------

FAMILY_KEYS = {"openai": "sk-fake-openai", "anthropic": "sk-ant-fake", "gemini": "fake-gemini-key"}


def fragments(secret: str, size: int = 6) -> list[str]:
    """Every run of ``size`` characters of ``secret``: none may reach a message."""
    return [secret[i:i + size] for i in range(len(secret) - size + 1)]


def assert_clean(text: str, *secrets: str) -> None:
    for secret in secrets:
        for part in fragments(secret):
            assert part not in text, f"{part!r} of {secret!r} in {text!r}"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("kind", FAMILY_KINDS)
async def test_non_json_error_body_is_redacted(build, fake: FakeProvider, kind: str, stream: bool) -> None:
    """A plain-text error page that echoes our key across the clip point, and a foreign
    credential field: neither reaches the message (the clip came before the redaction)."""
    backend = await one(build, fake, kind)
    key = FAMILY_KEYS[kind]
    cut = 500 - len(key) // 2  # the key straddles the 500th character
    fake.enqueue(error(500, "x" * (cut - 1) + " " + key + " and more"))
    exc = await attempt(backend, stream)
    assert exc.kind == "server" and exc.message.startswith("500 xxx")
    assert_clean(exc.message, key)
    fake.enqueue(error(502, "<pre>upstream said x-api-key: foreign-credential-1234 is invalid</pre>",
                       content_type="text/html"))
    exc = await attempt(backend, stream)
    assert "x-api-key: [redacted]" in exc.message
    assert_clean(exc.message, "foreign-credential-1234")


@pytest.mark.parametrize("kind", FAMILY_KINDS)
async def test_non_json_success_body_is_redacted(build, fake: FakeProvider, kind: str) -> None:
    backend = await one(build, fake, kind)
    key = FAMILY_KEYS[kind]
    fake.enqueue(error(200, f"<html>welcome {key}, your Authorization: Bearer abcdefghijkl</html>",
                       content_type="text/html"))
    exc = await attempt(backend, False)
    assert exc.kind == "server" and "not JSON" in exc.message
    assert_clean(exc.message, key, "abcdefghijkl")


@pytest.mark.parametrize("kind", FAMILY_KINDS)
async def test_non_json_stream_frame_is_redacted(build, fake: FakeProvider, kind: str) -> None:
    backend = await one(build, fake, kind)
    key = FAMILY_KEYS[kind]
    fake.enqueue(error(200, f"data: proxy error for key {key}\n\n", content_type="text/event-stream"))
    exc = await attempt(backend, True)
    assert exc.kind == "server" and "not JSON" in exc.message
    assert_clean(exc.message, key)


@pytest.mark.parametrize("kind", FAMILY_KINDS)
async def test_stream_error_event_is_redacted(build, fake: FakeProvider, kind: str) -> None:
    """A provider's in-stream error event becomes the client's error event and the usage row's
    error: its message is provider text like any other."""
    backend = await one(build, fake, kind)
    key = FAMILY_KEYS[kind]
    fake.enqueue(stream_error(after_chunks=1, message=f"quota of {key} exceeded; x-api-key: foreign-credential-1234"))
    events = await collect(backend.stream(chat(stream=True)))
    [failure] = [e for e in events if isinstance(e, StreamError)]
    assert "quota of" in failure.message
    assert_clean(failure.message, key, "foreign-credential-1234")


async def test_connector_refuses_url_credentials(tmp_path, fake: FakeProvider) -> None:
    """config.yaml cannot give a URL with credentials (refused at load, see test_config); settings
    made in code are refused when the connector is built, not by aiohttp's ValueError (a 500) on
    the first request, and the refusal does not repeat them."""
    import dataclasses

    from backends.factory import BUILDERS
    from router.config import connector_settings

    app = make_config(tmp_path, b=backend_settings("openai", fake))
    for kind in ("openai", "openai-compatible", "anthropic", "gemini"):
        settings = dataclasses.replace(connector_settings(app)["b"], type=kind,
                                       base_url="http://alice:pw-in-url-0123@127.0.0.1:9/v1")
        with pytest.raises(ValueError) as info:
            BUILDERS[kind](settings)
        assert "credentials in base_url" in str(info.value) and "127.0.0.1:9" in str(info.value)
        assert_clean(str(info.value), "alice:pw-in-url-0123")


async def test_connection_error_names_the_url(build, fake: FakeProvider) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backend = await one(build, fake, "openai", base_url=f"http://127.0.0.1:{port}/v1")
    exc = await attempt(backend, False)
    assert exc.kind == "connection" and f"http://127.0.0.1:{port}/v1" in exc.message


async def test_an_endless_error_body_is_read_only_up_to_its_cap(build) -> None:
    """A 500 whose body never ends (here: 256 MiB sent as fast as the socket takes it) is answered
    from its first ``ERROR_BODY_BYTES`` and the connection is dropped; before, the whole body was
    read into memory (a 250 MB error body took the proxy's RSS past 1 GB)."""
    from aiohttp import web

    from backends.http import ERROR_BODY_BYTES

    sent = 0
    gone = asyncio.Event()

    async def endless(request: web.Request) -> web.StreamResponse:
        nonlocal sent
        response = web.StreamResponse(status=500, headers={"content-type": "text/plain"})
        await response.prepare(request)
        try:
            for _ in range(4096):
                await response.write(b"provider trouble " + b"e" * 65519)
                sent += 65536
        except (ConnectionError, RuntimeError):
            pass
        gone.set()
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", endless)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        backend = (await build(b={"type": "openai", "base_url": f"http://127.0.0.1:{port}/v1", "api_key": OPENAI_KEY}))["b"]
        with pytest.raises(BackendError) as info:
            await backend.complete(chat())
        assert info.value.kind == "server" and "provider trouble" in info.value.message
        await asyncio.wait_for(gone.wait(), 10)  # the upstream saw the connection go
        assert sent < 64 * ERROR_BODY_BYTES, sent  # socket buffers hold some; nowhere near 256 MiB
    finally:
        await runner.cleanup()
