"""``api: responses`` backends: every front end reaches a model served only through the Responses
API, and a Responses client (Codex) reaches it losing nothing: reasoning items, custom tools and
hosted tools pass through as sent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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


def _thinking(frontend: str, body: Any, stream: bool) -> str:
    """The thinking a client of ``frontend`` was shown, JSON or streamed."""
    if frontend == "openai":
        if stream:
            return "".join(c["choices"][0]["delta"].get("reasoning_content") or "" for c in body[:-1] if c["choices"])
        return body["choices"][0]["message"].get("reasoning_content") or ""
    if frontend == "anthropic":
        if stream:
            return "".join(e["delta"]["thinking"] for e in body
                           if e["type"] == "content_block_delta" and e["delta"]["type"] == "thinking_delta")
        return "".join(b["thinking"] for b in body["content"] if b["type"] == "thinking")
    chunks = body if stream else [body]
    return "".join(p["text"] for c in chunks for cand in c["candidates"]
                   for p in cand.get("content", {}).get("parts", []) if p.get("thought"))


@pytest.mark.parametrize("frontend", ["openai", "anthropic", "gemini"])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_reasoning_summaries_are_thinking_for_other_clients(tmp_path: Path, fake_provider: FakeProvider,
                                                                   frontend: str, stream: bool) -> None:
    """A Responses backend's reasoning item (summary + encrypted_content) is shown as each
    client's own thinking: reasoning_content, thinking blocks, thought parts."""
    fake_provider.enqueue(reply("Use a set.", thinking="**Weighing options** A set dedupes."))
    path, _, query = chat_path(frontend, "o-pro", stream=stream).partition("?")
    async with served(proxy(tmp_path, fake_provider)) as client:
        result = await client.post(path, params=httpx.QueryParams(query),
                                   json=chat_body(frontend, "dedupe?", "o-pro", stream=stream))
    assert result.status_code == 200, result.text
    body = sse_data(result.text) if stream else result.json()
    assert _thinking(frontend, body, stream) == "**Weighing options** A set dedupes."
    assert "gAAAAB" not in result.text, "the encrypted reasoning is for a Responses client only"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_a_responses_client_gets_the_reasoning_item_whole_and_it_goes_back_as_sent(
        tmp_path: Path, fake_provider: FakeProvider, stream: bool) -> None:
    fake_provider.enqueue(reply("Use a set.", thinking="Weighing options."))
    async with served(proxy(tmp_path, fake_provider)) as client:
        first = await client.post("/v2/responses", json={"model": "o-pro", "input": "dedupe?", "stream": stream,
                                                         "store": False})
        if stream:
            events = sse_data(first.text)
            added = [e["item"] for e in events if e["type"] == "response.output_item.added"]
            done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
            assert "".join(e["delta"] for e in events if e["type"] == "response.reasoning_summary_text.delta") \
                == "Weighing options."
            assert added[0]["id"] == done[0]["id"], "the item streams under the id it ends with"
            output = events[-1]["response"]["output"]
            assert output[0] == done[0]
        else:
            output = first.json()["output"]
        reasoning = output[0]
        assert reasoning["type"] == "reasoning" and reasoning["encrypted_content"].startswith("gAAAAB")
        assert reasoning["summary"] == [{"type": "summary_text", "text": "Weighing options."}]
        follow = [{"role": "user", "content": "dedupe?"}, *output, {"role": "user", "content": "and order?"}]
        await client.post("/v2/responses", json={"model": "o-pro", "input": follow, "store": False})
    assert reasoning in fake_provider.last.body["input"], "Codex's echo of the item reaches OpenAI unchanged"
