"""A battery of malformed requests to every endpoint: always a 4xx, always JSON in the front end's own
error shape, never a 500 and never a traceback.

Table-driven: ``CHAT_ENDPOINTS`` × ``BAD_BODIES`` (the generic ones) plus format-specific tables.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy_support import error_message

# (path, front end whose error shape answers). Every POST route of router/app.py.
CHAT_ENDPOINTS = [
    ("/v1/chat/completions", "openai"),
    ("/v2/chat/completions", "openai"),
    ("/v1/messages", "anthropic"),
    ("/v2/messages", "anthropic"),
    ("/v1/messages/count_tokens", "anthropic"),
    ("/v2/messages/count_tokens", "anthropic"),
    ("/v2/models/gpt-4:generateContent", "gemini"),
    ("/v2/models/gpt-4:streamGenerateContent", "gemini"),
    ("/v2/models/gpt-4:countTokens", "gemini"),
    ("/v1beta/models/gpt-4:generateContent", "gemini"),
    ("/v1beta/models/gpt-4:streamGenerateContent", "gemini"),
    ("/v1beta/models/gpt-4:countTokens", "gemini"),
    ("/v1/models/gpt-4:generateContent", "gemini"),
    ("/v1/responses", "responses"),
    ("/v2/responses", "responses"),
]

# Raw bodies that are wrong whatever the format.
BAD_BODIES: list[tuple[str, bytes]] = [
    ("empty", b""),
    ("whitespace", b"  \n "),
    ("invalid-json", b"{bad"),
    ("truncated", b'{"model": "gpt-4", "messages": ['),
    ("not-utf8", b"\xff\xfe\x00{"),
    ("array", b"[]"),
    ("array-of-object", b'[{"model": "gpt-4"}]'),
    ("number", b"42"),
    ("string", b'"hello"'),
    ("null", b"null"),
    ("true", b"true"),
    ("empty-object", b"{}"),
    ("nan", b'{"model": "gpt-4", "temperature": NaN, "messages": [{"role": "user", "content": "hi"}]}'),
    ("infinity", b'{"model": "gpt-4", "temperature": 1e999, "messages": [{"role": "user", "content": "hi"}]}'),
    ("deep-array", b"[" * 100_000),
    ("deep-object", b'{"a":' * 50_000),
    ("trailing-garbage", b'{"model": "gpt-4"} xyz'),
]

HI = [{"role": "user", "content": "hi"}]
OPENAI_BODIES: list[tuple[str, Any]] = [
    ("missing-model", {"messages": HI}),
    ("missing-messages", {"model": "gpt-4"}),
    ("model-number", {"model": 5, "messages": HI}),
    ("model-empty", {"model": "", "messages": HI}),
    ("backend-prefix-no-model", {"model": "echo:", "messages": HI}),
    ("messages-string", {"model": "gpt-4", "messages": "hi"}),
    ("messages-object", {"model": "gpt-4", "messages": {"role": "user"}}),
    ("messages-empty", {"model": "gpt-4", "messages": []}),
    ("message-number", {"model": "gpt-4", "messages": [1]}),
    ("unknown-role", {"model": "gpt-4", "messages": [{"role": "wizard", "content": "hi"}]}),
    ("role-missing", {"model": "gpt-4", "messages": [{"content": "hi"}]}),
    ("content-number", {"model": "gpt-4", "messages": [{"role": "user", "content": 5}]}),
    ("content-part-unknown", {"model": "gpt-4", "messages": [{"role": "user", "content": [{"type": "video"}]}]}),
    ("content-part-string", {"model": "gpt-4", "messages": [{"role": "user", "content": ["hi"]}]}),
    ("image-url-missing", {"model": "gpt-4", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
    ("stream-string", {"model": "gpt-4", "messages": HI, "stream": "yes"}),
    ("temperature-string", {"model": "gpt-4", "messages": HI, "temperature": "hot"}),
    ("max-tokens-negative", {"model": "gpt-4", "messages": HI, "max_tokens": -5}),
    ("max-tokens-float", {"model": "gpt-4", "messages": HI, "max_tokens": 1.5}),
    ("stop-number", {"model": "gpt-4", "messages": HI, "stop": 5}),
    ("tools-string", {"model": "gpt-4", "messages": HI, "tools": "all"}),
    ("tool-without-function", {"model": "gpt-4", "messages": HI, "tools": [{"type": "function"}]}),
    ("tool-choice-number", {"model": "gpt-4", "messages": HI, "tool_choice": 5}),
    ("tool-call-bad", {"model": "gpt-4", "messages": [*HI, {"role": "assistant", "tool_calls": [{"id": 1}]}]}),
    ("tool-message-no-id", {"model": "gpt-4", "messages": [*HI, {"role": "tool", "content": "x"}]}),
]
ANTHROPIC_BODIES: list[tuple[str, Any]] = [
    ("missing-model", {"max_tokens": 10, "messages": HI}),
    ("missing-messages", {"model": "gpt-4", "max_tokens": 10}),
    ("messages-string", {"model": "gpt-4", "max_tokens": 10, "messages": "hi"}),
    ("messages-empty", {"model": "gpt-4", "max_tokens": 10, "messages": []}),
    ("unknown-role", {"model": "gpt-4", "max_tokens": 10, "messages": [{"role": "system", "content": "hi"}]}),
    ("content-number", {"model": "gpt-4", "max_tokens": 10, "messages": [{"role": "user", "content": 5}]}),
    ("block-unknown", {"model": "gpt-4", "max_tokens": 10, "messages": [{"role": "user", "content": [{"type": "x"}]}]}),
    ("block-text-missing", {"model": "gpt-4", "max_tokens": 10,
                            "messages": [{"role": "user", "content": [{"type": "text"}]}]}),
    ("image-bad-source", {"model": "gpt-4", "max_tokens": 10, "messages": [
        {"role": "user", "content": [{"type": "image", "source": {"type": "base64", "data": 5}}]}]}),
    ("system-number", {"model": "gpt-4", "max_tokens": 10, "messages": HI, "system": 5}),
    ("max-tokens-string", {"model": "gpt-4", "max_tokens": "ten", "messages": HI}),
    ("tools-object", {"model": "gpt-4", "max_tokens": 10, "messages": HI, "tools": {"name": "x"}}),
    ("tool-no-name", {"model": "gpt-4", "max_tokens": 10, "messages": HI, "tools": [{"input_schema": {}}]}),
    ("tool-choice-bad", {"model": "gpt-4", "max_tokens": 10, "messages": HI, "tool_choice": {"type": "maybe"}}),
    ("tool-result-no-id", {"model": "gpt-4", "max_tokens": 10, "messages": [
        {"role": "user", "content": [{"type": "tool_result", "content": "x"}]}]}),
    ("thinking-string", {"model": "gpt-4", "max_tokens": 10, "messages": HI, "thinking": "deep"}),
    ("stream-number", {"model": "gpt-4", "max_tokens": 10, "messages": HI, "stream": 1}),
]
RESPONSES_BODIES: list[tuple[str, Any]] = [
    ("missing-model", {"input": "hi"}),
    ("missing-input", {"model": "gpt-4"}),
    ("input-number", {"model": "gpt-4", "input": 5}),
    ("input-empty", {"model": "gpt-4", "input": []}),
    ("item-number", {"model": "gpt-4", "input": [1]}),
    ("item-unknown", {"model": "gpt-4", "input": [{"type": "hologram"}]}),
    ("role-unknown", {"model": "gpt-4", "input": [{"role": "wizard", "content": "hi"}]}),
    ("content-number", {"model": "gpt-4", "input": [{"role": "user", "content": 5}]}),
    ("content-part-unknown", {"model": "gpt-4", "input": [{"role": "user", "content": [{"type": "video"}]}]}),
    ("input-file-empty", {"model": "gpt-4", "input": [{"role": "user", "content": [{"type": "input_file", "filename": "a.pdf"}]}]}),
    ("call-no-id", {"model": "gpt-4", "input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}),
    ("output-no-output", {"model": "gpt-4", "input": [{"type": "function_call_output", "call_id": "c"}]}),
    ("custom-call-no-name", {"model": "gpt-4", "input": [{"type": "custom_tool_call", "call_id": "c", "input": "x"}]}),
    ("tools-string", {"model": "gpt-4", "input": "hi", "tools": "all"}),
    ("tool-no-type", {"model": "gpt-4", "input": "hi", "tools": [{"name": "f"}]}),
    ("function-no-name", {"model": "gpt-4", "input": "hi", "tools": [{"type": "function"}]}),
    ("grammar-no-definition", {"model": "gpt-4", "input": "hi", "tools": [
        {"type": "custom", "name": "p", "format": {"type": "grammar", "syntax": "lark"}}]}),
    ("tool-choice-number", {"model": "gpt-4", "input": "hi", "tool_choice": 5}),
    ("reasoning-string", {"model": "gpt-4", "input": "hi", "reasoning": "deep"}),
    ("effort-unknown", {"model": "gpt-4", "input": "hi", "reasoning": {"effort": "ludicrous"}}),
    ("max-output-zero", {"model": "gpt-4", "input": "hi", "max_output_tokens": 0}),
    ("stream-string", {"model": "gpt-4", "input": "hi", "stream": "yes"}),
    ("store-string", {"model": "gpt-4", "input": "hi", "store": "no"}),
    ("previous-number", {"model": "gpt-4", "input": "hi", "previous_response_id": 5}),
    ("previous-unknown", {"model": "gpt-4", "input": "hi", "previous_response_id": "resp_nope"}),
    ("previous-path-like", {"model": "gpt-4", "input": "hi", "previous_response_id": "../../etc/passwd"}),
    ("previous-and-bad-input", {"model": "gpt-4", "input": 5, "previous_response_id": "resp_nope"}),
    ("backend-prefix-no-model", {"model": "echo:", "input": "hi"}),
]
GEMINI_BODIES: list[tuple[str, Any]] = [
    ("missing-contents", {"generationConfig": {}}),
    ("contents-string", {"contents": "hi"}),
    ("contents-empty", {"contents": []}),
    ("content-number", {"contents": [5]}),
    ("unknown-role", {"contents": [{"role": "wizard", "parts": [{"text": "hi"}]}]}),
    ("parts-string", {"contents": [{"role": "user", "parts": "hi"}]}),
    ("part-empty", {"contents": [{"role": "user", "parts": [{}]}]}),
    ("text-number", {"contents": [{"role": "user", "parts": [{"text": 5}]}]}),
    ("generation-config-string", {"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": "hot"}),
    ("temperature-string", {"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": {"temperature": "hot"}}),
    ("system-instruction-number", {"contents": [{"parts": [{"text": "hi"}]}], "systemInstruction": 5}),
    ("tools-number", {"contents": [{"parts": [{"text": "hi"}]}], "tools": 5}),
    ("function-call-no-name", {"contents": [{"role": "model", "parts": [{"functionCall": {"args": {}}}]}]}),
    ("function-response-bad", {"contents": [{"role": "user", "parts": [{"functionResponse": {"name": 5}}]}]}),
]


def _check(result: Any, frontend: str, *, status: int | None = None) -> str:
    assert 400 <= result.status_code < 500, (result.status_code, result.text[:500])
    if status is not None:
        assert result.status_code == status, result.text
    assert result.headers["content-type"].startswith("application/json"), result.headers
    assert "Traceback" not in result.text and 'File "' not in result.text
    return error_message(frontend, json.loads(result.text))


@pytest.fixture
def no_tracebacks(caplog: pytest.LogCaptureFixture):
    """Nothing may reach the 'unhandled error' path (which logs a traceback for operators)."""
    caplog.set_level(logging.DEBUG)
    yield
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records if r.exc_info]


@pytest.mark.parametrize("path,frontend", CHAT_ENDPOINTS, ids=[p for p, _ in CHAT_ENDPOINTS])
@pytest.mark.parametrize("name,raw", BAD_BODIES, ids=[n for n, _ in BAD_BODIES])
def test_generic_bad_bodies(client, no_tracebacks, path, frontend, name, raw):
    result = client.simulate_post(path, body=raw, headers={"content-type": "application/json"})
    message = _check(result, frontend, status=400)
    assert "internal" not in message


def _table(frontend: str, rows: list[tuple[str, Any]]) -> list[Any]:
    paths = [p for p, f in CHAT_ENDPOINTS if f == frontend]
    return [pytest.param(path, body, id=f"{path}-{name}") for path in paths for name, body in rows]


@pytest.mark.parametrize("path,body", _table("openai", OPENAI_BODIES) + _table("anthropic", ANTHROPIC_BODIES)
                         + _table("gemini", GEMINI_BODIES) + _table("responses", RESPONSES_BODIES))
def test_format_specific_bad_bodies(client, no_tracebacks, path, body):
    frontend = next(f for p, f in CHAT_ENDPOINTS if p == path)
    result = client.simulate_post(path, json=body)
    message = _check(result, frontend, status=400)
    assert len(message) > 10


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("frontend,path,body", [
    ("openai", "/v2/chat/completions", {"model": "gpt-4", "messages": [{"role": "user", "content": "!/hello"}]}),
    ("anthropic", "/v2/messages", {"model": "gpt-4", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}),
    ("responses", "/v2/responses", {"model": "gpt-4", "input": "hi"}),
])
def test_bad_session_id(client, frontend, path, body, stream):
    result = client.simulate_post(path, json={**body, "stream": stream}, headers={"x-session-id": "../../etc/passwd"})
    assert "x-session-id" in _check(result, frontend, status=400)
    result = client.simulate_post(path, json=body, headers={"x-session-id": "x" * 129})
    _check(result, frontend, status=400)


def test_bad_session_id_gemini(client):
    result = client.simulate_post("/v2/models/gpt-4:generateContent", json={"contents": [{"parts": [{"text": "hi"}]}]},
                                  headers={"x-session-id": "a b"})
    assert "x-session-id" in _check(result, "gemini", status=400)


@pytest.mark.parametrize("path,frontend", [
    ("/v2/models/gpt-4:bogusAction", "gemini"),
    ("/v1beta/models/gpt-4:bogusAction", "gemini"),
    ("/v1beta/models/gpt-4", "gemini"),
    ("/v1beta/models/:generateContent", "gemini"),
    ("/v1beta/models/gpt-4:", "gemini"),
])
def test_gemini_bad_action(client, path, frontend):
    result = client.simulate_post(path, json={"contents": [{"parts": [{"text": "hi"}]}]})
    assert result.status_code in (400, 404)
    _check(result, frontend)


@pytest.mark.parametrize("method,path,frontend,status", [
    ("GET", "/nope", "openai", 404),
    ("POST", "/v2/nope", "openai", 404),
    ("GET", "/v2/chat", "openai", 404),
    ("GET", "/v3/chat/completions", "openai", 404),
    ("GET", "/v2/messages/nope", "anthropic", 404),
    ("GET", "/v1beta/nope", "gemini", 404),
    ("GET", "/v1beta/models/no-such-model", "gemini", 404),
    ("GET", "/v2/models/no-such-model", "openai", 404),
    ("GET", "/v1/models/no-such-model", "openai", 404),
    ("GET", "/v2/chat/completions", "openai", 405),
    ("PUT", "/v1/chat/completions", "openai", 405),
    ("DELETE", "/v2/chat/completions", "openai", 405),
    ("GET", "/v1/messages", "anthropic", 405),
    ("PATCH", "/v2/messages", "anthropic", 405),
    ("GET", "/v2/messages/count_tokens", "anthropic", 405),
    ("POST", "/v2/models", "openai", 405),
    ("POST", "/v1/models", "openai", 405),
    ("POST", "/v2/models/list", "gemini", 405),
    ("POST", "/v1beta/models", "gemini", 405),
    ("DELETE", "/v1beta/models/gpt-4:generateContent", "gemini", 405),
    ("POST", "/health", "openai", 405),
    ("GET", "/v2/responses", "responses", 405),
    ("DELETE", "/v2/responses", "responses", 405),
    ("GET", "/v2/responses/resp_unknown", "responses", 404),
    ("GET", "/v1/responses/resp_unknown", "responses", 404),
    ("DELETE", "/", "openai", 405),
])
def test_unknown_paths_and_methods(client, no_tracebacks, method, path, frontend, status):
    result = client.simulate_request(method, path)
    message = _check(result, frontend, status=status)
    last = path.rsplit("/", 1)[-1]
    # the message names what was not found, or the method and path refused
    expected = (f"method {method} is not allowed on {path}" if status == 405
                else f"unknown model '{last}'; GET /v2/models lists them" if "/models/" in path
                else f"No response with id '{last}' found." if "/responses/" in path
                else f"no such endpoint: {method} {path}")
    assert message == expected
    if status == 405:
        assert result.headers.get("allow"), result.headers


@pytest.mark.parametrize("path,frontend,body", [
    ("/v2/chat/completions", "openai", {"model": "gpt-4", "messages": [{"role": "user", "content": "x" * 5000}]}),
    ("/v1/messages", "anthropic", {"model": "gpt-4", "max_tokens": 5, "messages": [{"role": "user", "content": "x" * 5000}]}),
    ("/v2/messages/count_tokens", "anthropic", {"model": "gpt-4", "messages": [{"role": "user", "content": "x" * 5000}]}),
    ("/v1beta/models/gpt-4:generateContent", "gemini", {"contents": [{"parts": [{"text": "x" * 5000}]}]}),
    ("/v2/models/gpt-4:countTokens", "gemini", {"contents": [{"parts": [{"text": "x" * 5000}]}]}),
    ("/v2/responses", "responses", {"model": "gpt-4", "input": "x" * 5000}),
])
def test_oversized_body_is_413(make_client, path, frontend, body):
    client = make_client(disable_auth=True, max_body_bytes=1024)
    result = client.simulate_post(path, json=body)
    assert "1024" in _check(result, frontend, status=413)
    small = json.loads(json.dumps(body).replace("x" * 5000, "hi"))
    assert client.simulate_post(path, json=small).status_code == 200


async def test_oversized_body_without_content_length_is_413(make_app):
    """A chunked upload has no Content-Length: the cap must apply while reading, not after."""
    app = make_app(disable_auth=True, max_body_bytes=1024)
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v2/chat/completions", "raw_path": b"/v2/chat/completions", "query_string": b"",
             "root_path": "", "headers": [(b"content-type", b"application/json"), (b"host", b"127.0.0.1")],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    chunks = [{"type": "http.request", "body": b"x" * 500, "more_body": True} for _ in range(10)]
    chunks.append({"type": "http.request", "body": b"", "more_body": False})
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return chunks.pop(0) if chunks else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    assert sent[0]["status"] == 413
    body = json.loads(b"".join(m.get("body", b"") for m in sent[1:]))
    assert "1024" in error_message("openai", body)


@pytest.mark.parametrize("query", ["key=a&key=b", "key=a&key=a", "key=", "key=%ZZ", "alt=sse&alt=json",
                                   "alt=", "alt=%00", "key[]=x", "&&&", "=x"])
@pytest.mark.parametrize("method,path,frontend", [
    ("GET", "/v1beta/models", "gemini"),
    ("POST", "/v1beta/models/gpt-4:streamGenerateContent", "gemini"),
    ("POST", "/v2/chat/completions", "openai"),
    ("POST", "/v1/messages", "anthropic"),
])
def test_odd_query_strings(make_client, no_tracebacks, query, method, path, frontend):
    client = make_client(auth={"api_keys": ["a"]})
    body = None if method == "GET" else {
        "openai": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        "anthropic": {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
        "gemini": {"contents": [{"parts": [{"text": "hi"}]}]},
    }[frontend]
    result = client.simulate_request(method, path, query_string=query, json=body)
    assert result.status_code in (200, 401), result.text
    if result.status_code == 401:
        _check(result, frontend, status=401)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10**6) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["model", "messages", "role", "content", "type", "text", "parts", "contents", "tools",
                         "stream", "max_tokens", "system", "tool_calls", "function", "name", "input", "id",
                         "generationConfig", "functionCall", "args", "tool_choice", "image_url", "source"]),
        inner, max_size=5),
    max_leaves=25,
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path_index=st.integers(0, len(CHAT_ENDPOINTS) - 1), body=JSON_VALUES)
def test_fuzzed_bodies_never_500(client, path_index, body):
    path, frontend = CHAT_ENDPOINTS[path_index]
    result = client.simulate_post(path, json=body)
    assert result.status_code < 500, (path, body, result.text)
    assert "Traceback" not in result.text
    if result.status_code >= 400:
        error_message(frontend, json.loads(result.text))
