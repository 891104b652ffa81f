"""The official SDKs as judges: what we encode must parse (and stream-accumulate) in the openai,
anthropic and google-genai clients, and the request bodies those clients send must decode."""

from __future__ import annotations

import json
from typing import Any, Callable

import httpx
import pytest

from router.wire.canonical import ChatResponse, TextPart, ThinkingPart, ToolCallPart, Usage, response_to_events
from wire_support import FORMATS, encode_stream

REPLY = ChatResponse(id="resp-sdk", model="m-sdk", created=1_700_000_000, finish_reason="tool_calls",
                     usage=Usage(100, 20, 60),
                     parts=[ThinkingPart("thinking...", "c2lnLTE="), TextPart("Let me look."),
                            ToolCallPart("call_1", "read_file", '{"path": "a.txt"}'),
                            ToolCallPart("call_2", "list_dir", "{}")])
TOOL = {"name": "read_file", "description": "Read", "schema": {"type": "object", "properties": {"path": {"type": "string"}}}}


def _client_http(fmt: str, stream: bool, seen: list[dict[str, Any]], lib: Any = httpx) -> Any:
    """A transport answering with our encoding of REPLY after decoding what the SDK sent.

    ``lib`` is the HTTP package the SDK is built on (recent anthropic releases use ``httpx2``).
    """

    def handler(request: Any) -> Any:
        body = json.loads(request.content)
        path = {}
        if fmt == "gemini":
            path = {"model": request.url.path.rsplit("/", 1)[-1].split(":")[0],
                    "stream": "streamGenerateContent" in request.url.path}
        seen.append({"body": body, "req": FORMATS[fmt].decode_request(body, **path)})
        if stream:
            payload = encode_stream(fmt, response_to_events(REPLY))
            return lib.Response(200, content=payload, headers={"content-type": "text/event-stream"})
        return lib.Response(200, json=FORMATS[fmt].encode_response(REPLY))

    return lib.Client(transport=lib.MockTransport(handler))


def _openai(stream: bool, seen: list) -> tuple[str, list[tuple[str, str, str]], Any]:
    import openai
    client = openai.OpenAI(api_key="k", base_url="http://proxy/v1", http_client=_client_http("openai", stream, seen))
    kwargs = dict(model="m-sdk", messages=[{"role": "user", "content": "hi"}],
                  tools=[{"type": "function", "function": {"name": TOOL["name"], "description": TOOL["description"],
                                                           "parameters": TOOL["schema"]}}])
    if stream:
        with client.chat.completions.stream(**kwargs) as s:
            completion = s.get_final_completion()
    else:
        completion = client.chat.completions.create(**kwargs)
    message = completion.choices[0].message
    calls = [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls or []]
    return message.content or "", calls, (completion.choices[0].finish_reason, completion.usage.prompt_tokens,
                                          completion.usage.prompt_tokens_details.cached_tokens)


def _anthropic(stream: bool, seen: list) -> tuple[str, list[tuple[str, str, str]], Any]:
    import anthropic
    lib = pytest.importorskip("httpx2") if anthropic.__version__.split(".")[0] >= "2" else httpx
    client = anthropic.Anthropic(api_key="k", base_url="http://proxy",
                                 http_client=_client_http("anthropic", stream, seen, lib))
    kwargs = dict(model="m-sdk", max_tokens=1000, messages=[{"role": "user", "content": "hi"}],
                  tools=[{"name": TOOL["name"], "description": TOOL["description"], "input_schema": TOOL["schema"]}])
    if stream:
        with client.messages.stream(**kwargs) as s:
            message = s.get_final_message()
    else:
        message = client.messages.create(**kwargs)
    text = "".join(b.text for b in message.content if b.type == "text")
    thinking = [(b.thinking, b.signature) for b in message.content if b.type == "thinking"]
    assert thinking == [("thinking...", "c2lnLTE=")]
    calls = [(b.id, b.name, json.dumps(b.input)) for b in message.content if b.type == "tool_use"]
    usage = message.usage
    return text, calls, (message.stop_reason, usage.input_tokens + usage.cache_read_input_tokens,
                         usage.cache_read_input_tokens)


def _gemini(stream: bool, seen: list) -> tuple[str, list[tuple[str, str, str]], Any]:
    from google import genai
    from google.genai import types
    client = genai.Client(api_key="k", http_options=types.HttpOptions(
        base_url="http://proxy", httpx_client=_client_http("gemini", stream, seen)))
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[types.FunctionDeclaration(
            name=TOOL["name"], description=TOOL["description"], parameters_json_schema=TOOL["schema"])])],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True))
    if stream:
        chunks = list(client.models.generate_content_stream(model="m-sdk", contents="hi", config=config))
    else:
        chunks = [client.models.generate_content(model="m-sdk", contents="hi", config=config)]
    parts = [p for c in chunks if c.candidates and c.candidates[0].content for p in c.candidates[0].content.parts or []]
    text = "".join(p.text for p in parts if p.text and not p.thought)
    assert "".join(p.text for p in parts if p.thought) == "thinking..."
    calls = [(p.function_call.id, p.function_call.name, json.dumps(p.function_call.args)) for p in parts if p.function_call]
    last = chunks[-1]
    return text, calls, (last.candidates[0].finish_reason.value, last.usage_metadata.prompt_token_count,
                         last.usage_metadata.cached_content_token_count)


CLIENTS: dict[str, Callable] = {"openai": _openai, "anthropic": _anthropic, "gemini": _gemini}
FINISH = {"openai": "tool_calls", "anthropic": "tool_use", "gemini": "STOP"}


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("fmt", CLIENTS)
def test_sdk_reads_our_replies(fmt: str, stream: bool) -> None:
    seen: list[dict[str, Any]] = []
    text, calls, (finish, prompt, cached) = CLIENTS[fmt](stream, seen)
    assert text == "Let me look."
    assert [(i, n, json.loads(a)) for i, n, a in calls] == [("call_1", "read_file", {"path": "a.txt"}),
                                                              ("call_2", "list_dir", {})]
    assert (finish, prompt, cached) == (FINISH[fmt], 100, 60)
    req = seen[0]["req"]  # the SDK's own request decoded cleanly
    assert req.messages[0].text() == "hi" and req.tools[0].name == "read_file"
    assert req.tools[0].parameters == TOOL["schema"] and req.stream is stream
