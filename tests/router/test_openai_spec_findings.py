"""What checking the OpenAI front end against OpenAI's API description found, each pinned down.

Requests valid by the description (``tests/router/openapi/openai-subset.yaml``) are accepted and
reach a provider faithfully: ``role: "function"`` messages, ``input_audio`` and ``file`` content
parts, ``tool_choice: {"type": "allowed_tools"}``, a conversation of system text alone. Towards
a provider that cannot take a part, the client gets a 400 naming the part and the backend.
Replies carry the fields the description requires: ``message.refusal`` (null) and, with
``stream_options.include_usage``, ``usage: null`` on every chunk before the usage chunk.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest

from fakes.provider import FakeProvider
from proxy_support import API_KEY, LiveServer, write_config
from router.app import create_app

HEADERS = {"Authorization": f"Bearer {API_KEY}"}
PDF = "JVBERi0xLjQK"  # "%PDF-1.4\n"
AUDIO = "UklGRiQAAABXQVZF"  # "RIFF$\0\0\0WAVE"
TOOLS = [{"type": "function", "function": {"name": name, "parameters": {"type": "object", "properties": {}}}}
         for name in ("get_weather", "delete_everything")]
ALLOWED = {"type": "allowed_tools", "allowed_tools": {
    "mode": "required", "tools": [{"type": "function", "function": {"name": "get_weather"}}]}}


@pytest.fixture
async def proxy(tmp_path: Path) -> AsyncIterator[tuple[FakeProvider, str]]:
    """One proxy with an OpenAI, an Anthropic and a Gemini backend on the fake provider; the
    model prefix picks the backend (``oa:...``, ``an:...``, ``ge:...``)."""
    async with FakeProvider() as fake:
        config = write_config(tmp_path, auth={"api_keys": [API_KEY]}, backends={
            "oa": {"type": "openai-compatible", "base_url": fake.openai_base_url, "api_key": fake.key("openai")},
            "an": {"type": "anthropic", "base_url": fake.url, "api_key": fake.key("anthropic")},
            "ge": {"type": "gemini", "base_url": fake.url, "api_key": fake.key("gemini")},
        }, default_backend="oa")
        server = LiveServer(create_app(config)).start()
        try:
            yield fake, server.url
        finally:
            server.stop()


async def _post(url: str, body: dict[str, Any]) -> tuple[int, Any, str]:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{url}/v2/chat/completions", json=body, headers=HEADERS) as response:
            text = await response.text()
            is_json = response.content_type == "application/json"
            return response.status, json.loads(text) if is_json else None, text


def _user(*parts: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "text", "text": "look"}, *parts]}]


async def test_non_streaming_replies_carry_a_null_refusal(proxy: Any) -> None:
    fake, url = proxy
    for content in ("hello", "!/hello"):  # a provider's reply and one the proxy writes itself
        status, body, _ = await _post(url, {"model": "oa:gpt-4o", "messages": [{"role": "user", "content": content}]})
        assert status == 200
        assert body["choices"][0]["message"]["refusal"] is None


@pytest.mark.parametrize("include_usage", [True, False])
async def test_chunks_before_the_usage_chunk_say_usage_null_only_when_usage_was_asked(proxy: Any,
                                                                                    include_usage: bool) -> None:
    _fake, url = proxy
    status, _, text = await _post(url, {"model": "oa:gpt-4o", "stream": True,
                                        "stream_options": {"include_usage": include_usage},
                                        "messages": [{"role": "user", "content": "hello there"}]})
    assert status == 200
    chunks = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]
    if include_usage:
        assert all("usage" in chunk and chunk["usage"] is None for chunk in chunks[:-1])
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
    else:
        assert all("usage" not in chunk for chunk in chunks)


@pytest.mark.parametrize("messages", [
    [{"role": "system", "content": "You are terse."}],
    [{"role": "developer", "content": "You are terse."}],
    [{"role": "system", "content": ""}],
], ids=["system", "developer", "empty-system"])
async def test_a_conversation_of_system_text_alone_is_forwarded(proxy: Any, messages: list[dict[str, Any]]) -> None:
    fake, url = proxy
    status, body, _ = await _post(url, {"model": "oa:gpt-4o", "messages": messages})
    assert status == 200, body
    sent = fake.generations[-1].body["messages"]
    assert [m["role"] for m in sent] == ["system"] and sent[0]["content"] == messages[0]["content"]


async def test_a_message_of_commands_alone_is_still_refused_with_the_reason(proxy: Any) -> None:
    _fake, url = proxy
    status, body, _ = await _post(url, {"model": "oa:gpt-4o", "messages": [
        {"role": "user", "content": "!/set(temperature=0.2)"}, {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "!/hello"}]})
    assert status == 200  # the proxy answers a command-only message itself
    assert "refusal" in body["choices"][0]["message"]


async def test_legacy_function_messages_reach_the_provider_as_tool_calls_and_results(proxy: Any) -> None:
    fake, url = proxy
    status, body, _ = await _post(url, {"model": "oa:gpt-4o", "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "function_call": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}},
        {"role": "function", "name": "get_weather", "content": "-3C"},
    ]})
    assert status == 200, body
    sent = fake.generations[-1].body["messages"]
    call = sent[1]["tool_calls"][0]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"Oslo"}'}
    assert sent[2] == {"role": "tool", "tool_call_id": call["id"], "content": "-3C"}


async def test_legacy_function_results_reach_gemini_under_the_function_name(proxy: Any) -> None:
    fake, url = proxy
    status, body, _ = await _post(url, {"model": "ge:gemini-2.5-pro", "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "function_call": {"name": "get_weather", "arguments": "{}"}},
        {"role": "function", "name": "get_weather", "content": "-3C"},
    ]})
    assert status == 200, body
    contents = fake.generations[-1].body["contents"]
    assert contents[1]["parts"][0]["functionCall"]["name"] == "get_weather"
    assert contents[2]["parts"][0]["functionResponse"] == {"name": "get_weather", "response": {"output": "-3C"}}


async def test_audio_and_file_parts_reach_an_openai_provider_unchanged(proxy: Any) -> None:
    fake, url = proxy
    parts = [{"type": "input_audio", "input_audio": {"data": AUDIO, "format": "wav"}},
             {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{PDF}", "filename": "a.pdf"}},
             {"type": "file", "file": {"file_id": "file-abc123"}}]
    status, body, _ = await _post(url, {"model": "oa:gpt-4o", "messages": _user(*parts)})
    assert status == 200, body
    assert fake.generations[-1].body["messages"][0]["content"][1:] == parts


async def test_files_and_audio_reach_gemini_inline(proxy: Any) -> None:
    fake, url = proxy
    status, body, _ = await _post(url, {"model": "ge:gemini-2.5-pro", "messages": _user(
        {"type": "input_audio", "input_audio": {"data": AUDIO, "format": "mp3"}},
        {"type": "file", "file": {"file_data": PDF, "filename": "report.pdf"}})})
    assert status == 200, body
    parts = fake.generations[-1].body["contents"][0]["parts"]
    assert parts[1:] == [{"inlineData": {"mimeType": "audio/mpeg", "data": AUDIO}},
                         {"inlineData": {"mimeType": "application/pdf", "data": PDF}}]


async def test_a_pdf_reaches_anthropic_as_a_document(proxy: Any) -> None:
    fake, url = proxy
    status, body, _ = await _post(url, {"model": "an:claude-sonnet-4-5", "messages": _user(
        {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{PDF}"}})})
    assert status == 200, body
    blocks = fake.generations[-1].body["messages"][0]["content"]
    assert blocks[1] == {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF}}


@pytest.mark.parametrize("model, part, named", [
    ("an:claude-sonnet-4-5", {"type": "input_audio", "input_audio": {"data": AUDIO, "format": "wav"}}, "audio/wav"),
    ("an:claude-sonnet-4-5", {"type": "file", "file": {"file_id": "file-abc123"}}, "file-abc123"),
    ("ge:gemini-2.5-pro", {"type": "file", "file": {"file_id": "file-abc123"}}, "file-abc123"),
], ids=["audio-to-anthropic", "file-id-to-anthropic", "file-id-to-gemini"])
async def test_a_part_the_provider_cannot_read_is_a_400_naming_it_and_the_backend(
        proxy: Any, model: str, part: dict[str, Any], named: str) -> None:
    fake, url = proxy
    status, body, _ = await _post(url, {"model": model, "messages": _user(part)})
    assert status == 400, body
    message = body["error"]["message"]
    assert named in message and repr(model.split(":")[0]) in message
    assert body["error"]["type"] == "invalid_request_error"
    assert fake.generations == []  # nothing was sent


async def test_allowed_tools_pass_to_openai_as_sent(proxy: Any) -> None:
    fake, url = proxy
    status, body, _ = await _post(url, {"model": "oa:gpt-4o", "messages": _user(), "tools": TOOLS,
                                        "tool_choice": ALLOWED})
    assert status == 200, body
    sent = fake.generations[-1].body
    assert sent["tool_choice"] == ALLOWED and [t["function"]["name"] for t in sent["tools"]] == [
        "get_weather", "delete_everything"]


@pytest.mark.parametrize("model, tools_of, choice_of, choice", [
    ("an:claude-sonnet-4-5", lambda b: [t["name"] for t in b["tools"]], lambda b: b["tool_choice"], {"type": "any"}),
    ("ge:gemini-2.5-pro", lambda b: [f["name"] for f in b["tools"][0]["functionDeclarations"]],
     lambda b: b["toolConfig"]["functionCallingConfig"], {"mode": "ANY"}),
], ids=["anthropic", "gemini"])
async def test_allowed_tools_reach_other_providers_as_only_the_allowed_tools(
        proxy: Any, model: str, tools_of: Any, choice_of: Any, choice: dict[str, Any]) -> None:
    fake, url = proxy
    status, body, _ = await _post(url, {"model": model, "messages": _user(), "tools": TOOLS, "tool_choice": ALLOWED})
    assert status == 200, body
    sent = fake.generations[-1].body
    assert tools_of(sent) == ["get_weather"] and choice_of(sent) == choice


@pytest.mark.parametrize("tool_choice, param", [
    ({"type": "allowed_tools"}, "tool_choice.allowed_tools"),
    ({"type": "allowed_tools", "allowed_tools": {"mode": "sometimes", "tools": []}}, "tool_choice.allowed_tools.mode"),
    ({"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [{"type": "function"}]}},
     "tool_choice.allowed_tools.tools[0]"),
])
async def test_a_malformed_allowed_tools_choice_is_a_400_naming_the_field(proxy: Any, tool_choice: Any, param: str) -> None:
    _fake, url = proxy
    status, body, _ = await _post(url, {"model": "oa:gpt-4o", "messages": _user(), "tools": TOOLS,
                                        "tool_choice": tool_choice})
    assert status == 400 and body["error"]["param"] == param, body


PATCH_TOOL = {"type": "custom", "custom": {"name": "apply_patch", "description": "Edit files",
                                           "format": {"type": "grammar", "grammar": {
                                               "syntax": "lark", "definition": "start: /[\\s\\S]+/"}}}}
PATCH = "*** Begin Patch\n*** Add File: a.txt\n+hi\n*** End Patch\n"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_custom_tools_go_out_as_functions_and_their_calls_come_back_custom(proxy: Any, stream: bool) -> None:
    fake, url = proxy
    from fakes.provider import reply
    fake.enqueue(reply(tool_calls=[{"id": "call_p1", "name": "apply_patch", "arguments": {"input": PATCH}}]))
    status, body, text = await _post(url, {"model": "oa:gpt-4o", "messages": _user(), "tools": [PATCH_TOOL],
                                           "stream": stream})
    assert status == 200, text
    sent = fake.generations[-1].body["tools"][0]
    assert sent["type"] == "function" and sent["function"]["name"] == "apply_patch"
    assert sent["function"]["parameters"]["required"] == ["input"] and "lark" in sent["function"]["description"]
    if stream:
        calls = [call for line in text.splitlines() if line.startswith("data: {")
                 for choice in json.loads(line[6:])["choices"] for call in choice["delta"].get("tool_calls", [])]
        assert calls[0]["type"] == "custom" and calls[0]["custom"]["name"] == "apply_patch"
        assert "".join(c["custom"]["input"] for c in calls) == PATCH
    else:
        assert body["choices"][0]["message"]["tool_calls"] == [
            {"id": "call_p1", "type": "custom", "custom": {"name": "apply_patch", "input": PATCH}}]


async def test_a_custom_call_in_the_history_reaches_anthropic_as_its_function_form(proxy: Any) -> None:
    fake, url = proxy
    status, body, _ = await _post(url, {"model": "an:claude-sonnet-4-5", "tools": [PATCH_TOOL], "messages": [
        {"role": "user", "content": "add a.txt"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "toolu_1", "type": "custom", "custom": {"name": "apply_patch", "input": PATCH}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "Done"}]})
    assert status == 200, body
    sent = fake.generations[-1].body
    assert sent["messages"][1]["content"][0] == {"type": "tool_use", "id": "toolu_1", "name": "apply_patch",
                                                 "input": {"input": PATCH}}
    assert sent["tools"][0]["name"] == "apply_patch" and sent["tools"][0]["input_schema"]["required"] == ["input"]


async def test_a_named_custom_tool_choice_forces_that_tool(proxy: Any) -> None:
    fake, url = proxy
    status, body, _ = await _post(url, {"model": "oa:gpt-4o", "messages": _user(), "tools": [PATCH_TOOL],
                                        "tool_choice": {"type": "custom", "custom": {"name": "apply_patch"}}})
    assert status == 200, body
    assert fake.generations[-1].body["tool_choice"] == {"type": "function", "function": {"name": "apply_patch"}}
