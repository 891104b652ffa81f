"""OpenAI streams both ways, event by event: the ``chat.completion.chunk`` frames each canonical event
becomes (with and without ``stream_options.include_usage``), and the events each backend chunk
gives, including tool calls without an index, custom calls, usage after the finish, and errors."""

from __future__ import annotations

import json
from typing import Any

import pytest

from router.wire import openai
from router.wire.canonical import (
    StreamEnd, StreamError, StreamStart, TextDelta, ThinkingDelta, ToolCallDelta, ToolCallStart, Usage,
)
from router.wire.codec import CodecError


def frames(payload: bytes) -> list[Any]:
    """The data of each SSE frame: parsed JSON, or the raw text (``[DONE]``)."""
    out: list[Any] = []
    for block in payload.decode().split("\n\n"):
        if block:
            assert block.startswith("data: ") and "\n" not in block
            data = block[len("data: "):]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def chunk(delta: dict[str, Any], finish: str | None = None, usage: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"id": "c1", "object": "chat.completion.chunk", "created": 7, "model": "m",
                           "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
    if usage:
        out["usage"] = None
    return out


# ---- encoding ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("include_usage", [True, False])
def test_a_stream_encodes_chunk_by_chunk(include_usage: bool) -> None:
    enc = openai.StreamEncoder(include_usage=include_usage)
    events = [StreamStart("c1", "m", 7), ThinkingDelta("hm"), TextDelta(""), TextDelta("Hi"),
              ToolCallStart(0, "call_a", "f"), ToolCallDelta(0, ""), ToolCallDelta(0, '{"x":1}'),
              ToolCallStart(1, "call_b", "patch", custom=True), ToolCallDelta(1, "*** Begin"),
              StreamEnd("tool_calls", Usage(3, 4, 2))]
    out = [frames(enc.encode(e)) for e in events]
    u = include_usage
    assert out == [
        [chunk({"role": "assistant", "content": ""}, usage=u)], [chunk({"reasoning_content": "hm"}, usage=u)], [],
        [chunk({"content": "Hi"}, usage=u)],
        [chunk({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                                "function": {"name": "f", "arguments": ""}}]}, usage=u)],
        [],
        [chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"x":1}'}}]}, usage=u)],
        [chunk({"tool_calls": [{"index": 1, "id": "call_b", "type": "custom",
                                "custom": {"name": "patch", "input": ""}}]}, usage=u)],
        [chunk({"tool_calls": [{"index": 1, "custom": {"input": "*** Begin"}}]}, usage=u)],
        [chunk({}, "tool_calls", usage=u)]
        + ([{"id": "c1", "object": "chat.completion.chunk", "created": 7, "model": "m", "choices": [],
             "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7,
                       "prompt_tokens_details": {"cached_tokens": 2}}}] if u else [])
        + ["[DONE]"],
    ]


@pytest.mark.parametrize(("finish", "sent"), [
    ("stop", "stop"), ("length", "length"), ("tool_calls", "tool_calls"), ("content_filter", "content_filter"),
    ("error", "stop"), ("loop", "stop"),
])
def test_a_stream_end_without_usage_has_no_usage_chunk(finish: str, sent: str) -> None:
    enc = openai.StreamEncoder()
    enc.encode(StreamStart("c1", "m", 7))
    assert frames(enc.encode(StreamEnd(finish, None))) == [chunk({}, sent), "[DONE]"]  # type: ignore[arg-type]


def test_chunks_before_any_start_have_an_id_no_model_and_no_time() -> None:
    (early,) = frames(openai.StreamEncoder(include_usage=False).encode(ToolCallStart(0, "k", "f")))
    assert early["id"].startswith("chatcmpl-") and early["model"] == "" and early["created"] == 0


def test_a_start_without_id_or_time_keeps_a_generated_id_and_takes_the_clock() -> None:
    enc = openai.StreamEncoder(include_usage=False)
    (first,) = frames(enc.encode(StreamStart("", "m")))
    assert first["id"].startswith("chatcmpl-") and len(first["id"]) > len("chatcmpl-")
    assert first["created"] == 1_700_000_000  # the clock, pinned by conftest
    (text,) = frames(enc.encode(TextDelta("a")))
    assert text["id"] == first["id"] and text["created"] == 1_700_000_000


@pytest.mark.parametrize(("before", "id_"), [
    ([StreamStart("c1", "m", 7)], "c1"),  # a second start without an id: the first start's id
    ([ToolCallStart(0, "k", "f")], None),  # a start after an early chunk: that chunk's generated id
    ([], None),  # no id yet: one generated at the start
])
def test_a_start_without_an_id_keeps_the_id_the_stream_already_has(before: list[Any], id_: str | None) -> None:
    enc = openai.StreamEncoder(include_usage=False)
    earlier = [f["id"] for e in before for f in frames(enc.encode(e))]
    (start,) = frames(enc.encode(StreamStart("", "m", 7)))
    (text,) = frames(enc.encode(TextDelta("a")))
    expected = id_ or (earlier[0] if earlier else start["id"])
    assert start["id"] == text["id"] == expected and expected.startswith(id_ or "chatcmpl-")


@pytest.mark.parametrize(("kind", "type_", "code"), [
    ("rate_limit", "rate_limit_error", "rate_limit_exceeded"),
    ("overloaded", "server_error", "overloaded"),
    ("api_error", "server_error", None),
])
def test_a_stream_error_is_an_error_object_then_done(kind: str, type_: str, code: str | None) -> None:
    enc = openai.StreamEncoder()
    enc.encode(StreamStart("c1", "m", 7))
    assert frames(enc.encode(StreamError("upstream failed", kind))) == [
        {"error": {"message": "upstream failed", "type": type_, "param": None, "code": code}}, "[DONE]"]


# ---- decoding ---------------------------------------------------------------------------------------


def backend(delta: dict[str, Any] | None = None, finish: str | None = None, **fields: Any) -> dict[str, Any]:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {"id": "c1", "model": "m", "created": 7, "choices": choices, **fields}


def decode(*chunks: Any, done: bool = True) -> list[Any]:
    d = openai.StreamDecoder()
    events = [e for c in chunks for e in d.feed(c)]
    return events + (d.finish() if done else [])


START = StreamStart("c1", "m", 7)


@pytest.mark.parametrize(("chunks", "events"), [
    ([], [StreamStart("", ""), StreamEnd("stop", None)]),
    (["not an object", 3], [StreamStart("", ""), StreamEnd("stop", None)]),
    ([backend({"content": "a"}), backend({}, "length")], [START, TextDelta("a"), StreamEnd("length", None)]),
    ([backend({}, "function_call")], [START, StreamEnd("tool_calls", None)]),
    ([backend({}, "odd")], [START, StreamEnd("stop", None)]),
    ([{"choices": [{"delta": {"content": "a"}}], "created": 7.0}], [StreamStart("", "", 7), TextDelta("a"),
                                                                    StreamEnd("stop", None)]),
    ([{"id": None, "model": None, "created": "7", "choices": []}], [StreamStart("", "", 0), StreamEnd("stop", None)]),
    ([backend({"content": ""}), backend({"content": None}), backend("delta?")], [START, StreamEnd("stop", None)]),
    ([{"id": "c1", "model": "m", "created": 7, "choices": ["x"]}], [START, StreamEnd("stop", None)]),
    ([backend({"tool_calls": {"index": 0}})], [START, StreamEnd("stop", None)]),
    ([backend({"tool_calls": ["x", {"index": 0, "id": "k", "function": {"name": "f"}}]})],
     [START, ToolCallStart(0, "k", "f"), StreamEnd("tool_calls", None)]),
    ([backend({"tool_calls": [{"index": 0, "id": "k", "function": "f"}]})],
     [START, ToolCallStart(0, "k", ""), StreamEnd("tool_calls", None)]),
    ([backend({"tool_calls": [{"id": "a", "function": {"name": "f"}}, {"id": "b", "function": {"name": "g"}}]})],
     [START, ToolCallStart(0, "a", "f"), ToolCallStart(1, "b", "g"), StreamEnd("tool_calls", None)]),
    ([backend({"tool_calls": [{"index": 3, "id": "a", "function": {"name": "f", "arguments": "{}"}}]}),
      backend({"tool_calls": [{"index": 3, "function": {"arguments": ""}}]}), backend({}, "tool_calls")],
     [START, ToolCallStart(3, "a", "f"), ToolCallDelta(3, "{}"), StreamEnd("tool_calls", None)]),
    ([backend({"tool_calls": [{"index": 0, "id": "p", "type": "custom", "custom": {"name": "patch", "input": "x"}}]}),
      backend({"tool_calls": [{"index": 0, "custom": {"input": "y"}}]})],
     [START, ToolCallStart(0, "p", "patch", custom=True), ToolCallDelta(0, "x"), ToolCallDelta(0, "y"),
      StreamEnd("tool_calls", None)]),
])
def test_backend_chunks_decode(chunks: list[Any], events: list[Any]) -> None:
    assert decode(*chunks) == events


def test_a_call_without_an_id_gets_one() -> None:
    events = decode(backend({"tool_calls": [{"index": 0, "function": {"name": "f"}}]}))
    assert isinstance(events[1], ToolCallStart) and events[1].id.startswith("call_") and len(events[1].id) > 5


def test_usage_after_the_finish_ends_the_stream_at_once() -> None:
    d = openai.StreamDecoder()
    assert d.feed(backend({"content": "a"})) == [START, TextDelta("a")]
    assert d.feed(backend({}, "stop")) == []
    usage = {"prompt_tokens": 3, "completion_tokens": 4, "prompt_tokens_details": {"cached_tokens": 1}}
    assert d.feed(backend(usage=usage)) == [StreamEnd("stop", Usage(3, 4, 1))]
    assert d.finish() == [] and d.feed(backend({"content": "late"})) == []


def test_usage_before_the_finish_waits_for_done() -> None:
    d = openai.StreamDecoder()
    assert d.feed(backend({"content": "a"}, usage={"prompt_tokens": 2})) == [START, TextDelta("a")]
    assert d.feed(backend({}, "length")) == []
    assert d.finish() == [StreamEnd("length", Usage(2, 0, 0))]


@pytest.mark.parametrize(("usage", "expected"), [
    (None, None),
    ("lots", None),
    ({}, Usage(0, 0, 0)),
    ({"prompt_tokens": 5, "completion_tokens": 6}, Usage(5, 6, 0)),
    ({"prompt_tokens": 5, "prompt_tokens_details": None}, Usage(5, 0, 0)),
    ({"prompt_tokens": 5, "prompt_tokens_details": {"cached_tokens": 4}}, Usage(5, 0, 4)),
    ({"prompt_tokens": 5, "prompt_tokens_details": [4]}, Usage(5, 0, 0)),
])
def test_usage_decodes(usage: Any, expected: Usage | None) -> None:
    assert openai.decode_usage(usage) == expected


def test_an_error_beside_choices_is_not_a_stream_error() -> None:
    events = decode(backend({"content": "a"}, error={"message": "ignored"}))
    assert events == [START, TextDelta("a"), StreamEnd("stop", None)]
    events = decode({"error": {"message": "bad", "type": "server_error"}, "choices": []})
    assert events == [StreamError("bad", "api_error")]


@pytest.mark.parametrize(("body", "param"), [
    ({"stream_options": "yes"}, "stream_options"),
    ({"stream_options": {"include_usage": "yes"}}, "stream_options"),
    ({"stream_options": {"include_usage": 1}}, "stream_options"),
])
def test_bad_stream_options_are_refused(body: dict[str, Any], param: str) -> None:
    with pytest.raises(CodecError) as caught:
        openai.encoder_options(body)
    assert caught.value.param == param


def test_stream_options_of_a_body_that_is_not_an_object_are_the_default() -> None:
    assert openai.encoder_options(["x"]) == {"include_usage": False}


@pytest.mark.parametrize(("finish", "expected"), [("odd", "stop"), ("content_filter", "content_filter")])
def test_usage_after_any_finish_ends_the_stream(finish: str, expected: str) -> None:
    d = openai.StreamDecoder()
    assert d.feed(backend({}, finish)) == [START]
    assert d.feed(backend(usage={"prompt_tokens": 1})) == [StreamEnd(expected, Usage(1, 0, 0))]  # type: ignore[arg-type]
