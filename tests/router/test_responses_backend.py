"""``api: responses`` backends: every front end reaches a model served only through the Responses
API, and a Responses client (Codex) reaches it losing nothing: reasoning items, custom tools and
hosted tools pass through as sent."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from fakes.behaviours import reply
from fakes.fixtures import fake_provider  # noqa: F401  (fixture)
from fakes.provider import FakeProvider
from proxy_support import chat_body, chat_path, reply_text, sse_data, stream_text, write_config
from router.app import ProxyApp, create_app
from test_responses_frontend import APPLY_PATCH, EXEC, PATCH
from test_stream_limits import served


def proxy(tmp_path: Path, fake: FakeProvider) -> ProxyApp:
    config = write_config(tmp_path, backends={"resp": {"type": "openai", "api": "responses", "base_url": f"{fake.url}/v1",
                                                       "api_key": fake.key("responses")}}, default_backend="resp")
    return create_app(config, disable_auth=True)


async def test_codex_to_a_responses_backend_loses_nothing(tmp_path: Path, fake_provider: FakeProvider) -> None:
    reasoning = {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAA-opaque"}
    hosted = {"type": "web_search", "external_web_access": False}
    body = {"model": "gpt-5.5", "store": False, "include": ["reasoning.encrypted_content"],
            "reasoning": {"effort": "medium"}, "text": {"verbosity": "low"}, "prompt_cache_key": "k1",
            "tools": [EXEC, APPLY_PATCH, hosted], "input": [
                {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "You are Codex."}]},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "patch it"}]},
                reasoning,
                {"type": "custom_tool_call", "call_id": "call_a", "name": "apply_patch", "input": PATCH},
                {"type": "custom_tool_call_output", "call_id": "call_a", "output": "Success."}]}
    fake_provider.enqueue(reply(tool_calls=[{"id": "call_b", "name": "apply_patch", "arguments": {"input": PATCH}}]))
    async with served(proxy(tmp_path, fake_provider)) as client:
        result = await client.post("/v2/responses", json={**body, "stream": True})
    sent = fake_provider.last.body
    assert fake_provider.last.path == "/v1/responses"
    assert reasoning in sent["input"] and hosted in sent["tools"] and APPLY_PATCH in sent["tools"]
    assert {"type": "custom_tool_call", "call_id": "call_a", "name": "apply_patch", "input": PATCH} in sent["input"]
    assert {"type": "custom_tool_call_output", "call_id": "call_a", "output": "Success."} in sent["input"]
    for key in ("store", "include", "reasoning", "text", "prompt_cache_key"):
        assert sent[key] == body[key], key
    assert sent["instructions"] == "You are Codex."
    done = [e["item"] for e in sse_data(result.text) if e["type"] == "response.output_item.done"]
    assert [(i["type"], i.get("input")) for i in done] == [("custom_tool_call", PATCH)]


@pytest.mark.parametrize("frontend", ["openai", "anthropic", "gemini", "responses"])
@pytest.mark.parametrize("stream", [False, True])
async def test_every_front_end_reaches_a_responses_only_model(tmp_path: Path, fake_provider: FakeProvider,
                                                               frontend: str, stream: bool) -> None:
    fake_provider.enqueue(reply("From the Responses API."))
    path, _, query = chat_path(frontend, "o-pro", stream=stream).partition("?")
    async with served(proxy(tmp_path, fake_provider)) as client:
        result = await client.post(path, params=httpx.QueryParams(query),
                                   json=chat_body(frontend, "hello", "o-pro", stream=stream))
    assert result.status_code == 200, result.text
    if stream:
        text = stream_text(frontend, sse_data(result.text))
    else:
        text = reply_text(frontend, type("R", (), {"status_code": 200, "headers": result.headers,
                                                   "json": result.json(), "text": result.text})())
    assert text == "From the Responses API."
    sent = fake_provider.last.body
    assert sent["model"] == "o-pro" and sent["input"][-1]["content"] == [{"type": "input_text", "text": "hello"}]
    assert json.dumps(sent).count("hello") == 1
