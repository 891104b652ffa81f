"""The OpenAI codec's tools, tool choices and outgoing messages, as tables: each accepted shape and
what it decodes to, each malformed one and the field its refusal names, and the exact body sent to
an OpenAI-compatible provider for each canonical request."""

from __future__ import annotations

from typing import Any

import pytest

from router.wire import openai
from router.wire.canonical import (
    ChatRequest, ChatResponse, ImagePart, Message, TextPart, ThinkingPart, Tool, ToolCallPart, ToolChoice,
    ToolResultPart, Usage,
)
from router.wire.codec import CodecError

USER = {"role": "user", "content": "x"}


def refused(body: dict[str, Any]) -> CodecError:
    with pytest.raises(CodecError) as caught:
        openai.decode_request(body)
    assert caught.value.message.startswith(caught.value.param + ": ")
    return caught.value


# ---- function tools -------------------------------------------------------------------------------

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}}


@pytest.mark.parametrize(("tool", "expected"), [
    ({"type": "function", "function": {"name": "f"}}, Tool(name="f")),
    ({"type": "function", "function": {"name": "f", "description": "Finds", "parameters": SCHEMA}},
     Tool(name="f", description="Finds", parameters=SCHEMA)),
    ({"type": "function", "function": {"name": "f", "parameters": {}}}, Tool(name="f", parameters={})),
])
def test_function_tools_decode(tool: dict[str, Any], expected: Tool) -> None:
    assert openai.decode_request({"model": "m", "messages": [USER], "tools": [tool]}).tools == [expected]


@pytest.mark.parametrize(("tools", "param", "says"), [
    ({"type": "function"}, "tools", "expected an array, got object"),
    (["f"], "tools[0]", "expected an object, got string"),
    ([{"function": {"name": "f"}}], "tools[0].type", "required field is missing"),
    ([{"type": "retrieval", "function": {"name": "f"}}], "tools[0].type", "expected one of function, custom, got 'retrieval'"),
    ([{"type": "function"}], "tools[0].function", "required field is missing"),
    ([{"type": "function", "function": "f"}], "tools[0].function", "expected an object, got string"),
    ([{"type": "function", "function": {}}], "tools[0].function.name", "required field is missing"),
    ([{"type": "function", "function": {"name": ""}}], "tools[0].function.name", "must not be empty"),
    ([{"type": "function", "function": {"name": 1}}], "tools[0].function.name", "expected a string, got number"),
    ([{"type": "function", "function": {"name": "f", "description": 1}}], "tools[0].function.description", "expected a string, got number"),
    ([{"type": "function", "function": {"name": "f", "parameters": "{}"}}], "tools[0].function.parameters", "expected an object, got string"),
    ([{"type": "function", "function": {"name": "f"}}, {"type": "function", "function": {"name": ""}}],
     "tools[1].function.name", "must not be empty"),
])
def test_malformed_tools_are_refused_naming_the_field(tools: Any, param: str, says: str) -> None:
    err = refused({"model": "m", "messages": [USER], "tools": tools})
    assert err.param == param and err.message == f"{param}: {says}"


# ---- tool choices ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "expected"), [
    ({"type": "custom", "custom": {"name": "patch"}}, ToolChoice("required", "patch")),
    ({"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [
        {"type": "function", "function": {"name": "a"}}, {"type": "custom", "custom": {"name": "b"}}, {"name": "c"}]}},
     ToolChoice("auto", allowed=["a", "b", "c"])),
    ({"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [
        {"type": "function", "function": {"name": "a"}}]}}, ToolChoice("required", allowed=["a"])),
    ({"type": "allowed_tools", "allowed_tools": {"mode": "auto"}}, ToolChoice("auto", allowed=[])),
])
def test_named_and_allowed_tool_choices_decode(raw: dict[str, Any], expected: ToolChoice) -> None:
    assert openai.decode_request({"model": "m", "messages": [USER], "tool_choice": raw}).tool_choice == expected


AT = "tool_choice.allowed_tools"
TOOL_LIKE = 'expected a tool like {"type": "function", "function": {"name": ...}}'


@pytest.mark.parametrize(("raw", "param", "says"), [
    ({"type": "custom"}, "tool_choice.custom", "required field is missing"),
    ({"type": "custom", "custom": {}}, "tool_choice.custom.name", "required field is missing"),
    ({"type": "custom", "custom": {"name": 2}}, "tool_choice.custom.name", "expected a string, got number"),
    ({"type": "allowed_tools"}, AT, "required field is missing"),
    ({"type": "allowed_tools", "allowed_tools": []}, AT, "expected an object, got array"),
    ({"type": "allowed_tools", "allowed_tools": {"tools": []}}, f"{AT}.mode", "required field is missing"),
    ({"type": "allowed_tools", "allowed_tools": {"mode": "none", "tools": []}}, f"{AT}.mode",
     "expected one of auto, required, got 'none'"),
    ({"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": {}}}, f"{AT}.tools", "expected an array, got object"),
    ({"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": ["a"]}}, f"{AT}.tools[0]", "expected an object, got string"),
    ({"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [{"name": "a"}, {"type": "function"}]}},
     f"{AT}.tools[1]", TOOL_LIKE),
    ({"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [{"name": ""}]}},
     f"{AT}.tools[0]", TOOL_LIKE),
    ({"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [{"type": "function", "function": {}}]}},
     f"{AT}.tools[0]", TOOL_LIKE),
    ({"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [{"function": {}, "name": "a"}]}},
     f"{AT}.tools[0]", TOOL_LIKE),
    ({"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [{"function": "a"}]}},
     f"{AT}.tools[0].function", "expected an object, got string"),
    ({"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [{"function": {"name": 1}}]}},
     f"{AT}.tools[0].function.name", "expected a string, got number"),
    ({"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [{"custom": {"name": 1}}]}},
     f"{AT}.tools[0].custom.name", "expected a string, got number"),
    ({"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [{"name": 1}]}},
     f"{AT}.tools[0].name", "expected a string, got number"),
])
def test_malformed_named_and_allowed_tool_choices_are_refused_naming_the_field(raw: Any, param: str,
                                                                               says: str) -> None:
    err = refused({"model": "m", "messages": [USER], "tool_choice": raw})
    assert err.param == param and err.message == f"{param}: {says}"


@pytest.mark.parametrize(("choice", "encoded"), [
    (ToolChoice("auto"), "auto"),
    (ToolChoice("none"), "none"),
    (ToolChoice("required field is missing"), "required field is missing"),
    (ToolChoice("required", "f"), {"type": "function", "function": {"name": "f"}}),
    (ToolChoice("auto", allowed=["a", "b"]), {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [
        {"type": "function", "function": {"name": "a"}}, {"type": "function", "function": {"name": "b"}}]}}),
    (ToolChoice("required", allowed=["a"]), {"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [
        {"type": "function", "function": {"name": "a"}}]}}),
    (ToolChoice("none", allowed=[]), {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}}),
])
def test_tool_choices_encode(choice: ToolChoice, encoded: Any) -> None:
    body = openai.encode_request(ChatRequest(model="m", messages=[Message("user", [TextPart("x")])],
                                             tools=[Tool("f")], tool_choice=choice))
    assert body["tool_choice"] == encoded


# ---- requests towards a provider ------------------------------------------------------------------


def request(**fields: Any) -> ChatRequest:
    return ChatRequest(**{"model": "m", "messages": [Message("user", [TextPart("x")])], **fields})


@pytest.mark.parametrize(("req", "expected"), [
    (request(), {"model": "m", "messages": [{"role": "user", "content": "x"}]}),
    (request(system=[TextPart("a"), TextPart("b")]),
     {"model": "m", "messages": [{"role": "system", "content": "a\n\nb"}, {"role": "user", "content": "x"}]}),
    (request(stream=True), {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True,
                            "stream_options": {"include_usage": True}}),
    (request(temperature=0.0, top_p=0.0), {"model": "m", "messages": [{"role": "user", "content": "x"}],
                                           "temperature": 0.0, "top_p": 0.0}),
    (request(max_tokens=5), {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 5}),
    (request(max_tokens=5, extra={"openai": {"max_completion_tokens": 9, "seed": 1}}),
     {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 5, "seed": 1}),
    (request(extra={"openai": {"max_completion_tokens": 9}}),
     {"model": "m", "messages": [{"role": "user", "content": "x"}]}),
    (request(stop=["END"]), {"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": ["END"]}),
    (request(tools=[Tool("f", "Finds", SCHEMA), Tool("g")]), {"model": "m", "messages": [{"role": "user", "content": "x"}],
     "tools": [{"type": "function", "function": {"name": "f", "description": "Finds", "parameters": SCHEMA}},
               {"type": "function", "function": {"name": "g", "parameters": {"type": "object", "properties": {}}}}]}),
])
def test_requests_encode(req: ChatRequest, expected: dict[str, Any]) -> None:
    assert openai.encode_request(req) == expected


def test_a_decoded_request_goes_out_with_the_client_s_other_fields() -> None:
    body = {"model": "m", "messages": [USER], "max_completion_tokens": 7, "seed": 3, "user": "u"}
    req = openai.decode_request(body)
    assert req.max_tokens == 7
    assert openai.encode_request(req) == body
    both = openai.decode_request({**body, "max_tokens": 99})
    assert both.max_tokens == 7  # max_completion_tokens wins over the deprecated max_tokens


CALL = ToolCallPart(id="c1", name="f", arguments='{"a":1}')
CALL_OUT = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}


@pytest.mark.parametrize(("message", "expected"), [
    (Message("assistant", [TextPart("a"), TextPart("b")]), [{"role": "assistant", "content": "ab"}]),
    (Message("assistant", [ThinkingPart("t"), TextPart("a")]), [{"role": "assistant", "content": "a"}]),
    (Message("assistant", []), [{"role": "assistant", "content": ""}]),
    (Message("assistant", [CALL]), [{"role": "assistant", "content": None, "tool_calls": [CALL_OUT]}]),
    (Message("assistant", [TextPart("a"), CALL]), [{"role": "assistant", "content": "a", "tool_calls": [CALL_OUT]}]),
    (Message("user", [TextPart("a"), TextPart("b")]),
     [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]),
    (Message("user", [ImagePart(url="https://example.invalid/a.png")]),
     [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.invalid/a.png"}}]}]),
    (Message("tool", [ToolResultPart("c1", [TextPart("r")])]), [{"role": "tool", "tool_call_id": "c1", "content": "r"}]),
    (Message("tool", [ToolResultPart("c1", [])]), [{"role": "tool", "tool_call_id": "c1", "content": []}]),
    (Message("tool", [ToolResultPart("c1", [TextPart("r"), TextPart("s")])]),
     [{"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "r"}, {"type": "text", "text": "s"}]}]),
    (Message("tool", [ToolResultPart("c1", [TextPart("r"), ImagePart(url="https://example.invalid/i.png")]),
                      ToolResultPart("c2", [TextPart("s")])]),
     [{"role": "tool", "tool_call_id": "c1", "content": "r"}, {"role": "tool", "tool_call_id": "c2", "content": "s"},
      {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.invalid/i.png"}}]}]),
    (Message("user", [ToolResultPart("c1", [TextPart("r")]), TextPart("next")]),
     [{"role": "tool", "tool_call_id": "c1", "content": "r"}, {"role": "user", "content": "next"}]),
])
def test_messages_encode(message: Message, expected: list[dict[str, Any]]) -> None:
    assert openai.encode_request(request(messages=[message]))["messages"] == expected


# ---- replies to the client ------------------------------------------------------------------------


@pytest.mark.parametrize(("parts", "finish", "message", "finish_out"), [
    ([TextPart("hi")], "stop", {"role": "assistant", "content": "hi", "refusal": None}, "stop"),
    ([], "length", {"role": "assistant", "content": "", "refusal": None}, "length"),
    ([ThinkingPart("t"), TextPart("a"), TextPart("b")], "loop",
     {"role": "assistant", "content": "ab", "refusal": None, "reasoning_content": "t"}, "stop"),
    ([CALL], "tool_calls", {"role": "assistant", "content": None, "refusal": None, "tool_calls": [CALL_OUT]},
     "tool_calls"),
    ([TextPart("a"), ToolCallPart(id="c2", name="p", arguments="raw", custom=True)], "error",
     {"role": "assistant", "content": "a", "refusal": None,
      "tool_calls": [{"id": "c2", "type": "custom", "custom": {"name": "p", "input": "raw"}}]}, "stop"),
    ([TextPart("x")], "content_filter", {"role": "assistant", "content": "x", "refusal": None}, "content_filter"),
])
def test_replies_encode(parts: list[Any], finish: str, message: dict[str, Any], finish_out: str) -> None:
    resp = ChatResponse(id="r", model="m", parts=parts, finish_reason=finish, usage=Usage(3, 4, 1),  # type: ignore[arg-type]
                        created=9)
    assert openai.encode_response(resp) == {
        "id": "r", "object": "chat.completion", "created": 9, "model": "m",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_out}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7,
                  "prompt_tokens_details": {"cached_tokens": 1}}}


@pytest.mark.parametrize(("body", "param"), [
    ({"choices": "x"}, "choices"),
    ({"choices": ["x"]}, "choices[0]"),
    ({"choices": [{"message": "x"}]}, "choices[0].message"),
    ({"choices": [{"message": {"content": 3}}]}, "choices[0].message.content"),
    ({"choices": [{"message": {"tool_calls": [{"type": "function"}]}}]}, "choices[0].message.tool_calls[0].function"),
    ({"id": 3, "choices": []}, "id"),
    ({"created": "now", "choices": []}, "created"),
])
def test_a_malformed_reply_is_a_backend_error_naming_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(CodecError) as caught:
        openai.decode_response(body)
    assert caught.value.param == param
    assert caught.value.message.startswith(f"backend returned a malformed OpenAI response: {param}: ")


# ---- replies from a provider ----------------------------------------------------------------------

F_CALL = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}


@pytest.mark.parametrize(("message", "finish", "parts", "finish_in"), [
    ({"content": "a", "reasoning": "r"}, "stop", [ThinkingPart("r"), TextPart("a")], "stop"),
    ({"content": "a", "reasoning_content": "r", "reasoning": "s"}, "stop", [ThinkingPart("r"), TextPart("a")], "stop"),
    ({"content": "a", "reasoning_content": "", "reasoning": "s"}, "length", [ThinkingPart("s"), TextPart("a")],
     "length"),
    ({"content": [{"type": "text", "text": ""}, {"type": "refusal", "refusal": "no"}], "reasoning": "r"}, "content_filter",
     [ThinkingPart("r"), TextPart("no")], "content_filter"),
    ({"content": None, "tool_calls": [F_CALL]}, "stop", [CALL], "tool_calls"),
    ({"content": None, "tool_calls": [F_CALL]}, None, [CALL], "tool_calls"),
    ({"content": None, "tool_calls": [F_CALL]}, "bogus", [CALL], "tool_calls"),
    ({"content": None, "tool_calls": [F_CALL]}, "length", [CALL], "length"),
    ({"content": None, "tool_calls": [F_CALL]}, "function_call", [CALL], "tool_calls"),
    ({"content": "a", "reasoning": "r"}, "error", [ThinkingPart("r"), TextPart("a")], "error"),
    ({"content": "a", "reasoning": "r"}, None, [ThinkingPart("r"), TextPart("a")], "stop"),
])
def test_replies_decode(message: dict[str, Any], finish: str | None, parts: list[Any], finish_in: str) -> None:
    body = {"id": "r", "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}]}
    assert openai.decode_response(body) == ChatResponse(id="r", model="", parts=parts, finish_reason=finish_in,  # type: ignore[arg-type]
                                                        usage=Usage(), created=0)


@pytest.mark.parametrize(("body", "param"), [
    ("not an object", "body"),
    ({"choices": [{"message": {"tool_calls": {}}}]}, "choices[0].message.tool_calls"),
])
def test_a_reply_of_the_wrong_shape_is_a_backend_error_naming_the_field(body: Any, param: str) -> None:
    with pytest.raises(CodecError) as caught:
        openai.decode_response(body)
    assert caught.value.param == param
    assert caught.value.message.startswith(f"backend returned a malformed OpenAI response: {param}: expected ")


def test_a_reply_without_a_time_is_stamped_with_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.undo()  # the directory's conftest pins the clock; this test reads the real one
    before = int(time.time())
    body = openai.encode_response(ChatResponse(id="r", model="m", parts=[TextPart("a")], created=0))
    assert before <= body["created"] <= int(time.time())
    assert openai.encode_response(ChatResponse(id="r", model="m", parts=[TextPart("a")], created=5))["created"] == 5


# ---- tool calls in the history and in replies -----------------------------------------------------


def history_calls(*calls: Any) -> list[Any]:
    body = {"model": "m", "messages": [USER, {"role": "assistant", "content": None, "tool_calls": list(calls)}]}
    return openai.decode_request(body).messages[1].parts


@pytest.mark.parametrize(("call", "part"), [
    ({"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}},
     ToolCallPart(id="c", name="f", arguments='{"a":1}')),
    ({"id": "c", "function": {"name": "f", "arguments": "{}"}}, ToolCallPart(id="c", name="f", arguments="{}")),
    ({"id": "c", "type": "function", "function": {"name": "f"}}, ToolCallPart(id="c", name="f", arguments="{}")),
    ({"id": "c", "type": "function", "function": {"name": "f", "arguments": None}},
     ToolCallPart(id="c", name="f", arguments="{}")),
    ({"id": "c", "type": "function", "function": {"name": "f", "arguments": ""}},
     ToolCallPart(id="c", name="f", arguments="{}")),
    ({"id": "c", "type": "function", "function": {"name": "f", "arguments": {"a": [1, "x"]}}},
     ToolCallPart(id="c", name="f", arguments='{"a":[1,"x"]}')),
    ({"id": "", "type": "function", "function": {"name": ""}}, ToolCallPart(id="", name="", arguments="{}")),
    ({"id": "p", "type": "custom", "custom": {"name": "patch", "input": "*** Begin"}},
     ToolCallPart(id="p", name="patch", arguments="*** Begin", custom=True)),
    ({"id": "", "type": "custom", "custom": {"name": "", "input": ""}},
     ToolCallPart(id="", name="", arguments="", custom=True)),
])
def test_tool_calls_decode(call: dict[str, Any], part: ToolCallPart) -> None:
    assert history_calls(call) == [part]
    reply = {"choices": [{"message": {"content": None, "tool_calls": [call]}, "finish_reason": "tool_calls"}]}
    assert openai.decode_response(reply).parts == [part]


TC = "messages[1].tool_calls[0]"


@pytest.mark.parametrize(("call", "param", "says"), [
    ("c", TC, "expected an object, got string"),
    ({"id": "c", "type": 3, "function": {"name": "f"}}, f"{TC}.type", "expected a string, got number"),
    ({"id": "c", "type": "tool", "function": {"name": "f"}}, f"{TC}.type",
     "expected one of function, custom, got 'tool'"),
    ({"type": "function", "function": {"name": "f"}}, f"{TC}.id", "required field is missing"),
    ({"id": 1, "type": "function", "function": {"name": "f"}}, f"{TC}.id", "expected a string, got number"),
    ({"id": "c", "type": "function"}, f"{TC}.function", "required field is missing"),
    ({"id": "c", "type": "function", "function": {}}, f"{TC}.function.name", "required field is missing"),
    ({"id": "c", "type": "custom"}, f"{TC}.custom", "required field is missing"),
    ({"id": "c", "type": "custom", "custom": "x"}, f"{TC}.custom", "expected an object, got string"),
    ({"type": "custom", "custom": {"name": "p", "input": ""}}, f"{TC}.id", "required field is missing"),
    ({"id": "c", "type": "custom", "custom": {"input": ""}}, f"{TC}.custom.name", "required field is missing"),
    ({"id": "c", "type": "custom", "custom": {"name": "p"}}, f"{TC}.custom.input", "required field is missing"),
    ({"id": "c", "type": "custom", "custom": {"name": "p", "input": 1}}, f"{TC}.custom.input",
     "expected a string, got number"),
])
def test_malformed_tool_calls_are_refused_naming_the_field(call: Any, param: str, says: str) -> None:
    err = refused({"model": "m", "messages": [USER, {"role": "assistant", "content": None, "tool_calls": [call]}]})
    assert err.param == param and err.message == f"{param}: {says}"


# ---- messages refused ------------------------------------------------------------------------------


@pytest.mark.parametrize(("message", "param", "says"), [
    ("hi", "messages[1]", "expected an object, got string"),
    ({"content": "x"}, "messages[1].role", "required field is missing"),
    ({"role": 3, "content": "x"}, "messages[1].role", "expected a string, got number"),
    ({"role": "robot", "content": "x"}, "messages[1].role",
     "expected one of system, developer, user, assistant, tool, function, got 'robot'"),
    ({"role": "user"}, "messages[1].content", "required field is missing"),
    ({"role": "user", "content": None}, "messages[1].content", "required field is missing"),
    ({"role": "user", "content": 3}, "messages[1].content", "expected a string, an array of content parts or null"),
    ({"role": "user", "content": ["x"]}, "messages[1].content[0]", "expected an object, got string"),
    ({"role": "user", "content": [{"text": "x"}]}, "messages[1].content[0].type", "required field is missing"),
    ({"role": "user", "content": [{"type": "text"}]}, "messages[1].content[0].text", "required field is missing"),
    ({"role": "user", "content": [{"type": "text", "text": 1}]}, "messages[1].content[0].text",
     "expected a string, got number"),
    ({"role": "system", "content": [{"type": "image_url", "image_url": "https://example.invalid/a.png"}]},
     "messages[1].content[0].type", "expected one of text, got 'image_url'"),
    ({"role": "tool", "content": "r"}, "messages[1].tool_call_id", "required field is missing"),
    ({"role": "function", "content": "r"}, "messages[1].name", "required field is missing"),
    ({"role": "function", "name": "f", "content": 3}, "messages[1].content",
     "expected a string, an array of content parts or null"),
    ({"role": "function", "name": "f", "content": [{"type": "image_url"}]}, "messages[1].content[0].type",
     "expected one of text, got 'image_url'"),
    ({"role": "assistant", "content": None, "function_call": {"arguments": "{}"}}, "messages[1].function_call.name",
     "required field is missing"),
    ({"role": "assistant", "content": None, "tool_calls": {}}, "messages[1].tool_calls", "expected an array, got object"),
])
def test_malformed_messages_are_refused_naming_the_field(message: Any, param: str, says: str) -> None:
    err = refused({"model": "m", "messages": [USER, message]})
    assert err.param == param and err.message == f"{param}: {says}"


# ---- legacy functions --------------------------------------------------------------------------------


def test_legacy_function_calls_and_results_decode_as_tool_calls_and_results() -> None:
    messages = [
        USER,
        {"role": "assistant", "content": None, "function_call": {"name": "get", "arguments": '{"a":1}'}},
        {"role": "assistant", "content": "again", "function_call": {"name": "get"}},
        {"role": "function", "name": "get", "content": "r1"},
        {"role": "function", "name": "get", "content": [{"type": "text", "text": "r2"}]},
        {"role": "assistant", "content": None, "function_call": {"name": "other", "arguments": {"x": 1}}},
        {"role": "function", "name": "get", "content": None},
        {"role": "function", "name": "other", "content": "r3"},
        {"role": "assistant", "content": None, "function_call": {"name": ""}},
        {"role": "function", "name": "", "content": "r4"},
        {"role": "tool", "tool_call_id": "", "content": "r5"},
    ]
    got = openai.decode_request({"model": "m", "messages": messages}).messages
    assert got == [
        Message("user", [TextPart("x")]),
        Message("assistant", [ToolCallPart(id="call_fn1_get", name="get", arguments='{"a":1}')]),
        Message("assistant", [TextPart("again"), ToolCallPart(id="call_fn2_get", name="get", arguments="{}")]),
        Message("tool", [ToolResultPart("call_fn1_get", [TextPart("r1")], name="get")]),  # the oldest call first
        Message("tool", [ToolResultPart("call_fn2_get", [TextPart("r2")], name="get")]),
        Message("assistant", [ToolCallPart(id="call_fn5_other", name="other", arguments='{"x":1}')]),
        Message("tool", [ToolResultPart("call_fn6_get", [], name="get")]),  # nothing left to answer: its own id
        Message("tool", [ToolResultPart("call_fn5_other", [TextPart("r3")], name="other")]),
        Message("assistant", [ToolCallPart(id="call_fn8_", name="", arguments="{}")]),
        Message("tool", [ToolResultPart("call_fn8_", [TextPart("r4")], name="")]),
        Message("tool", [ToolResultPart("", [TextPart("r5")])]),
    ]


def test_an_unanswered_function_result_keeps_its_name() -> None:
    got = openai.decode_request({"model": "m", "messages": [USER, {"role": "function", "name": "f", "content": "r"}]})
    assert got.messages[1] == Message("tool", [ToolResultPart("call_fn1_f", [TextPart("r")], name="f")])


@pytest.mark.parametrize(("legacy", "param", "says"), [
    ("get", "messages[1].function_call", "expected an object, got string"),
    ({"name": 3}, "messages[1].function_call.name", "expected a string, got number"),
])
def test_a_malformed_function_call_is_refused_naming_the_field(legacy: Any, param: str, says: str) -> None:
    err = refused({"model": "m", "messages": [USER, {"role": "assistant", "content": None, "function_call": legacy}]})
    assert err.param == param and err.message == f"{param}: {says}"


@pytest.mark.parametrize("body", ["hi", ["m"], None])
def test_a_body_that_is_not_an_object_is_refused(body: Any) -> None:
    with pytest.raises(CodecError) as caught:
        openai.decode_request(body)
    assert caught.value.param == "body" and caught.value.message.startswith("body: expected an object")


@pytest.mark.parametrize(("fields", "max_tokens", "budget"), [
    ({"max_completion_tokens": 1}, 1, None),
    ({"max_tokens": 1}, 1, None),
    ({"max_completion_tokens": 2, "max_tokens": 1}, 2, None),
    ({"reasoning_effort": "none"}, None, None),
    ({"reasoning_effort": "minimal"}, None, 512),
    ({"reasoning_effort": "low"}, None, 1024),
    ({"reasoning_effort": "medium"}, None, 8192),
    ({"reasoning_effort": "high"}, None, 24576),
    ({"reasoning_effort": "xhigh"}, None, 32768),
    ({"reasoning_effort": "max"}, None, 65536),
])
def test_token_limits_and_reasoning_effort_decode(fields: dict[str, Any], max_tokens: int | None,
                                                  budget: int | None) -> None:
    req = openai.decode_request({"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}],
                                 **fields})
    assert (req.max_tokens, req.thinking_budget) == (max_tokens, budget)
    assert req.messages[0].parts == [TextPart("")]


@pytest.mark.parametrize(("fields", "param", "says"), [
    ({"max_completion_tokens": 0}, "max_completion_tokens", "must be >= 1, got 0"),
    ({"max_tokens": 0}, "max_tokens", "must be >= 1, got 0"),
    ({"max_completion_tokens": "5"}, "max_completion_tokens", "expected an integer, got string"),
    ({"reasoning_effort": "huge"}, "reasoning_effort",
     "expected one of none, minimal, low, medium, high, xhigh, max, got 'huge'"),
    ({"reasoning_effort": 2}, "reasoning_effort", "expected a string, got number"),
])
def test_bad_token_limits_and_reasoning_effort_are_refused(fields: dict[str, Any], param: str, says: str) -> None:
    err = refused({"model": "m", "messages": [USER, {"role": "assistant", "content": [{"type": "text", "text": "a"}]}],
                   **fields})
    assert err.param == param and err.message == f"{param}: {says}"
