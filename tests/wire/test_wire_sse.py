"""SSE framing and the incremental parser (frames split anywhere, CRLF, multi-line data, comments)."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.wire.canonical import StreamEnd, StreamStart, TextDelta
from router.wire.sse import DEFAULT_MAX_LINE, LineTooLong, SSEParser, event_end, frame, parse_all
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


@pytest.mark.parametrize("eol", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_event_end_is_just_past_the_next_blank_line(eol: str) -> None:
    first, second = f"event: a{eol}data: 1{eol}{eol}".encode(), f"data: 2{eol}{eol}".encode()
    chunk = first + second + b"data: 3"
    assert event_end(chunk) == len(first)
    assert event_end(chunk, len(first)) == len(first) + len(second)
    assert event_end(chunk, len(first) + len(second)) == len(chunk)  # no event ends in the rest
    pieces, start = [], 0
    while start < len(chunk):
        end = event_end(chunk, start)
        pieces.append(chunk[start:end])
        start = end
    parser = SSEParser()
    assert [f for piece in pieces for f in parser.feed(piece)] == SSEParser().feed(chunk)


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
                if name in ("anthropic", "responses"):  # both name each event
                    assert event == body["type"]
                else:
                    assert event is None


# ---- bounded buffering -------------------------------------------------------------------------


def test_a_line_that_never_ends_is_refused_at_the_limit() -> None:
    """The issue's repro: an upstream with no line breaks grew the buffer to ~690 MB."""
    parser = SSEParser(max_line=1000)
    assert parser.feed(b"data: {}\n\n" + b"x" * 500) == [(None, "{}")]
    parser.feed(b"x" * 500)  # 1000 bytes pending: at the limit, still fine
    with pytest.raises(LineTooLong) as caught:
        parser.feed(b"x")
    assert caught.value.limit == 1000 and "1000 bytes" in str(caught.value)


def test_a_long_line_in_one_chunk_is_refused_too() -> None:
    with pytest.raises(LineTooLong):
        SSEParser(max_line=1000).feed(b"data: " + b"y" * 2000)


def test_many_data_lines_of_one_event_are_bounded_together() -> None:
    parser = SSEParser(max_line=1000)
    with pytest.raises(LineTooLong):
        parser.feed(b"data: " + b"z" * 100 + b"\n" * 1 + (b"data: " + b"z" * 100 + b"\n") * 10)


def test_lines_up_to_the_limit_are_parsed_whatever_the_chunking() -> None:
    payload = "p" * (1000 - len("data: "))
    body = f"data: {payload}\n\n".encode()
    for size in (1, 7, 999, len(body)):
        parser = SSEParser(max_line=1000)
        out = []
        for start in range(0, len(body), size):
            out += parser.feed(body[start:start + size])
        assert out == [(None, payload)]


def test_the_default_limit_and_no_limit() -> None:
    assert SSEParser().max_line == DEFAULT_MAX_LINE == 1024 * 1024
    unlimited = SSEParser(max_line=None)
    unlimited.feed(b"data: " + b"u" * (2 * DEFAULT_MAX_LINE))
    assert unlimited.close() == [(None, "u" * (2 * DEFAULT_MAX_LINE))]


def test_a_long_line_in_small_chunks_is_buffered_in_linear_time() -> None:
    """A partial line grows by appending: copying it whole per chunk was quadratic."""
    parser = SSEParser(max_line=None)
    chunk = b"w" * 64
    started = time.perf_counter()
    for _ in range(32_000):  # 2 MB in 64-byte chunks: ~33 GB of copying when quadratic
        parser.feed(chunk)
    assert time.perf_counter() - started < 2.0
    assert parser.feed(b"\n\n") == [] and parser.close() == []  # "www..." is not a field: no frame


LF_LINES = st.lists(st.one_of(
    st.just(b""), st.just(b": ping"), st.just(b"event: delta"), st.just(b"id: 3"),
    st.text(max_size=6).map(lambda t: b"data: " + t.encode("utf-8")),
    # the fast path's own reading of ``data: `` and ``event: `` lines, against the general one:
    # bytes that are not UTF-8 after the prefix, no space or two after the colon, a bare field
    st.sampled_from([b"data: ", b"event: ", b"data:", b"event:", b"data:x", b"event:x", b"data:  x",
                     b"event:  x", b"data", b"event", b"Data: x"]).flatmap(
        lambda prefix: st.binary(max_size=6).filter(lambda b: b"\n" not in b and b"\r" not in b).map(
            lambda rest: prefix + rest)),
    st.binary(max_size=6).filter(lambda b: b"\n" not in b and b"\r" not in b)), max_size=14)


class _GeneralOnly(SSEParser):
    """The parser without its fast path for chunks of ``\\n`` lines (``_feed_lf``)."""

    def feed(self, chunk: bytes) -> list[tuple[str | None, str]]:
        return self._feed_any(chunk)


@settings(max_examples=300, deadline=None)
@given(lines=LF_LINES, cuts=st.lists(st.integers(0, 200), max_size=8), max_line=st.sampled_from([None, 8, 1024]))
def test_the_lf_fast_path_parses_as_the_general_loop(lines: list[bytes], cuts: list[int], max_line: int | None) -> None:
    body = b"\n".join(lines) + b"\n"
    points = sorted({c for c in cuts if c <= len(body)})
    pieces = [body[a:b] for a, b in zip([0] + points, points + [len(body)])]

    def run(parser: SSEParser) -> object:
        out: list[object] = []
        try:
            for piece in pieces:
                out += parser.feed(piece)
            return out + parser.close()
        except LineTooLong as exc:
            return out + exc.frames + ["too long"]

    assert run(SSEParser(max_line)) == run(_GeneralOnly(max_line))


@pytest.mark.parametrize("body", [
    b"event: d\xffx\ndata: \xfe{}\n\n",
    b"event:\xe2\x82\ndata:  two spaces\n\n",
    b"event: a\nevent: b\ndata: 1\ndata: 2\n\nid: 3\ndata\n\n",
])
def test_the_lf_fast_path_reads_event_and_data_lines_as_the_general_loop(body: bytes) -> None:
    assert SSEParser().feed(body) == _GeneralOnly().feed(body)
    assert SSEParser().feed(body)  # (each body makes a frame: the comparison is not of two empty lists)
