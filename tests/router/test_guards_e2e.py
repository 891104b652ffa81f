"""Agent guards end to end: a real server, a local fake provider, the official SDKs as clients.

A textual tool call from the provider reaches the SDK as a real tool call; a looping stream is cut,
ends normally for the client, and the proxy stops reading from (and paying for) the provider.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, AsyncIterator

import anthropic
import openai
import pytest

from fakes.provider import FakeProvider, loop, textual_tool_call
from proxy_support import API_KEY, LiveServer, write_config
from router.app import create_app

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
TEXTUAL = 'Let me check.\n<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
LOOPING = "I will try the same approach again now. "


@pytest.fixture
async def proxied(tmp_path: Path) -> AsyncIterator[tuple[FakeProvider, LiveServer]]:
    async with FakeProvider() as fake:
        config = write_config(tmp_path, auth={"api_keys": [API_KEY]}, backends={
            "up": {"type": "openai-compatible", "base_url": fake.openai_base_url, "api_key": fake.key("openai")}},
            default_backend="up")
        server = LiveServer(create_app(config)).start()
        try:
            yield fake, server
        finally:
            server.stop()


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_textual_tool_call_reaches_openai_sdk_as_a_tool_call(proxied: Any, stream: bool) -> None:
    fake, server = proxied
    fake.enqueue(textual_tool_call(TEXTUAL))
    client = openai.AsyncOpenAI(base_url=f"{server.url}/v2", api_key=API_KEY)
    kwargs = dict(model="gpt-4o", messages=[{"role": "user", "content": "weather in Paris?"}], tools=[WEATHER_TOOL])
    if stream:
        calls: dict[int, dict[str, str]] = {}
        finish = None
        async for chunk in await client.chat.completions.create(stream=True, **kwargs):
            for choice in chunk.choices:
                for call in choice.delta.tool_calls or []:
                    entry = calls.setdefault(call.index, {"name": "", "arguments": ""})
                    entry["name"] += call.function.name or ""
                    entry["arguments"] += call.function.arguments or ""
                finish = choice.finish_reason or finish
        assert finish == "tool_calls"
        assert [(c["name"], json.loads(c["arguments"])) for c in calls.values()] == [("get_weather", {"city": "Paris"})]
    else:
        result = await client.chat.completions.create(**kwargs)
        message = result.choices[0].message
        assert result.choices[0].finish_reason == "tool_calls"
        assert message.tool_calls[0].function.name == "get_weather"
        assert json.loads(message.tool_calls[0].function.arguments) == {"city": "Paris"}
        assert message.tool_calls[0].id.startswith("call_")
    await client.close()


async def test_textual_tool_call_reaches_anthropic_sdk_as_tool_use(proxied: Any) -> None:
    fake, server = proxied
    fake.enqueue(textual_tool_call(TEXTUAL))
    client = anthropic.AsyncAnthropic(base_url=server.url, api_key=API_KEY)
    result = await client.messages.create(
        model="claude-x", max_tokens=100, messages=[{"role": "user", "content": "weather?"}],
        tools=[{"name": "get_weather", "description": "w", "input_schema": WEATHER_TOOL["function"]["parameters"]}])
    assert result.stop_reason == "tool_use"
    uses = [b for b in result.content if b.type == "tool_use"]
    assert uses[0].name == "get_weather" and uses[0].input == {"city": "Paris"}
    await client.close()


async def test_text_that_names_an_undeclared_tool_passes_through(proxied: Any) -> None:
    fake, server = proxied
    fake.enqueue(textual_tool_call(TEXTUAL))
    client = openai.AsyncOpenAI(base_url=f"{server.url}/v2", api_key=API_KEY)
    result = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert result.choices[0].message.content == TEXTUAL and not result.choices[0].message.tool_calls
    await client.close()


async def test_loop_is_cut_and_the_provider_stream_is_closed(proxied: Any) -> None:
    fake, server = proxied
    fake.enqueue(loop(LOOPING, times=400, gap=0.002))
    client = openai.AsyncOpenAI(base_url=f"{server.url}/v2", api_key=API_KEY)
    text, finish = "", None
    async for chunk in await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "go"}], stream=True):
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    assert finish == "stop"
    assert "cut off" in text and text.count(LOOPING) < 20
    record = fake.requests[-1]
    await record.wait()
    assert record.disconnected and record.chunks_sent < 400
    await client.close()


async def test_guards_can_be_switched_off_by_the_session(proxied: Any) -> None:
    fake, server = proxied
    client = openai.AsyncOpenAI(base_url=f"{server.url}/v2", api_key=API_KEY,
                                default_headers={"x-session-id": "guards-off"})
    reply = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "!/set(tool_call_repair=false)"}])
    assert "tool_call_repair set to false" in reply.choices[0].message.content
    hello = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "!/hello"}])
    assert "tool_call_repair" not in hello.choices[0].message.content.split("active guards:")[1].split("\n")[0]
    fake.enqueue(textual_tool_call(TEXTUAL))
    result = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "w"}],
                                                  tools=[WEATHER_TOOL])
    assert not result.choices[0].message.tool_calls and "<tool_call>" in result.choices[0].message.content
    await client.close()


async def test_guard_events_are_in_the_usage_record(proxied: Any) -> None:
    import httpx

    fake, server = proxied
    fake.enqueue(textual_tool_call(TEXTUAL))
    client = openai.AsyncOpenAI(base_url=f"{server.url}/v2", api_key=API_KEY)
    await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "w"}], tools=[WEATHER_TOOL])
    await client.close()
    import asyncio

    async with httpx.AsyncClient() as http:
        for _ in range(50):  # records are written in batches, a fraction of a second later
            recent = (await http.get(f"{server.url}/v2/usage/recent?limit=1",
                                     headers={"Authorization": f"Bearer {API_KEY}"})).json()
            if recent["data"]:
                break
            await asyncio.sleep(0.1)
    assert recent["data"][0]["guard_events"][0]["kind"] == "tool_call_repaired"
