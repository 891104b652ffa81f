"""The official ``openai`` SDK's Responses API against the real server: ``responses.create`` (JSON
and stream), the ``responses.stream()`` helper, function tools to each provider family (OpenAI
chat, Anthropic, Gemini on the local fake provider), and ``previous_response_id``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai
import pytest

from fakes.behaviours import reply
from fakes.fixtures import fake_provider  # noqa: F401  (fixture)
from fakes.provider import FakeProvider
from proxy_support import API_KEY, LiveServer
from test_responses_frontend import proxy
from test_stream_limits import served

WEATHER = {"type": "function", "name": "get_weather", "description": "Weather for a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.fixture(params=["v1", "v2"])
def client(request, live_server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(api_key=API_KEY, base_url=f"{live_server.url}/{request.param}", max_retries=0, timeout=10)


def test_create_json(client: openai.OpenAI) -> None:
    response = client.responses.create(model="gpt-4", instructions="be brief", input="hello responses")
    assert response.output_text == "hello responses" and response.status == "completed"
    assert response.usage is not None and response.usage.input_tokens > 0


def test_create_stream(client: openai.OpenAI) -> None:
    text = "one two three four five six"
    events = list(client.responses.create(model="gpt-4", input=text, stream=True))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == text
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_stream_helper_and_previous_response_id(client: openai.OpenAI) -> None:
    with client.responses.stream(model="gpt-4", input="remember: blue") as stream:
        final = stream.get_final_response()
    assert final.output_text == "remember: blue"
    again = client.responses.create(model="gpt-4", input="what colour?", previous_response_id=final.id)
    assert again.output_text == "what colour?"
    assert client.responses.retrieve(again.id).output_text == "what colour?"
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="gpt-4", input="x", previous_response_id="resp_missing")
    assert info.value.code == "previous_response_not_found"


@pytest.mark.parametrize("backend", ["oai", "ant", "gem"])
async def test_function_tool_turn_to_each_provider_family(tmp_path: Path, fake_provider: FakeProvider,
                                                          backend: str) -> None:
    fake_provider.enqueue(reply(tool_calls=[{"id": "call_w1", "name": "get_weather", "arguments": {"city": "Paris"}}]))
    fake_provider.enqueue(reply("Sunny in Paris."))
    async with served(proxy(tmp_path, fake_provider)) as http:
        sdk = openai.AsyncOpenAI(api_key="unused", base_url=f"{str(http.base_url).rstrip('/')}/v2", max_retries=0, timeout=10)
        first = await sdk.responses.create(model=f"{backend}:model-x", input="Weather in Paris?", tools=[WEATHER])
        call = first.output[-1]
        assert call.type == "function_call" and call.name == "get_weather"
        assert json.loads(call.arguments) == {"city": "Paris"}
        async with sdk.responses.stream(model=f"{backend}:model-x", tools=[WEATHER], previous_response_id=first.id,
                                        input=[{"type": "function_call_output", "call_id": call.call_id,
                                                "output": "18C, sunny"}]) as stream:
            final = await stream.get_final_response()
        assert final.output_text == "Sunny in Paris."
        await sdk.close()
    sent = fake_provider.last.body
    text = json.dumps(sent)
    assert "18C, sunny" in text and "Weather in Paris?" in text and "get_weather" in text
    if backend == "oai":
        assert sent["messages"][-1] == {"role": "tool", "tool_call_id": call.call_id, "content": "18C, sunny"}
    elif backend == "ant":
        assert sent["messages"][-1]["content"][0]["type"] == "tool_result"
    else:
        assert "functionResponse" in sent["contents"][-1]["parts"][0]
