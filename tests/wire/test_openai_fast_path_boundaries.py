"""The OpenAI decoders' fast paths at their exact edges, as tables: for each body, whether the
common-shape path takes it (``taken``), and that what the public decoder gives (a value or the
refusal naming a field) is what the general decoder gives. The hypothesis properties of
``test_wire_fast_paths.py`` cover random bodies; these pin each boundary by name."""

from __future__ import annotations

import math
from typing import Any

import pytest

from router.wire import openai
from router.wire.canonical import ChatRequest, ChatResponse, Message, TextPart, Usage
from router.wire.common import MAX_MODEL_CHARS
from router.wire.codec import CodecError

USER = {"role": "user", "content": "hi"}


def outcome(decode: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return ("ok", decode(*args, **kwargs))
    except CodecError as err:
        return ("error", err.param, err.message)


def body_with(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [USER], **fields}


REQUESTS = [
    # (id, body, path model, path stream, fast path taken)
    ("plain", body_with(), None, None, True),
    ("model from the path", {"messages": [USER]}, "p", None, True),
    ("path model wins", body_with(), "p", None, True),
    ("stream from the path", body_with(stream=False), None, True, True),
    ("model at the limit", {"model": "m" * MAX_MODEL_CHARS, "messages": [USER]}, None, None, True),
    ("model over the limit", {"model": "m" * (MAX_MODEL_CHARS + 1), "messages": [USER]}, None, None, False),
    ("empty model", {"model": "", "messages": [USER]}, None, None, False),
    ("model not a string", {"model": 4, "messages": [USER]}, None, None, False),
    ("no messages", {"model": "m", "messages": []}, None, None, False),
    ("messages not a list", {"model": "m", "messages": USER}, None, None, False),
    ("an unknown key", body_with(n=1), None, None, False),
    ("stream_options", body_with(stream=True, stream_options={"include_usage": True}), None, None, True),
    ("a message of one key", {"model": "m", "messages": [{"role": "user"}]}, None, None, False),
    ("a message of three keys", {"model": "m", "messages": [{**USER, "name": "n"}]}, None, None, False),
    ("a message not an object", {"model": "m", "messages": ["hi"]}, None, None, False),
    ("content not a string", {"model": "m", "messages": [{"role": "user", "content": None}]}, None, None, False),
    ("content parts", {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]},
     None, None, False),
    ("assistant text", {"model": "m", "messages": [USER, {"role": "assistant", "content": "yo"}]}, None, None, True),
    ("assistant empty", {"model": "m", "messages": [USER, {"role": "assistant", "content": ""}]}, None, None, True),
    ("system", {"model": "m", "messages": [{"role": "system", "content": "s"}, USER]}, None, None, True),
    ("developer", {"model": "m", "messages": [{"role": "developer", "content": "d"}, USER]}, None, None, True),
    ("tool role", {"model": "m", "messages": [{"role": "tool", "content": "r"}]}, None, None, False),
    ("unknown role", {"model": "m", "messages": [{"role": "robot", "content": "r"}]}, None, None, False),
    ("stream true", body_with(stream=True), None, None, True),
    ("stream null", body_with(stream=None), None, None, True),
    ("stream a string", body_with(stream="yes"), None, None, False),
    ("stream a number", body_with(stream=1), None, None, False),
    ("temperature int", body_with(temperature=1), None, None, True),
    ("temperature float", body_with(temperature=0.5), None, None, True),
    ("temperature null", body_with(temperature=None), None, None, True),
    ("temperature NaN", body_with(temperature=math.nan), None, None, False),
    ("temperature bool", body_with(temperature=True), None, None, False),
    ("temperature string", body_with(temperature="1"), None, None, False),
    ("top_p int", body_with(top_p=1), None, None, True),
    ("top_p NaN", body_with(top_p=math.nan), None, None, False),
    ("top_p string", body_with(top_p="1"), None, None, False),
    ("max_tokens 1", body_with(max_tokens=1), None, None, True),
    ("max_tokens 0", body_with(max_tokens=0), None, None, False),
    ("max_tokens -1", body_with(max_tokens=-1), None, None, False),
    ("max_tokens float", body_with(max_tokens=2.0), None, None, False),
    ("max_tokens null", body_with(max_tokens=None), None, None, True),
    ("max_tokens bool", body_with(max_tokens=True), None, None, False),
    ("not an object", ["m"], None, None, False),
    ("every simple key", body_with(stream=True, stream_options={"include_usage": True}, temperature=1, top_p=1,
                                   max_tokens=3), None, None, True),
    ("general path, model from the path", {"messages": [USER], "n": 1}, "p", None, False),
    ("general path, stream from the path", body_with(n=1, stream=False), None, True, False),
]


@pytest.mark.parametrize(("body", "model", "stream", "taken"), [r[1:] for r in REQUESTS], ids=[r[0] for r in REQUESTS])
def test_request_fast_path_edges(body: Any, model: str | None, stream: bool | None, taken: bool) -> None:
    assert (openai._decode_simple(body, model, stream) is not None) is taken
    assert outcome(openai.decode_request, body, model=model, stream=stream) == \
        outcome(openai._decode_general, body, model, stream)


@pytest.mark.parametrize(("fields", "expected"), [
    ({}, {"temperature": None, "top_p": None, "max_tokens": None, "stream": False}),
    ({"temperature": 1, "top_p": 0, "max_tokens": 7, "stream": True},
     {"temperature": 1.0, "top_p": 0.0, "max_tokens": 7, "stream": True}),
])
def test_request_fast_path_values(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    req = openai.decode_request({"model": "m", "messages": [{"role": "system", "content": "s1"},
                                                            {"role": "developer", "content": "s2"}, USER,
                                                            {"role": "assistant", "content": ""}], **fields})
    assert req == ChatRequest(model="m", messages=[Message("user", [TextPart("hi")]), Message("assistant", [])],
                              system=[TextPart("s1"), TextPart("s2")], stop=[], extra={"openai": {}}, **expected)
    assert type(req.temperature) is (float if "temperature" in fields else type(None))


def reply(message: dict[str, Any] | None = None, **body: Any) -> dict[str, Any]:
    msg = {"role": "assistant", "content": "hi"} if message is None else message
    return {"id": "r", "model": "m", "created": 5, "choices": [{"index": 0, "message": msg, "finish_reason": "stop"}],
            **body}


RESPONSES = [
    # (id, body, fast path taken)
    ("plain", reply(), True),
    ("null content", reply({"role": "assistant", "content": None}), True),
    ("empty content", reply({"role": "assistant", "content": ""}), True),
    ("content parts", reply({"role": "assistant", "content": [{"type": "text", "text": "x"}]}), False),
    ("reasoning_content", reply({"role": "assistant", "content": "a", "reasoning_content": "r"}), False),
    ("reasoning", reply({"role": "assistant", "content": "a", "reasoning": "r"}), False),
    ("empty reasoning", reply({"role": "assistant", "content": "a", "reasoning": ""}), True),
    ("reasoning not a string", reply({"role": "assistant", "content": "a", "reasoning": 3}), True),
    ("refusal", reply({"role": "assistant", "content": None, "refusal": "no"}), False),
    ("empty refusal", reply({"role": "assistant", "content": "a", "refusal": ""}), True),
    ("refusal not a string", reply({"role": "assistant", "content": "a", "refusal": 3}), True),
    ("tool calls", reply({"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}), False),
    ("empty tool calls", reply({"role": "assistant", "content": "a", "tool_calls": []}), True),
    ("tool calls not a list", reply({"role": "assistant", "content": "a", "tool_calls": {}}), False),
    ("id not a string", reply(id=3), False),
    ("no id", {"model": "m", "choices": [{"message": {"content": "a"}}]}, True),
    ("model not a string", reply(model=3), False),
    ("created not an int", reply(created="5"), False),
    ("created a float", reply(created=5.0), False),
    ("no created", {"id": "r", "model": "m", "choices": [{"message": {"content": "a"}}]}, True),
    ("message not an object", {"choices": [{"message": "hi"}]}, False),
    ("no choices", {"id": "r", "choices": []}, False),
    ("choices not a list", {"id": "r", "choices": {}}, False),
    ("choice not an object", {"id": "r", "choices": ["x"]}, False),
    ("not an object", "hi", False),
]


@pytest.mark.parametrize(("body", "taken"), [r[1:] for r in RESPONSES], ids=[r[0] for r in RESPONSES])
def test_response_fast_path_edges(body: Any, taken: bool) -> None:
    assert (openai._decode_simple_response(body) is not None) is taken
    assert outcome(openai.decode_response, body) == outcome(openai._decode_general_response, body)


@pytest.mark.parametrize(("finish", "expected"), [
    ("stop", "stop"), ("length", "length"), ("tool_calls", "tool_calls"), ("function_call", "tool_calls"),
    ("content_filter", "content_filter"), ("error", "error"), (None, "stop"), ("other", "stop"),
])
def test_a_plain_reply_decodes_to_its_values(finish: str | None, expected: str) -> None:
    body = {"id": "r", "model": "m", "created": 5, "choices": [{"message": {"content": "hi"}, "finish_reason": finish}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "prompt_tokens_details": {"cached_tokens": 2}}}
    assert openai.decode_response(body) == ChatResponse(id="r", model="m", parts=[TextPart("hi")],
                                                        finish_reason=expected, usage=Usage(3, 4, 2), created=5)
    bare = openai.decode_response({"choices": [{"message": {"content": None}, "finish_reason": finish}]})
    assert bare == ChatResponse(id="", model="", parts=[], finish_reason=expected, usage=Usage(), created=0)


def test_the_general_path_takes_model_and_stream_from_the_path() -> None:
    req = openai.decode_request({"messages": [USER], "n": 2, "stream": False}, model="p", stream=True)
    assert (req.model, req.stream, req.extra) == ("p", True, {"openai": {"n": 2}})


class _Text(str):
    """A ``str`` subclass, as a Python caller may build a body with (JSON parsing gives none)."""


@pytest.mark.parametrize("role", ["system", "user", "assistant", "tool"])
def test_content_of_a_str_subclass_is_one_text_part_as_a_string_is(role: str) -> None:
    def body(content: str) -> dict[str, Any]:
        message: dict[str, Any] = {"role": role, "content": content}
        if role == "tool":
            message["tool_call_id"] = "call_1"
        return body_with(messages=[message])

    assert openai.decode_request(body(_Text("hi"))) == openai.decode_request(body("hi"))
    assert openai.decode_response({"choices": [{"message": {"content": _Text("hi")}}]}).parts == [TextPart("hi")]
