"""Stage 7: the answer in the client's format — JSON, or SSE frames as the stream goes.

A stream's body is where its guards, its cache entry and its usage record are finished too: they
can only be settled when the stream ends, however it ends (done, cut by a guard, failed, client
gone).
"""

from __future__ import annotations

import time
import uuid
from typing import Any, AsyncIterator, Callable

from backends.base import BackendError

from ..cache import ResponseCache
from ..record.metrics import Metrics
from ..wire.canonical import (
    ChatResponse, ResponseAccumulator, StreamEnd, StreamError, StreamEvent, StreamStart, TextDelta, TextPart, Usage,
    response_to_events,
)
from .exchange import Exchange, JsonReply, Reply, StreamReply
from .plan import estimate_prompt_tokens, tokens_for


def json_reply(ex: Exchange, response: ChatResponse) -> JsonReply:
    """A dispatched answer, after the guards, with an interactive session's command report first."""
    if ex.report:
        response.parts.insert(0, TextPart(f"[proxy]\n{ex.report}\n\n"))
    return JsonReply(200, ex.frontend.codec.encode_response(response), ex.headers)


def proxy_answer(ex: Exchange, text: str) -> ChatResponse:
    """The proxy's own answer (a command reply) as a response of the requested model."""
    return ChatResponse(id=f"proxy-{uuid.uuid4().hex[:24]}", model=ex.request.model or "proxy",
                        parts=[TextPart(text)], usage=Usage(), created=int(time.time()))


def local_reply(ex: Exchange, response: ChatResponse, finish: Callable[[], None]) -> Reply:
    """An answer the proxy has itself (a command reply, a cached answer): JSON, or replayed as a
    stream. ``finish`` writes the record: called here for JSON, when the replay ends for a stream."""
    if not ex.request.stream:
        reply = JsonReply(200, ex.frontend.codec.encode_response(response), ex.headers)
        finish()
        return reply
    encoder = ex.frontend.codec.StreamEncoder(**ex.ctx.encoder_options)
    ctx = ex.ctx

    async def chunks() -> AsyncIterator[bytes]:
        try:
            frames = b"".join([encoder.encode(event) for event in response_to_events(response)])
            if ctx.completed:
                await ctx.keep_reply(ctx.completed.pop())  # type: ignore[misc]
            yield frames
        finally:
            finish()
    return StreamReply(chunks(), ex.headers)


def stream_reply(ex: Exchange, started: Any, cache: ResponseCache, metrics: Metrics,
                 finish: Callable[[], None]) -> StreamReply:
    encoder = ex.frontend.codec.StreamEncoder(**ex.ctx.encoder_options)
    return StreamReply(_stream_body(ex, encoder, started, cache, metrics, finish), ex.headers)


async def _stream_body(ex: Exchange, encoder: Any, started: Any, cache: ResponseCache, metrics: Metrics,
                       finish: Callable[[], None]) -> AsyncIterator[bytes]:
    """Events go through the guards, then the client's encoder. When the stream ends for any
    reason: close the upstream, release the limits with the real usage, write the usage record."""
    rec, guards, outcome, slot = ex.record, ex.guards, ex.outcome, ex.cache_slot
    assert guards is not None and outcome is not None
    completed = ex.ctx.completed  # a reply the front end keeps before its last frame goes out
    events = started.events
    metrics.active_streams.inc()
    text_chars = 0
    rec.finish_reason = "incomplete"  # until a StreamEnd says otherwise (client went away)
    keep = ResponseAccumulator() if slot is not None else None

    def out(upstream_event: StreamEvent) -> list[bytes]:
        nonlocal text_chars
        frames = []
        for event in guards.feed(upstream_event):
            if keep is not None:
                keep.feed(event)
            if isinstance(event, TextDelta):
                text_chars += len(event.text)
            elif isinstance(event, StreamEnd):
                rec.finish_reason = event.finish_reason
                if event.usage is not None:
                    rec.usage = event.usage
            elif isinstance(event, StreamError):
                rec.finish_reason, rec.error = "error", event.message
            frames.append(encoder.encode(event))
        return frames

    try:
        # Every event at hand goes out in one write: the first event with the rest of its upstream
        # read, then one write per upstream read (``next_batch``, see backends.http.EventStream).
        # Connectors without batches (echo, tests' fakes) are read one event at a time.
        next_batch = getattr(events, "next_batch", None)
        frames = out(started.first)
        if ex.report and isinstance(started.first, StreamStart):
            frames.append(encoder.encode(TextDelta(f"[proxy]\n{ex.report}\n\n")))
        if frames and not guards.stop_upstream:
            # The first event goes out at once, not after the rest of its upstream read has been
            # through the guards and the encoder: the client's first byte waits for nothing else.
            if completed:
                await ex.ctx.keep_reply(completed.pop())  # type: ignore[misc]
            yield b"".join(frames)
            frames = []
        ready = getattr(events, "ready", None)
        batch = ready() if ready is not None else []
        while not guards.stop_upstream:
            for upstream_event in batch:
                frames += out(upstream_event)
                if guards.stop_upstream:
                    break  # a guard cut the stream: stop reading (and paying for) the rest
            if guards.stop_upstream:
                break
            if frames:
                if completed:
                    await ex.ctx.keep_reply(completed.pop())  # type: ignore[misc]
                yield b"".join(frames)
                frames = []
            if next_batch is not None:
                batch = await next_batch()
            else:
                try:
                    batch = [await anext(events)]
                except StopAsyncIteration:
                    break
            if not batch:
                break
        frames += [encoder.encode(event) for event in guards.finish()]
        if frames:
            if completed:
                await ex.ctx.keep_reply(completed.pop())  # type: ignore[misc]
            yield b"".join(frames)
        if keep is not None and slot is not None and not guards.events \
                and rec.finish_reason not in ("error", "incomplete"):
            cache.put(slot[0], keep.result(), slot[1])
    except BackendError as exc:
        rec.finish_reason, rec.error = "error", exc.message
        yield encoder.encode(StreamError(f"{exc.backend or 'backend'}: {exc.message}", "api_error"))
    finally:
        metrics.active_streams.dec()
        if rec.usage is None:  # cut off, or the provider reported nothing: estimate, and say so
            rec.usage = Usage(estimate_prompt_tokens(ex.request), tokens_for(text_chars), estimated=True)
        outcome.release(rec.usage.total_tokens)
        if outcome.pending:
            await outcome.settled()
        finish()
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()
