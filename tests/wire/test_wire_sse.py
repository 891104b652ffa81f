"""SSE framing and the incremental parser (frames split anywhere, CRLF, multi-line data, comments)."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from router.canonical import StreamEnd, StreamStart, TextDelta
from router.wire.sse import SSEParser, frame, parse_all
from wire_support import FORMATS, encode_stream

BODY = (b": keep-alive comment\r\n"
        b"event: message_start\r\ndata: {\"a\": 1}\r\n\r\n"
        b"data: line one\ndata: line two\n\n"
        b"id: 7\nretry: 100\ndata:no-space\n\n"
        b"event: lonely\n\n"  # no data: not reported
        b"data: \xc3\xa9t\xc3\xa9 \xe2\x9c\x93\r\r"  # lone-CR line endings, multi-byte UTF-8
        b"data: [DONE]\n\n")
EXPECTED = [("message_start", '{"a": 1}'), (None, "line one\nline two"), (None, "no-space"),
            (None, "été ✓"), (None, "[DONE]")]


def test_frame_shapes() -> None:
    assert frame({"x": "é"}) == 'data: {"x":"é"}\n\n'.encode()
    assert frame({"type": "ping"}, event="ping") == b'event: ping\ndata: {"type":"ping"}\n\n'
    assert frame("[DONE]") == b"data: [DONE]\n\n"
    assert frame("a\nb") == b"data: a\ndata: b\n\n"


def test_parse_whole_body() -> None:
    assert parse_all(BODY) == EXPECTED


def test_every_single_byte_split() -> None:
    parser = SSEParser()
    out = []
    for i in range(len(BODY)):
        out += parser.feed(BODY[i:i + 1])
    assert out + parser.close() == EXPECTED


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, len(BODY)), max_size=12))
def test_random_splits(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    pieces = [BODY[a:b] for a, b in zip([0] + points, points + [len(BODY)])]
    parser = SSEParser()
    out = []
    for piece in pieces:
        out += parser.feed(piece)
    assert out + parser.close() == EXPECTED


def test_unterminated_last_frame_is_flushed_on_close() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: {}\n\ndata: tail") == [(None, "{}")]
    assert parser.close() == [(None, "tail")]


def test_encoders_emit_parseable_frames() -> None:
    events = [StreamStart("id-1", "m"), TextDelta("a\nb"), StreamEnd()]
    for name in FORMATS:
        payload = encode_stream(name, events)
        for event, data in parse_all(payload):
            if data != "[DONE]":
                body = json.loads(data)
                if name == "anthropic":
                    assert event == body["type"]
                else:
                    assert event is None
