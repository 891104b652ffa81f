"""Each HTTP connector against the local fake provider: replies decoded into canonical objects
(text, tool calls with ids, usage), streams, provider-specific auth headers and URLs, model
listing with its cache, and the health check.
"""

from __future__ import annotations

import pytest

from fakes.provider import FakeProvider, reply
from router.wire.canonical import StreamEnd, StreamStart, TextDelta, ToolCallPart, ToolCallStart

from .conftest import ANTHROPIC_KEY, GEMINI_KEY, OPENAI_KEY, backend_settings, chat, collect, fold

KINDS = ["openai", "openrouter", "openai-compatible", "anthropic", "gemini"]

# (kind) -> (generation path, non-stream) / (stream path, query) / credential the fake recorded
PATHS = {
    "openai": ("/v1/chat/completions", "/v1/chat/completions", {}),
    "openrouter": ("/v1/chat/completions", "/v1/chat/completions", {}),
    "openai-compatible": ("/v1/chat/completions", "/v1/chat/completions", {}),
    "anthropic": ("/v1/messages", "/v1/messages", {}),
    "gemini": ("/v1beta/models/fake-model:generateContent", "/v1beta/models/fake-model:streamGenerateContent",
               {"alt": "sse"}),
}
KEYS = {"openai": OPENAI_KEY, "openrouter": OPENAI_KEY, "openai-compatible": None, "anthropic": ANTHROPIC_KEY,
        "gemini": GEMINI_KEY}


async def one(build, fake: FakeProvider, kind: str, **extra):
    backends = await build(b=backend_settings(kind, fake, **extra))
    return backends["b"]


@pytest.mark.parametrize("kind", KINDS)
async def test_complete_text_and_usage(build, fake: FakeProvider, kind: str) -> None:
    backend = await one(build, fake, kind)
    fake.enqueue(reply("Hello from the fake", usage={"prompt_tokens": 11, "completion_tokens": 7}))
    response = await backend.complete(chat("hi"))
    assert response.text() == "Hello from the fake"
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (11, 7)
    assert response.finish_reason == "stop"
    assert response.model == "fake-model"
    rec = fake.last
    assert rec.path == PATHS[kind][0] and rec.status == 200
    assert rec.api_key == KEYS[kind]
    assert not rec.stream


@pytest.mark.parametrize("kind", KINDS)
async def test_complete_tool_calls_keep_ids(build, fake: FakeProvider, kind: str) -> None:
    backend = await one(build, fake, kind)
    fake.enqueue(reply(tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "call_abc"},
                                   {"name": "get_weather", "arguments": {"city": "Rome"}, "id": "call_def"}]))
    response = await backend.complete(chat("weather?", tools=True))
    calls = response.tool_calls()
    assert [c.name for c in calls] == ["get_weather", "get_weather"]
    assert [c.parsed_arguments() for c in calls] == [{"city": "Paris"}, {"city": "Rome"}]
    assert response.finish_reason == "tool_calls"
    if kind == "gemini":  # the Gemini API sends no call ids: the decoder must invent distinct ones
        assert all(c.id for c in calls) and calls[0].id != calls[1].id
    else:
        assert [c.id for c in calls] == ["call_abc", "call_def"]


@pytest.mark.parametrize("kind", KINDS)
async def test_stream_text_tools_usage(build, fake: FakeProvider, kind: str) -> None:
    backend = await one(build, fake, kind)
    fake.enqueue(reply("streamed text", tool_calls=[{"name": "get_weather", "arguments": {"city": "Oslo"},
                                                     "id": "call_s1"}],
                       usage={"prompt_tokens": 5, "completion_tokens": 9}))
    events = await collect(backend.stream(chat("hi", stream=True, tools=True)))
    assert isinstance(events[0], StreamStart) and isinstance(events[-1], StreamEnd)
    assert any(isinstance(e, TextDelta) for e in events)
    starts = [e for e in events if isinstance(e, ToolCallStart)]
    assert len(starts) == 1 and starts[0].name == "get_weather"
    result = fold(events)
    assert result.text() == "streamed text"
    (call,) = [p for p in result.parts if isinstance(p, ToolCallPart)]
    assert call.parsed_arguments() == {"city": "Oslo"}
    if kind != "gemini":
        assert call.id == "call_s1"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (5, 9)
    rec = await fake.last.wait()
    assert rec.path == PATHS[kind][1] and rec.stream and rec.completed and not rec.disconnected
    for name, value in PATHS[kind][2].items():
        assert rec.query.get(name) == value
    assert rec.api_key == KEYS[kind]


async def test_openai_stream_asks_for_usage(build, fake: FakeProvider) -> None:
    backend = await one(build, fake, "openai")
    await collect(backend.stream(chat("x", stream=True)))
    assert fake.last.body["stream"] is True and fake.last.body["stream_options"] == {"include_usage": True}


async def test_openrouter_attribution_headers(build, fake: FakeProvider) -> None:
    backend = await one(build, fake, "openrouter")
    await backend.complete(chat())
    assert fake.last.headers["HTTP-Referer"] == "https://github.com/llm-interactive-proxy"
    assert fake.last.headers["X-Title"] == "llm-interactive-proxy"
    assert fake.last.headers["Authorization"] == f"Bearer {OPENAI_KEY}"
    custom = await one(build, fake, "openrouter", referer="https://me.example", title="My app",
                       headers={"X-Extra": "1"})
    await custom.complete(chat())
    assert fake.last.headers["HTTP-Referer"] == "https://me.example"
    assert fake.last.headers["X-Title"] == "My app"
    assert fake.last.headers["X-Extra"] == "1"


async def test_openai_compatible_sends_no_authorization(build, fake: FakeProvider) -> None:
    backend = await one(build, fake, "openai-compatible")
    response = await backend.complete(chat("local"))
    assert response.text() == "local"
    assert "Authorization" not in fake.last.headers


async def test_anthropic_headers(build, fake: FakeProvider) -> None:
    backend = await one(build, fake, "anthropic")
    await backend.complete(chat())
    assert fake.last.headers["x-api-key"] == ANTHROPIC_KEY
    assert fake.last.headers["anthropic-version"] == "2023-06-01"
    assert "Authorization" not in fake.last.headers


async def test_gemini_key_in_header_not_query(build, fake: FakeProvider) -> None:
    backend = await one(build, fake, "gemini")
    await collect(backend.stream(chat(stream=True)))
    assert fake.last.headers["x-goog-api-key"] == GEMINI_KEY
    assert "key" not in fake.last.query  # never in the URL (it would end up in logs)
    assert fake.last.query == {"alt": "sse"}


@pytest.mark.parametrize("kind,models_path", [("openai", "/v1/models"), ("openrouter", "/v1/models"),
                                              ("openai-compatible", "/v1/models"), ("anthropic", "/v1/models"),
                                              ("gemini", "/v1beta/models")])
async def test_list_models_and_cache(build, fake: FakeProvider, kind: str, models_path: str) -> None:
    backend = await one(build, fake, kind)
    assert await backend.list_models() == fake.models
    assert len(fake.calls(path=models_path)) == 1
    assert await backend.list_models() == fake.models
    assert len(fake.calls(path=models_path)) == 1  # served from the cache


async def test_list_models_cache_expires(build, fake: FakeProvider, monkeypatch: pytest.MonkeyPatch) -> None:
    import backends.http as http

    backend = await one(build, fake, "openai")
    await backend.list_models()
    monkeypatch.setattr(http, "MODELS_TTL", 0.0)
    fake.models = ["new-model"]
    assert await backend.list_models() == ["new-model"]
    assert len(fake.calls(path="/v1/models")) == 2


async def test_configured_models_do_not_call_provider(build, fake: FakeProvider) -> None:
    backend = await one(build, fake, "openai", models=["a", "b"])
    assert await backend.list_models() == ["a", "b"]
    assert fake.requests == []


@pytest.mark.parametrize("kind", KINDS)
async def test_health_ok(build, fake: FakeProvider, kind: str) -> None:
    backend = await one(build, fake, kind)
    health = await backend.health()
    assert health.ok and health.error is None and health.latency_ms >= 0


@pytest.mark.parametrize("kind", ["openai", "anthropic", "gemini"])
async def test_health_failing_auth(build, fake: FakeProvider, kind: str) -> None:
    backend = await one(build, fake, kind, api_key="sk-wrong-key-000000000")
    health = await backend.health()
    assert not health.ok
    assert health.error == "auth"  # Gemini's 400 API_KEY_INVALID included


async def test_health_unreachable(build, fake: FakeProvider) -> None:
    port = fake.port
    await fake.close()
    backend = (await build(b={"type": "openai", "base_url": f"http://127.0.0.1:{port}/v1", "api_key": "k" * 8}))["b"]
    health = await backend.health()
    assert not health.ok and health.error == "connection"


async def test_health_provider_error(build, fake: FakeProvider) -> None:
    backend = await one(build, fake, "openai")
    fake.keys["openai"] = set()  # every key refused
    health = await backend.health()
    assert not health.ok and health.error == "auth"


async def test_models_error_is_classified(build, fake: FakeProvider) -> None:
    from backends.base import BackendError

    backend = await one(build, fake, "anthropic", api_key="sk-ant-wrong-key-123456789")
    with pytest.raises(BackendError) as info:
        await backend.list_models()
    assert info.value.kind == "auth" and info.value.status == 401
    assert "sk-ant-wrong-key-123456789" not in info.value.message



# ---- a stream line that never ends ---------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_a_stream_line_over_max_line_bytes_ends_the_stream(build, fake: FakeProvider, kind: str) -> None:
    """The issue's repro: an upstream sending no line break grew the buffer without limit."""
    from backends.base import BackendError
    from fakes.provider import raw_stream

    backend = await one(build, fake, kind, max_line_bytes=65536)
    fake.enqueue(raw_stream(b"data: " + b"x" * 300_000, chunk_size=4096))
    events = []
    with pytest.raises(BackendError) as info:
        async for event in backend.stream(chat("hi", stream=True)):
            events.append(event)
    assert info.value.kind == "server" and "65536 bytes" in info.value.message
    assert "max_line_bytes" in info.value.message
    assert fold(events).text() == "partial "  # what came before the long line got through
    await fake.last.wait()
    assert fake.last.disconnected and not fake.last.completed  # the upstream was hung up on


async def test_the_line_limit_defaults_to_one_mebibyte_and_is_configurable(build, fake: FakeProvider) -> None:
    from backends.base import BackendError
    from fakes.provider import raw_stream
    from router.wire.sse import DEFAULT_MAX_LINE

    long_text = "y" * (DEFAULT_MAX_LINE + 1000)
    frame_bytes = b'data: {"choices":[{"index":0,"delta":{"content":"' + long_text.encode() + b'"}}]}\n\n'
    backend = await one(build, fake, "openai")
    fake.enqueue(raw_stream(frame_bytes))
    with pytest.raises(BackendError):
        await collect(backend.stream(chat("hi", stream=True)))
    roomy = (await build(b=backend_settings("openai", fake, max_line_bytes=4 * DEFAULT_MAX_LINE)))["b"]
    fake.enqueue(raw_stream(frame_bytes))
    events = await collect(roomy.stream(chat("hi", stream=True)))
    assert fold(events).text() == "partial " + long_text
