"""The OpenAI codec's rarer fields: assistant ``refusal`` parts, streamed ``reasoning_content``,
``tool_choice`` in each accepted and refused shape, and which kind an upstream error is given by
its ``code`` and ``type``."""

from __future__ import annotations

import pytest

from router.wire import openai
from router.wire.canonical import (
    StreamEnd, StreamError, StreamStart, TextDelta, TextPart, ThinkingDelta, ThinkingPart, ToolCallDelta,
    ToolCallStart, ToolChoice,
)
from router.wire.codec import CodecError


def request_with(**fields: object) -> dict:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}


# ---- refusal parts --------------------------------------------------------------------------------


def test_an_assistant_refusal_part_is_text_of_the_conversation() -> None:
    req = openai.decode_request(request_with(messages=[
        {"role": "user", "content": "do it"},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "I can't help with that."},
                                          {"type": "text", "text": "Anything else?"}]},
        {"role": "user", "content": "ok"},
    ]))
    assistant = req.messages[1]
    assert assistant.role == "assistant"
    assert [p.text for p in assistant.parts] == ["I can't help with that.", "Anything else?"]
    empty = openai.decode_request(request_with(messages=[
        {"role": "assistant", "content": [{"type": "refusal", "refusal": ""}, {"type": "text", "text": "a"}]}]))
    assert empty.messages[0].parts == [TextPart("a")]  # an empty refusal is no part, as empty text is none


@pytest.mark.parametrize(("message", "param"), [
    ({"role": "user", "content": [{"type": "refusal", "refusal": "no"}]}, "messages[0].content[0].type"),
    ({"role": "assistant", "content": [{"type": "refusal"}]}, "messages[0].content[0].refusal"),
    ({"role": "assistant", "content": [{"type": "refusal", "refusal": 3}]}, "messages[0].content[0].refusal"),
])
def test_refusal_parts_are_checked(message: dict, param: str) -> None:
    with pytest.raises(CodecError) as caught:
        openai.decode_request(request_with(messages=[message]))
    assert caught.value.param == param


def test_a_reply_with_a_refusal_is_text_after_the_content() -> None:
    resp = openai.decode_response({"id": "r", "model": "m", "choices": [{"index": 0, "finish_reason": "stop",
        "message": {"role": "assistant", "content": None, "refusal": "I can't help with that."}}]})
    assert [type(p) for p in resp.parts] == [TextPart]
    assert resp.text() == "I can't help with that."
    resp = openai.decode_response({"id": "r", "model": "m", "choices": [{"index": 0, "finish_reason": "stop",
        "message": {"role": "assistant", "content": "Sorry.", "refusal": "Not that.", "reasoning_content": "hm"}}]})
    assert [(type(p), getattr(p, "text", None)) for p in resp.parts] == [
        (ThinkingPart, "hm"), (TextPart, "Sorry."), (TextPart, "Not that.")]
    resp = openai.decode_response({"id": "r", "model": "m", "choices": [{"index": 0, "finish_reason": "stop",
        "message": {"role": "assistant", "content": "Fine.", "refusal": ""}}]})
    assert resp.text() == "Fine." and len(resp.parts) == 1


# ---- streamed reasoning -------------------------------------------------------------------------


def chunk(delta: dict, finish: str | None = None) -> dict:
    return {"id": "c1", "model": "m", "created": 7, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_streamed_reasoning_becomes_thinking_before_the_text_of_its_chunk(field: str) -> None:
    d = openai.StreamDecoder()
    events = d.feed(chunk({"role": "assistant", field: "Let me think. "}))
    events += d.feed(chunk({field: "Done.", "content": "Answer"}))
    events += d.feed(chunk({field: "", "content": " here"}))
    events += d.feed(chunk({}, "stop"))
    events += d.finish()
    assert events == [StreamStart("c1", "m", 7), ThinkingDelta("Let me think. "), ThinkingDelta("Done."),
                      TextDelta("Answer"), TextDelta(" here"), StreamEnd("stop", None)]


def test_reasoning_content_is_preferred_to_reasoning_and_non_strings_are_ignored() -> None:
    d = openai.StreamDecoder()
    events = d.feed(chunk({"reasoning_content": "a", "reasoning": "b"}))
    events += d.feed(chunk({"reasoning_content": None, "reasoning": "c"}))
    events += d.feed(chunk({"reasoning_content": {"x": 1}, "content": 5}))
    assert [e for e in events if not isinstance(e, StreamStart)] == [ThinkingDelta("a"), ThinkingDelta("c")]


def test_stream_tool_calls_get_indexes_and_the_finish_says_tool_calls() -> None:
    d = openai.StreamDecoder()
    events = d.feed(chunk({"tool_calls": [{"index": 0, "id": "call_a", "function": {"name": "f", "arguments": ""}}]}))
    events += d.feed(chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"x":1}'}}]}))
    events += d.feed(chunk({"tool_calls": [{"id": "call_b", "function": {"name": "g", "arguments": "{}"}}]}))
    events += d.feed(chunk({}, "stop"))
    events += d.finish()
    assert events[1:] == [ToolCallStart(0, "call_a", "f"), ToolCallDelta(0, '{"x":1}'), ToolCallStart(1, "call_b", "g"),
                          ToolCallDelta(1, "{}"), StreamEnd("tool_calls", None)]
    assert d.finish() == [] and d.feed(chunk({"content": "late"})) == []


# ---- tool_choice --------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "choice"), [
    (None, None),
    ("auto", ToolChoice("auto")),
    ("none", ToolChoice("none")),
    ("required", ToolChoice("required")),
    ({"type": "function", "function": {"name": "f"}}, ToolChoice("required", "f")),
])
def test_tool_choice_accepted(raw: object, choice: ToolChoice | None) -> None:
    body = request_with(tools=[{"type": "function", "function": {"name": "f"}}])
    if raw is not None:
        body["tool_choice"] = raw
    assert openai.decode_request(body).tool_choice == choice


@pytest.mark.parametrize(("raw", "param"), [
    ("sometimes", "tool_choice"),
    ("", "tool_choice"),
    (3, "tool_choice"),
    ([], "tool_choice"),
    ({}, "tool_choice.type"),
    ({"type": "tool", "function": {"name": "f"}}, "tool_choice.type"),
    ({"type": "function"}, "tool_choice.function"),
    ({"type": "function", "function": "f"}, "tool_choice.function"),
    ({"type": "function", "function": {}}, "tool_choice.function.name"),
    ({"type": "function", "function": {"name": 1}}, "tool_choice.function.name"),
])
def test_malformed_tool_choice_is_refused_naming_the_field(raw: object, param: str) -> None:
    body = request_with(tools=[{"type": "function", "function": {"name": "f"}}], tool_choice=raw)
    with pytest.raises(CodecError) as caught:
        openai.decode_request(body)
    assert caught.value.param == param


# ---- upstream errors ----------------------------------------------------------------------------


ERRORS = [
    # (error object in the stream, kind given to it)
    ({"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}, "rate_limit"),
    ({"message": "slow down", "type": "rate_limit_error", "code": None}, "rate_limit"),
    ({"message": "bad key", "type": "invalid_request_error", "code": "invalid_api_key"}, "authentication"),
    ({"message": "no model", "type": "invalid_request_error", "code": "not_found"}, "not_found"),
    ({"message": "busy", "type": "server_error", "code": "overloaded"}, "overloaded"),
    ({"message": "late", "type": "server_error", "code": "timeout"}, "timeout"),
    ({"message": "big", "type": "invalid_request_error", "code": "request_too_large"}, "request_too_large"),
    ({"message": "bad", "type": "invalid_request_error", "code": "something_else"}, "invalid_request"),
    ({"message": "bad", "type": "invalid_request_error"}, "invalid_request"),
    ({"message": "odd", "type": "server_error"}, "api_error"),
    ({"message": "odd", "type": "permission_error"}, "api_error"),
    ({"message": "odd"}, "api_error"),
    ({"message": "odd", "code": 429}, "api_error"),  # a number is not one of the codes
]


@pytest.mark.parametrize(("error", "kind"), ERRORS, ids=[f"{e.get('type')}-{e.get('code')}" for e, _ in ERRORS])
def test_a_stream_error_gets_its_kind_from_code_then_type(error: dict, kind: str) -> None:
    d = openai.StreamDecoder()
    assert d.feed({"error": error}) == [StreamError(error["message"], kind)]
    assert d.feed(chunk({"content": "after"})) == [] and d.finish() == []


def test_a_stream_error_that_is_not_an_object_is_an_api_error_with_its_text() -> None:
    d = openai.StreamDecoder()
    assert d.feed({"error": "upstream exploded"}) == [StreamError("upstream exploded", "api_error")]
    d = openai.StreamDecoder()
    assert d.feed({"error": {"type": "rate_limit_error"}}) == [StreamError("backend error", "rate_limit")]


@pytest.mark.parametrize(("kind", "type_", "code"), [
    ("invalid_request", "invalid_request_error", None),
    ("authentication", "invalid_request_error", "invalid_api_key"),
    ("permission", "permission_error", None),
    ("not_found", "invalid_request_error", "not_found"),
    ("rate_limit", "rate_limit_error", "rate_limit_exceeded"),
    ("overloaded", "server_error", "overloaded"),
    ("timeout", "server_error", "timeout"),
    ("request_too_large", "invalid_request_error", "request_too_large"),
    ("api_error", "server_error", None),
    ("something_new", "server_error", None),
])
def test_errors_are_encoded_with_openai_type_and_code(kind: str, type_: str, code: str | None) -> None:
    from router.wire.codec import WireError

    body = openai.encode_error(WireError(400, "msg", kind, "messages"))
    assert body == {"error": {"message": "msg", "type": type_, "param": "messages", "code": code}}
