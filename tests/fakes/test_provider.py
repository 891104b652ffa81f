"""Self-tests for the fake provider, driven with plain aiohttp so they do not depend on the proxy.

Each family is checked for JSON and streaming replies, auth failures and error shapes; then the
behaviours that tests rely on (reset, delay, disconnect recording, loops), the OAuth token
endpoint and the Code Assist onboarding/generation flow.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest

from fakes.fixtures import fake_provider  # noqa: F401  (fixture)
from fakes.provider import (
    FakeProvider, delay, error, loop, reply, reset, reset_after_chunks, stream_chunks, stream_error,
    textual_tool_call,
)
from router.wire import anthropic as anthropic_wire
from router.wire import gemini as gemini_wire
from router.wire import openai as openai_wire
from router.wire import sse

OPENAI_KEY = "sk-fake-openai"
ANTHROPIC_KEY = "sk-ant-fake"
GEMINI_KEY = "fake-gemini-key"
CA_TOKEN = "ya29.fake-access-token"


def openai_body(text: str = "hello there", **extra: Any) -> dict[str, Any]:
    return {"model": "fake-model", "messages": [{"role": "user", "content": text}], **extra}


def anthropic_body(text: str = "hello there", **extra: Any) -> dict[str, Any]:
    return {"model": "fake-model", "max_tokens": 100, "messages": [{"role": "user", "content": text}], **extra}


def gemini_body(text: str = "hello there") -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}]}


OA_HEADERS = {"Authorization": f"Bearer {OPENAI_KEY}"}
AN_HEADERS = {"x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01"}
GE_HEADERS = {"x-goog-api-key": GEMINI_KEY}
CA_HEADERS = {"Authorization": f"Bearer {CA_TOKEN}"}


@pytest.fixture
async def http() -> Any:
    async with aiohttp.ClientSession() as session:
        yield session


async def post(http: aiohttp.ClientSession, url: str, body: Any, headers: dict[str, str]) -> tuple[int, Any, Any]:
    async with http.post(url, json=body, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None), resp.headers


async def post_sse(http: aiohttp.ClientSession, url: str, body: Any,
                   headers: dict[str, str]) -> list[tuple[str | None, str]]:
    async with http.post(url, json=body, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        return sse.parse_all(await resp.read())


def decode_stream(decoder: Any, frames: list[tuple[str | None, str]]) -> Any:
    """Fold SSE frames through a project StreamDecoder into a ChatResponse."""
    from router.wire.canonical import ResponseAccumulator
    acc = ResponseAccumulator()
    for _event, data in frames:
        if data == "[DONE]":
            break
        for ev in decoder.feed(json.loads(data)):
            acc.feed(ev)
    for ev in decoder.finish():
        acc.feed(ev)
    return acc.result()


# --- OpenAI -------------------------------------------------------------------------------------

async def test_openai_json_echo_and_recording(fake_provider: FakeProvider, http: aiohttp.ClientSession) -> None:
    fake = fake_provider
    headers = {**OA_HEADERS, "HTTP-Referer": "https://example.test", "X-Title": "proxy"}
    status, body, _ = await post(http, f"{fake.url}/v1/chat/completions", openai_body("ping"), headers)
    assert status == 200
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "ping", "refusal": None}
    assert body["usage"]["prompt_tokens"] > 0
    rec = fake.last
    assert (rec.family, rec.endpoint, rec.model, rec.stream, rec.behaviour) == ("openai", "generate", "fake-model", False, "reply")
    assert rec.headers["http-referer"] == "https://example.test"
    assert rec.api_key == OPENAI_KEY and rec.body["messages"][0]["content"] == "ping"
    assert rec.status == 200 and rec.completed


async def test_openai_stream_done_and_optional_usage(fake_provider: FakeProvider, http: aiohttp.ClientSession) -> None:
    url = f"{fake_provider.url}/v1/chat/completions"
    frames = await post_sse(http, url, openai_body("streamed", stream=True), OA_HEADERS)
    assert frames[-1] == (None, "[DONE]")
    assert all("usage" not in json.loads(d) for _, d in frames[:-1])  # not asked for
    assert decode_stream(openai_wire.StreamDecoder(), frames).text() == "streamed"
    frames = await post_sse(http, url, openai_body("x", stream=True, stream_options={"include_usage": True}), OA_HEADERS)
    assert json.loads(frames[-2][1])["usage"]["completion_tokens"] >= 1
    rec = await fake_provider.last.wait()
    assert rec.stream and rec.completed and rec.chunks_sent == 1 and not rec.disconnected


async def test_openai_auth_and_models(fake_provider: FakeProvider, http: aiohttp.ClientSession) -> None:
    url = f"{fake_provider.url}/v1/chat/completions"
    status, body, _ = await post(http, url, openai_body(), {"Authorization": "Bearer sk-wrong-key-123456"})
    assert status == 401
    assert body["error"]["code"] == "invalid_api_key" and body["error"]["type"] == "invalid_request_error"
    status, body, _ = await post(http, url, openai_body(), {})
    assert status == 401 and "didn't provide an API key" in body["error"]["message"]
    async with http.get(f"{fake_provider.url}/v1/models", headers=OA_HEADERS) as resp:
        models = await resp.json()
    assert models["object"] == "list" and [m["id"] for m in models["data"]] == fake_provider.models


async def test_openai_tool_calls_and_validation(fake_provider: FakeProvider, http: aiohttp.ClientSession) -> None:
    fake_provider.enqueue(reply(tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}]))
    status, body, _ = await post(http, f"{fake_provider.url}/v1/chat/completions", openai_body(), OA_HEADERS)
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    call = choice["message"]["tool_calls"][0]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'} and call["id"]
    status, body, _ = await post(http, f"{fake_provider.url}/v1/chat/completions", {"model": "m"}, OA_HEADERS)
    assert status == 400 and "messages" in body["error"]["message"]


# --- Anthropic ----------------------------------------------------------------------------------

async def test_anthropic_json_stream_and_headers(fake_provider: FakeProvider, http: aiohttp.ClientSession) -> None:
    url = f"{fake_provider.url}/v1/messages"
    status, body, _ = await post(http, url, anthropic_body("hi"), AN_HEADERS)
    assert status == 200 and body["type"] == "message"
    assert body["content"] == [{"type": "text", "text": "hi"}] and body["stop_reason"] == "end_turn"
    assert fake_provider.last.headers["anthropic-version"] == "2023-06-01"
    frames = await post_sse(http, url, anthropic_body("yo", stream=True), AN_HEADERS)
    events = [e for e, _ in frames]
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert "content_block_delta" in events and "message_delta" in events
    assert decode_stream(anthropic_wire.StreamDecoder(), frames).text() == "yo"


async def test_anthropic_auth_version_and_models(fake_provider: FakeProvider, http: aiohttp.ClientSession) -> None:
    url = f"{fake_provider.url}/v1/messages"
    status, body, _ = await post(http, url, anthropic_body(), {"x-api-key": ANTHROPIC_KEY})
    assert status == 400 and body["error"]["message"] == "anthropic-version: header is required"
    status, body, _ = await post(http, url, anthropic_body(), {**AN_HEADERS, "x-api-key": "bad"})
    assert status == 401 and body["type"] == "error" and body["error"]["type"] == "authentication_error"
    async with http.get(f"{fake_provider.url}/v1/models", headers=AN_HEADERS) as resp:
        models = await resp.json()
    assert models["data"][0]["type"] == "model" and models["has_more"] is False
    assert fake_provider.last.family == "anthropic"


async def test_anthropic_refuses_tool_blocks_without_tools_as_the_real_api_does(
        fake_provider: FakeProvider, http: aiohttp.ClientSession) -> None:
    url = f"{fake_provider.url}/v1/messages"
    history = [{"role": "user", "content": "ls"},
               {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "sh", "input": {}}]},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "a.txt"}]}]
    body = {"model": "claude-test", "max_tokens": 64, "messages": history}
    status, answer, _ = await post(http, url, body, AN_HEADERS)
    assert status == 400 and answer["error"]["type"] == "invalid_request_error"
    assert answer["error"]["message"] == "Requests which include `tool_use` or `tool_result` blocks must define tools."
    tools = [{"name": "sh", "input_schema": {"type": "object", "properties": {}}}]
    status, answer, _ = await post(http, url, {**body, "tools": tools}, AN_HEADERS)
    assert status == 200, answer


# --- Gemini -------------------------------------------------------------------------------------

async def test_gemini_json_sse_and_array_stream(fake_provider: FakeProvider, http: aiohttp.ClientSession) -> None:
    base = f"{fake_provider.url}/v1beta/models/fake-model"
    status, body, _ = await post(http, f"{base}:generateContent?key={GEMINI_KEY}", gemini_body("gem"), {})
    assert status == 200
    assert body["candidates"][0]["content"]["parts"] == [{"text": "gem"}]
    assert body["candidates"][0]["finishReason"] == "STOP" and body["usageMetadata"]["promptTokenCount"] > 0
    assert fake_provider.last.api_key == GEMINI_KEY and fake_provider.last.query["key"] == GEMINI_KEY
    frames = await post_sse(http, f"{base}:streamGenerateContent?alt=sse", gemini_body("s"), GE_HEADERS)
    assert decode_stream(gemini_wire.StreamDecoder(), frames).text() == "s"
    fake_provider.enqueue(stream_chunks(["a", "b"]))
    async with http.post(f"{base}:streamGenerateContent", json=gemini_body(), headers=GE_HEADERS) as resp:
        items = await resp.json()
    assert isinstance(items, list) and "".join(
        p.get("text", "") for i in items for p in i["candidates"][0].get("content", {}).get("parts", [])) == "ab"


async def test_gemini_auth_models_and_call_ids(fake_provider: FakeProvider, http: aiohttp.ClientSession) -> None:
    base = f"{fake_provider.url}/v1beta/models"
    status, body, _ = await post(http, f"{base}/fake-model:generateContent", gemini_body(), {"x-goog-api-key": "nope"})
    assert status == 400 and body["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    status, body, _ = await post(http, f"{base}/fake-model:generateContent", gemini_body(), {})
    assert status == 403 and body["error"]["status"] == "PERMISSION_DENIED"
    async with http.get(base, headers=GE_HEADERS) as resp:
        assert (await resp.json())["models"][0]["name"] == "models/fake-model"
    fake_provider.enqueue(reply(tool_calls=[{"name": "ls", "arguments": {}}]))
    _, body, _ = await post(http, f"{base}/fake-model:generateContent", gemini_body(), GE_HEADERS)
    assert body["candidates"][0]["content"]["parts"] == [{"functionCall": {"name": "ls", "args": {}}}]


# --- errors -------------------------------------------------------------------------------------

ERROR_CASES = [
    ("openai", 429, lambda b: b["error"]["code"] == "rate_limit_exceeded"),
    ("openai", 500, lambda b: b["error"]["type"] == "server_error"),
    ("openai", 404, lambda b: b["error"]["code"] == "model_not_found"),
    ("anthropic", 429, lambda b: b["error"]["type"] == "rate_limit_error"),
    ("anthropic", 503, lambda b: b["error"]["type"] == "overloaded_error"),
    ("anthropic", 529, lambda b: b["error"]["type"] == "overloaded_error"),
    ("anthropic", 400, lambda b: b["error"]["type"] == "invalid_request_error"),
    ("anthropic", 401, lambda b: b["error"]["type"] == "authentication_error"),
    ("gemini", 429, lambda b: b["error"]["status"] == "RESOURCE_EXHAUSTED"),
    ("gemini", 503, lambda b: b["error"]["status"] == "UNAVAILABLE"),
    ("gemini", 404, lambda b: b["error"]["status"] == "NOT_FOUND"),
]


def request_for(fake: FakeProvider, family: str, model: str = "fake-model") -> tuple[str, dict[str, Any], dict[str, str]]:
    if family == "openai":
        return f"{fake.url}/v1/chat/completions", {**openai_body(), "model": model}, OA_HEADERS
    if family == "anthropic":
        return f"{fake.url}/v1/messages", {**anthropic_body(), "model": model}, AN_HEADERS
    return f"{fake.url}/v1beta/models/{model}:generateContent", gemini_body(), GE_HEADERS


@pytest.mark.parametrize("family,status,check", ERROR_CASES)
async def test_error_shapes(fake_provider: FakeProvider, http: aiohttp.ClientSession, family: str, status: int,
                            check: Any) -> None:
    fake_provider.enqueue(error(status, retry_after=3 if status == 429 else None))
    code, body, headers = await post(http, *request_for(fake_provider, family))
    assert code == status and check(body)
    if status == 429 and family != "gemini":
        assert headers["Retry-After"] == "3"
    if status == 429 and family == "gemini":
        assert "Retry-After" not in headers
        assert {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "3s"} in body["error"]["details"]
    assert fake_provider.last.behaviour == "error" and fake_provider.pending == 0


async def test_custom_error_body_and_model_rules(fake_provider: FakeProvider, http: aiohttp.ClientSession) -> None:
    fake = fake_provider
    fake.enqueue(error(502, body="<html>bad gateway</html>", content_type="text/html"))
    async with http.post(*request_for(fake, "openai")[:1], json=openai_body(), headers=OA_HEADERS) as resp:
        assert resp.status == 502 and await resp.text() == "<html>bad gateway</html>"
    code, body, _ = await post(http, *request_for(fake, "anthropic", "fail-500"))
    assert code == 500 and body["error"]["type"] == "api_error"
    fake.on_model("flaky", error(503)).enqueue(reply("queued-for-other"), reply("only-m2"), model="m2")
    assert (await post(http, *request_for(fake, "openai", "flaky")))[0] == 503
    assert (await post(http, *request_for(fake, "openai", "flaky")))[0] == 503
    _, body, _ = await post(http, *request_for(fake, "openai", "m2"))
    assert body["choices"][0]["message"]["content"] == "queued-for-other"
    fake.on_model("flaky", None)
    assert (await post(http, *request_for(fake, "openai", "flaky")))[0] == 200


# --- behaviours ---------------------------------------------------------------------------------

async def test_textual_tool_call(fake_provider: FakeProvider, http: aiohttp.ClientSession) -> None:
    fake_provider.enqueue(textual_tool_call())
    _, body, _ = await post(http, *request_for(fake_provider, "openai"))
    message = body["choices"][0]["message"]
    assert "<tool_call>" in message["content"] and "tool_calls" not in message


async def test_reset_closes_without_response(fake_provider: FakeProvider, http: aiohttp.ClientSession) -> None:
    fake_provider.enqueue(reset())
    url, body, headers = request_for(fake_provider, "anthropic")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        async with http.post(url, json=body, headers=headers) as resp:
            await resp.read()
    rec = await fake_provider.last.wait()
    assert rec.reset and rec.status is None


async def test_reset_after_chunks(fake_provider: FakeProvider, http: aiohttp.ClientSession) -> None:
    fake_provider.enqueue(reset_after_chunks(2))
    url = f"{fake_provider.url}/v1/chat/completions"
    received = b""
    with pytest.raises(aiohttp.ClientPayloadError):
        async with http.post(url, json=openai_body(stream=True), headers=OA_HEADERS) as resp:
            assert resp.status == 200
            async for chunk in resp.content.iter_any():
                received += chunk
    texts = [json.loads(d)["choices"][0]["delta"].get("content") for _, d in sse.parse_all(received)]
    assert texts.count("chunk ") == 2 and b"[DONE]" not in received
    rec = await fake_provider.last.wait()
    assert rec.reset and rec.chunks_sent == 2 and not rec.completed


async def test_reset_after_chunks_non_stream(fake_provider: FakeProvider, http: aiohttp.ClientSession) -> None:
    fake_provider.enqueue(reset_after_chunks(1))
    with pytest.raises(aiohttp.ClientPayloadError):
        async with http.post(*request_for(fake_provider, "openai")[:1], json=openai_body(), headers=OA_HEADERS) as resp:
            await resp.read()


async def test_delay_then_reply_and_client_timeout(fake_provider: FakeProvider, http: aiohttp.ClientSession) -> None:
    fake_provider.enqueue(delay(0.15, reply("late")), delay(5))
    start = time.monotonic()
    _, body, _ = await post(http, *request_for(fake_provider, "openai"))
    assert body["choices"][0]["message"]["content"] == "late" and time.monotonic() - start >= 0.15
    url, payload, headers = request_for(fake_provider, "openai")
    with pytest.raises(asyncio.TimeoutError):
        async with http.post(url, json=payload, headers=headers, timeout=aiohttp.ClientTimeout(total=0.1)) as resp:
            await resp.read()
    rec = await fake_provider.last.wait(timeout=1)
    assert rec.disconnected and rec.behaviour == "delay"


async def test_stream_chunks_with_gap(fake_provider: FakeProvider, http: aiohttp.ClientSession) -> None:
    fake_provider.enqueue(stream_chunks(["one ", "two ", "three"], gap=0.05))
    url, _, headers = request_for(fake_provider, "anthropic")
    arrivals: list[float] = []
    start = time.monotonic()
    async with http.post(url, json=anthropic_body(stream=True), headers=headers) as resp:
        parser = sse.SSEParser()
        async for chunk in resp.content.iter_any():
            for event, _ in parser.feed(chunk):
                if event == "content_block_delta":
                    arrivals.append(time.monotonic() - start)
    assert len(arrivals) == 3 and arrivals[2] - arrivals[0] >= 0.09
    assert (await fake_provider.last.wait()).chunks_sent == 3


async def test_loop_stops_when_client_disconnects(fake_provider: FakeProvider, http: aiohttp.ClientSession) -> None:
    fake_provider.enqueue(loop("again and again ", times=500, gap=0.01))
    url = f"{fake_provider.url}/v1beta/models/fake-model:streamGenerateContent?alt=sse"
    seen = 0
    async with http.post(url, json=gemini_body(), headers=GE_HEADERS) as resp:
        parser = sse.SSEParser()
        async for chunk in resp.content.iter_any():
            seen += len(parser.feed(chunk))
            if seen >= 5:
                break  # leaving the block unread closes the connection
    rec = await fake_provider.last.wait()
    assert rec.behaviour == "loop" and rec.disconnected and not rec.completed
    assert 5 <= rec.chunks_sent < 500


async def test_stream_error_event(fake_provider: FakeProvider, http: aiohttp.ClientSession) -> None:
    fake_provider.enqueue(stream_error(after_chunks=1, message="Overloaded"))
    frames = await post_sse(http, f"{fake_provider.url}/v1/messages", anthropic_body(stream=True), AN_HEADERS)
    assert frames[-1][0] == "error"
    assert json.loads(frames[-1][1])["error"] == {"type": "overloaded_error", "message": "Overloaded"}


# --- OAuth and Code Assist ----------------------------------------------------------------------

async def test_token_endpoint(fake_provider: FakeProvider, http: aiohttp.ClientSession) -> None:
    form = {"grant_type": "refresh_token", "refresh_token": "1//refresh", "client_id": "cid", "client_secret": "cs"}
    async with http.post(fake_provider.token_url, data=form) as resp:
        token = await resp.json()
    assert resp.status == 200 and token["token_type"] == "Bearer" and token["expires_in"] == 3599 and token["scope"]
    assert fake_provider.oauth.refresh_calls == [form] and fake_provider.last.form == form
    assert token["access_token"] in fake_provider.keys["code_assist"]
    fake_provider.oauth.fail = True
    async with http.post(fake_provider.token_url, data=form) as resp:
        assert resp.status == 400 and (await resp.json())["error"] == "invalid_grant"


async def test_token_endpoint_with_google_auth(fake_provider: FakeProvider) -> None:
    """google-auth's own refresh parses the fake's reply (run in a thread: it is synchronous)."""
    from google.auth.transport.requests import Request
    from google.oauth2.credentials import Credentials

    creds = Credentials(token=None, refresh_token="1//r", token_uri=fake_provider.token_url,
                        client_id="cid", client_secret="secret")
    await asyncio.to_thread(creds.refresh, Request())
    assert creds.token in fake_provider.oauth.issued and creds.expiry is not None


async def test_code_assist_free_tier_onboarding_and_generation(fake_provider: FakeProvider,
                                                               http: aiohttp.ClientSession) -> None:
    base = f"{fake_provider.url}/v1internal"
    meta = {"ideType": "IDE_UNSPECIFIED", "platform": "PLATFORM_UNSPECIFIED", "pluginType": "GEMINI"}
    status, load, _ = await post(http, f"{base}:loadCodeAssist", {"metadata": meta}, CA_HEADERS)
    assert status == 200 and "currentTier" not in load
    default = next(t for t in load["allowedTiers"] if t.get("isDefault"))
    assert default["id"] == "free-tier" and default["userDefinedCloudaicompanionProject"] is False
    status, op, _ = await post(http, f"{base}:onboardUser", {"tierId": "free-tier", "metadata": meta}, CA_HEADERS)
    assert op["done"] is True
    project = op["response"]["cloudaicompanionProject"]["id"]
    _, load, _ = await post(http, f"{base}:loadCodeAssist", {"metadata": meta}, CA_HEADERS)
    assert load["currentTier"]["id"] == "free-tier" and load["cloudaicompanionProject"] == project
    request = {"model": "gemini-2.5-pro", "project": project, "user_prompt_id": "p1", "request": gemini_body("ca")}
    status, body, _ = await post(http, f"{base}:generateContent", request, CA_HEADERS)
    assert status == 200 and body["response"]["candidates"][0]["content"]["parts"] == [{"text": "ca"}]
    assert body["traceId"]
    frames = await post_sse(http, f"{base}:streamGenerateContent?alt=sse", request, CA_HEADERS)
    inner = [(e, json.dumps(json.loads(d)["response"])) for e, d in frames]
    assert decode_stream(gemini_wire.StreamDecoder(), inner).text() == "ca"
    rec = fake_provider.last
    assert (rec.family, rec.model, rec.body["user_prompt_id"], rec.api_key) == ("code_assist", "gemini-2.5-pro", "p1", CA_TOKEN)
    status, body, _ = await post(http, f"{base}:generateContent", {**request, "project": "someone-else"}, CA_HEADERS)
    assert status == 403 and body["error"]["status"] == "PERMISSION_DENIED"


async def test_code_assist_standard_tier_polling_forbidden_and_auth(fake_provider: FakeProvider,
                                                                    http: aiohttp.ClientSession) -> None:
    state = fake_provider.code_assist
    state.tier, state.pending_polls, state.forbidden_projects = "standard-tier", 2, {"locked"}
    base = f"{fake_provider.url}/v1internal"
    status, body, _ = await post(http, f"{base}:loadCodeAssist", {"cloudaicompanionProject": "locked", "metadata": {}},
                                 CA_HEADERS)
    assert status == 403 and body["error"]["status"] == "PERMISSION_DENIED"
    _, op, _ = await post(http, f"{base}:onboardUser", {"tierId": "standard-tier", "cloudaicompanionProject": "mine",
                                                        "metadata": {}}, CA_HEADERS)
    assert op["done"] is False
    polls = []
    for _ in range(2):
        async with http.get(f"{base}/{op['name']}", headers=CA_HEADERS) as resp:
            polls.append(await resp.json())
    assert [p["done"] for p in polls] == [False, True]
    assert polls[-1]["response"]["cloudaicompanionProject"]["id"] == "mine"
    status, body, _ = await post(http, f"{base}:onboardUser", {"tierId": "free-tier", "cloudaicompanionProject": "x",
                                                               "metadata": {}}, CA_HEADERS)
    assert status == 400 and body["error"]["status"] == "FAILED_PRECONDITION"
    status, body, _ = await post(http, f"{base}:loadCodeAssist", {"metadata": {}}, {"Authorization": "Bearer expired"})
    assert status == 401 and body["error"]["status"] == "UNAUTHENTICATED"


async def test_code_assist_errors_and_refreshed_token(fake_provider: FakeProvider, http: aiohttp.ClientSession) -> None:
    form = {"grant_type": "refresh_token", "refresh_token": "r", "client_id": "c", "client_secret": "s"}
    async with http.post(fake_provider.token_url, data=form) as resp:
        token = (await resp.json())["access_token"]
    fake_provider.enqueue(error(429, retry_after=7))
    request = {"model": "gemini-2.5-flash", "project": "p", "request": gemini_body()}
    status, body, _ = await post(http, f"{fake_provider.url}/v1internal:generateContent", request,
                                 {"Authorization": f"Bearer {token}"})
    assert status == 429
    details = body["error"]["details"]
    assert details[0]["reason"] == "RATE_LIMIT_EXCEEDED" and details[0]["domain"] == "cloudcode-pa.googleapis.com"
    assert details[1]["retryDelay"] == "7s"
