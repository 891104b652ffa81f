"""Round trips: a reply the proxy encodes in format F must decode (with F's decoder) to the same
canonical reply, modulo what F cannot carry (see ``wire_support.normalize``); same for streams."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.wire.canonical import (
    ChatResponse, ImagePart, TextPart, ThinkingPart, ToolCallPart, Usage, response_to_events,
)
from wire_support import FORMATS, accumulate, decode_stream, encode_stream, normalize, sse_items

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def _resp(parts, finish="stop", usage=None, **kw) -> ChatResponse:
    return ChatResponse(id=kw.get("id", "resp-1"), model="m-1", parts=parts, finish_reason=finish,
                        usage=usage or Usage(12, 5, 0), created=kw.get("created", 1_700_000_123))


TABLE = {
    "text": _resp([TextPart("Hello, world")]),
    "unicode": _resp([TextPart("héllo ✓ 日本 \n\n\"quoted\" </script>")]),
    "empty": _resp([]),
    "length": _resp([TextPart("cut")], "length"),
    "content_filter": _resp([], "content_filter"),
    "loop": _resp([TextPart("again again")], "loop"),
    "error": _resp([TextPart("partial")], "error"),
    "cached_usage": _resp([TextPart("x")], usage=Usage(1000, 7, 900)),
    "thinking_signed": _resp([ThinkingPart("Let me think", "sig=="), TextPart("Answer")]),
    "thinking_alone": _resp([ThinkingPart("only thoughts", "s1")]),
    "tool_call": _resp([TextPart("Reading"), ToolCallPart("call_1", "read", '{"path": "a.txt"}')], "tool_calls"),
    "parallel_calls": _resp([ToolCallPart("c1", "read", '{"p":1}'), ToolCallPart("c2", "list", "{}")], "tool_calls"),
    "call_with_signature": _resp([ThinkingPart("plan", "sig-f"), ToolCallPart("c9", "glob", '{"pattern":"*"}')],
                                 "tool_calls"),
    "nested_args": _resp([ToolCallPart("c3", "edit", json.dumps({"a": [1, {"b": None}], "s": "x\ny"}))], "tool_calls"),
    "image": _resp([TextPart("see"), ImagePart(data=PNG, media_type="image/png")]),
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", TABLE)
def test_response_round_trip(fmt: str, name: str) -> None:
    module, resp = FORMATS[fmt], TABLE[name]
    assert normalize(module.decode_response(module.encode_response(resp)), fmt) == normalize(resp, fmt)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", TABLE)
def test_stream_round_trip(fmt: str, name: str) -> None:
    resp = TABLE[name]
    events = response_to_events(resp)
    decoded = decode_stream(fmt, sse_items(encode_stream(fmt, events)))
    assert type(decoded[0]).__name__ == "StreamStart" and type(decoded[-1]).__name__ == "StreamEnd"
    expected = normalize(accumulate(events), fmt)
    expected.parts = [p for p in expected.parts if not isinstance(p, ImagePart)]  # no image stream event
    assert normalize(accumulate(decoded), fmt) == expected


_text = st.text(min_size=1, max_size=30)
_json = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=10),
                     lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                     max_leaves=8)
_call = st.builds(lambda i, n, a: ToolCallPart(f"call_{i}", n, json.dumps(a)), st.integers(0, 10**6),
                  st.from_regex(r"[a-z_]{1,12}", fullmatch=True), st.dictionaries(st.text(max_size=6), _json, max_size=3))
_body = st.lists(st.one_of(st.builds(TextPart, _text), _call), max_size=4)
_thinking = st.one_of(st.none(), st.builds(ThinkingPart, _text, st.one_of(st.none(), _text)))


@st.composite
def responses(draw) -> ChatResponse:
    thinking, body = draw(_thinking), draw(_body)
    ids = [p.id for p in body if isinstance(p, ToolCallPart)]
    if len(set(ids)) != len(ids):
        body = [p for p in body if not isinstance(p, ToolCallPart)]
    usage = draw(st.builds(lambda p, c, k: Usage(p + k, c, k), *(st.integers(0, 10**6),) * 3))
    finish = draw(st.sampled_from(["stop", "length", "tool_calls", "content_filter", "error", "loop"]))
    return _resp(([thinking] if thinking else []) + body, finish, usage, id=draw(st.from_regex(r"[a-z0-9_-]{1,20}", fullmatch=True)))


@settings(max_examples=150, deadline=None)
@given(responses(), st.sampled_from(list(FORMATS)))
def test_round_trip_property(resp: ChatResponse, fmt: str) -> None:
    module = FORMATS[fmt]
    assert normalize(module.decode_response(module.encode_response(resp)), fmt) == normalize(resp, fmt)
    events = response_to_events(resp)
    decoded = decode_stream(fmt, sse_items(encode_stream(fmt, events)))
    assert normalize(accumulate(decoded), fmt) == normalize(accumulate(events), fmt)
