"""``backends.http.EventStream``: a provider's SSE body as canonical events, read from canned
upstream reads (no socket). However the bytes are split into reads, the events are the same and in
order; the first event is handed out once its own frame is parsed and decoded, the rest of its read
later."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from backends.base import BackendError
from backends.http import EventStream
from backends.openai import OpenAIBackend
from backends.settings import ConnectorSettings
from router.wire import openai as wire
from router.wire.canonical import StreamEnd, TextDelta


def frame(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return f"data: {data}\n\n".encode()


def chunk(text: str | None, finish: str | None = None) -> bytes:
    delta = {"content": text} if text is not None else {}
    return frame({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                  "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


REPLY = [chunk(""), *(chunk(f"tok{i} ") for i in range(6)), chunk(None, "stop"), b"data: [DONE]\n\n"]


class Canned:
    """An aiohttp response as the stream reads it: ``readany`` gives the reads in turn."""

    status = 200

    def __init__(self, reads: list[bytes]) -> None:
        self.content = self
        self._reads = iter(reads)
        self.closed = False

    async def readany(self) -> bytes:
        return next(self._reads, b"")

    def close(self) -> None:
        self.closed = True


class CountingDecoder:
    """OpenAI's stream decoder, counting the frames it was given."""

    def __init__(self) -> None:
        self.inner = wire.StreamDecoder()
        self.fed = 0

    def feed(self, obj: Any) -> Any:
        self.fed += 1
        return self.inner.feed(obj)

    def finish(self) -> Any:
        return self.inner.finish()


BACKEND = OpenAIBackend(ConnectorSettings(name="b", type="openai", api_keys=("sk-test-key-123456",),
                                          base_url="http://127.0.0.1:9/v1"))


def stream_of(reads: list[bytes], backend: OpenAIBackend = BACKEND) -> tuple[EventStream, Canned, CountingDecoder]:
    response, decoder = Canned(reads), CountingDecoder()

    async def open_response() -> Canned:
        return response

    return EventStream(backend, open_response, decoder), response, decoder  # type: ignore[arg-type]


def parsed_bytes(events: EventStream) -> list[int]:
    """Spy on the stream's SSE parser: the sizes of the pieces it is given, as they are given."""
    fed: list[int] = []
    feed = events._parser.feed

    def counting(chunk: bytes) -> Any:
        fed.append(len(chunk))
        return feed(chunk)

    events._parser.feed = counting  # type: ignore[method-assign]
    return fed


async def every_event(events: EventStream) -> list[Any]:
    return [event async for event in events]


async def relayed(events: EventStream) -> list[Any]:
    """As the pipeline's relay reads a stream: the first event, what is ready, then batches."""
    out = [await events.__anext__()]
    out += events.ready()
    while batch := await events.next_batch():
        out += batch
    return out


def shape(events: list[Any]) -> list[tuple[str, Any]]:
    return [(type(e).__name__, getattr(e, "text", None) or getattr(e, "finish_reason", None)) for e in events]


async def test_the_first_event_waits_for_its_own_frame_only() -> None:
    events, response, decoder = stream_of([b"".join(REPLY)])  # a short reply: one read
    first = await events.__anext__()
    assert decoder.fed == 1  # the seven frames behind it are not decoded yet
    rest = events.ready()
    assert decoder.fed == len(REPLY) - 1  # all of them now ([DONE] is not a JSON frame)
    assert response.closed  # [DONE] ended the stream
    assert await events.next_batch() == []
    one_per_read = await every_event(stream_of(REPLY)[0])
    assert shape([first, *rest]) == shape(one_per_read)
    assert isinstance(rest[-1], StreamEnd) and any(isinstance(e, TextDelta) for e in rest)


@pytest.mark.parametrize("eol", [b"\n", b"\r\n"], ids=["lf", "crlf"])
async def test_the_rest_of_the_first_read_is_not_parsed_before_it_is_asked_for(eol: bytes) -> None:
    frames = [reply_frame.replace(b"\n", eol) for reply_frame in REPLY]
    body = b"".join(frames)
    events, _response, _decoder = stream_of([body])
    fed = parsed_bytes(events)
    await events.__anext__()
    assert fed == [len(frames[0])]  # the first event's own frame, up to its blank line
    rest = events.ready()
    assert sum(fed) == len(body)
    assert isinstance(rest[-1], StreamEnd)


async def test_the_first_read_is_parsed_on_until_a_frame_gives_an_event() -> None:
    """Pieces that give no event (comment-only keep-alives) do not stop the first event's search:
    the read is parsed piece by piece until one does, and the rest waits."""
    pings = [b": keep-alive\n\n", b": ping\n\n"]
    reads = [b"".join(pings + REPLY)]
    events, _response, _decoder = stream_of(reads)
    fed = parsed_bytes(events)
    first = await events.__anext__()
    assert fed == [len(pings[0]), len(pings[1]), len(REPLY[0])]
    got = [first, *events.ready()]
    while batch := await events.next_batch():
        got += batch
    assert shape(got) == shape(await every_event(stream_of(REPLY)[0]))
    assert sum(fed) == len(reads[0])


async def test_a_line_too_long_behind_the_first_event_ends_the_stream_after_it() -> None:
    small = OpenAIBackend(ConnectorSettings(name="b", type="openai", api_keys=("sk-test-key-123456",),
                                            base_url="http://127.0.0.1:9/v1", max_line_bytes=4096))
    long_line = b"data: " + b"x" * 5000 + b"\n\n"
    events, response, _decoder = stream_of([REPLY[0] + REPLY[1] + long_line + REPLY[2]], small)
    assert await events.__anext__() is not None
    rest = events.ready()  # the good frame before the long line comes first
    assert shape(rest) == [("TextDelta", "tok0 ")]
    with pytest.raises(BackendError, match="longer than 4096 bytes"):
        await events.next_batch()
    assert response.closed
    assert await events.next_batch() == []


async def test_iterating_gives_every_event_of_a_single_read_in_order() -> None:
    assert shape(await every_event(stream_of([b"".join(REPLY)])[0])) == shape(await every_event(stream_of(REPLY)[0]))


@pytest.mark.parametrize("read", [every_event, relayed], ids=["iterated", "relayed"])
async def test_frames_kept_back_that_give_no_event_do_not_end_the_stream(read: Any) -> None:
    """The last text chunk and the finish chunk in one read, ``[DONE]`` in the next: the finish
    chunk, kept back behind the text, gives no event of its own (its StreamEnd comes with the
    end), and the stream must read on rather than end there (hypothesis found it: iterating
    ended after the text, without the StreamEnd)."""
    reads = [b"".join(REPLY[:6]), REPLY[6] + REPLY[7], REPLY[8]]
    got = await read(stream_of(reads)[0])
    assert shape(got) == shape(await every_event(stream_of(REPLY)[0]))
    assert isinstance(got[-1], StreamEnd)


async def test_a_bad_frame_behind_the_first_fails_the_stream_after_it() -> None:
    """Garbage in the first read behind a good first event: the first event is out (a relay has
    sent it), and the error comes with the rest, as it would have from the next read."""
    events, response, _decoder = stream_of([REPLY[0] + REPLY[1] + frame("not json {") + REPLY[2]])
    assert await events.__anext__() is not None
    with pytest.raises(BackendError, match="not JSON"):
        events.ready()
    assert response.closed  # the error closes the upstream response, as it does when read later


async def test_closing_drops_what_was_not_decoded() -> None:
    events, response, decoder = stream_of([b"".join(REPLY)])
    await events.__anext__()
    await events.aclose()
    assert response.closed and events.ready() == [] and await events.next_batch() == []
    assert decoder.fed == 1


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(b"".join(REPLY)) - 1), max_size=12, unique=True),
       st.booleans(), st.booleans())
async def test_any_split_into_reads_gives_the_same_events(cuts: list[int], as_relay: bool, crlf: bool) -> None:
    """Lines ended with ``\\n`` or ``\\r\\n`` (the first event's search then looks for
    ``\\r\\n\\r\\n``), split anywhere."""
    body = b"".join(REPLY)
    if crlf:  # (the cuts stay within the longer body)
        body = body.replace(b"\n", b"\r\n")
    bounds = [0, *sorted(cuts), len(body)]
    reads = [body[a:b] for a, b in zip(bounds, bounds[1:])]
    expected = shape(await every_event(stream_of(REPLY)[0]))
    events = stream_of(reads)[0]
    got = await relayed(events) if as_relay else await every_event(events)
    assert shape(got) == expected
