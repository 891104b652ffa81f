"""How the fake provider answers one generation request, whatever the wire format: the exchange
(request, record, where the reply goes), the stream writer, and performing each behaviour. What
differs between formats is looked up in :data:`FORMATS` (one :class:`WireFormat` per format)."""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from dataclasses import dataclass
from typing import Any, Iterable

from aiohttp import web

from router.wire.canonical import (
    ChatRequest, ChatResponse, FinishReason, Part, StreamEnd, StreamError, StreamEvent, StreamStart,
    TextDelta, TextPart, ThinkingDelta, ThinkingPart, ToolCallDelta, ToolCallPart, ToolCallStart, Usage,
    response_to_events,
)
from router.wire import sse

from . import anthropic, code_assist, gemini, openai, responses
from .behaviours import (
    Behaviour, Delay, Error, Loop, RawStream, Reply, Reset, ResetAfterChunks, StreamChunks, StreamErrorAfter,
    behaviour_name,
)
from .gemini import strip_function_call_ids
from .recording import RecordedRequest, json_response
from .wire_format import WireFormat

_SLICE = 0.01  # how often waits look for a hung-up client (seconds)
_CONTENT_EVENTS = (TextDelta, ThinkingDelta, ToolCallStart, ToolCallDelta)

FORMATS: dict[str, WireFormat] = {f.name: f for f in (openai.FORMAT, anthropic.FORMAT, gemini.FORMAT, code_assist.FORMAT,
                                                   responses.FORMAT)}


def error_body(family: str, status: int, message: str | None = None, model: str = "",
               retry_after: float | None = None) -> dict[str, Any]:
    """The provider-shaped error body for ``family``."""
    return FORMATS[family].error(status, message, model, retry_after)


def _tokens(text: str) -> int:
    """A rough token count (4 characters a token) so usage is plausible and non-zero."""
    return max(1, math.ceil(len(text) / 4))


def _request_text(chat: ChatRequest | None) -> str:
    if chat is None:
        return ""
    return "".join(p.text for p in chat.system) + "".join(m.text() for m in chat.messages)


# =============================================================================================
# One generation exchange: the request, where the reply goes, and how to write it


@dataclass
class Exchange:
    """Everything one generation request needs for its answer."""

    request: web.Request
    record: RecordedRequest
    family: str
    model: str
    stream: bool
    chat: ChatRequest | None
    sse: bool = True  # Gemini streams without ?alt=sse are a JSON array
    include_usage: bool = True  # OpenAI: stream_options.include_usage
    response: web.StreamResponse | None = None
    first_item: bool = True  # JSON-array streams: no comma before the first element

    def client_gone(self) -> bool:
        transport = self.request.transport
        return transport is None or transport.is_closing()

    @property
    def format(self) -> WireFormat:
        return FORMATS[self.family]


class StreamWriter:
    """Turns canonical events into this family's frames and writes them, noticing a hung-up client."""

    def __init__(self, ex: Exchange, strip_call_ids: bool) -> None:
        self.ex = ex
        self._strip_ids = strip_call_ids
        self._trace = f"fake-trace-{uuid.uuid4().hex[:16]}"
        self._encoder = ex.format.stream_encoder(ex.include_usage)

    async def start(self) -> bool:
        ex = self.ex
        content_type = "text/event-stream" if ex.sse else "application/json"
        ex.response = web.StreamResponse(status=200, headers={"Content-Type": content_type,
                                                              "Cache-Control": "no-cache"})
        try:
            await ex.response.prepare(ex.request)
        except (ConnectionError, RuntimeError):
            ex.record.disconnected = True
            return False
        ex.record.status = 200
        return True

    def _frames(self, event: StreamEvent) -> bytes:
        data = self._encoder.encode(event)
        if not self.ex.format.google_frames or not data:
            return data
        return self._google_frames(data)

    def _google_frames(self, data: bytes) -> bytes:
        """Re-frame Gemini output: drop call ids, wrap for Code Assist, or make JSON-array items."""
        out = b""
        for _event, payload in sse.parse_all(data):
            item = json.loads(payload)
            if self._strip_ids:
                strip_function_call_ids(item)
            if self.ex.format.envelope and "error" not in item:
                item = {"response": item, "traceId": self._trace}
            if self.ex.sse:
                out += sse.frame(item)
            else:
                prefix = "[" if self.ex.first_item else ",\r\n"
                self.ex.first_item = False
                out += (prefix + json.dumps(item, ensure_ascii=False)).encode()
        return out

    async def write(self, raw: bytes) -> bool:
        """Write bytes; False (and ``disconnected`` recorded) when the client is gone."""
        ex = self.ex
        if ex.client_gone():
            ex.record.disconnected = True
            return False
        try:
            await ex.response.write(raw)  # type: ignore[union-attr]
        except (ConnectionError, RuntimeError):
            ex.record.disconnected = True
            return False
        return True

    async def send(self, event: StreamEvent) -> bool:
        """Write one event's frames (if it has any); content frames count as chunks."""
        data = self._frames(event)
        if not data:
            return True
        if not await self.write(data):
            return False
        if isinstance(event, _CONTENT_EVENTS):
            self.ex.record.chunks_sent += 1
        return True

    async def finish(self) -> None:
        ex = self.ex
        if not ex.sse:
            closing = b"]" if not ex.first_item else b"[]"
            if not await self.write(closing):
                return
        try:
            await ex.response.write_eof()  # type: ignore[union-attr]
        except (ConnectionError, RuntimeError):
            ex.record.disconnected = True
            return
        ex.record.completed = True


class Answers:
    """Performing behaviours (mixed into the engine, :class:`fakes.core.ProviderCore`, which
    provides ``_counter``, ``_closing`` and ``gemini_call_ids``)."""

    async def _wait(self, ex: Exchange, seconds: float) -> bool:
        """Sleep ``seconds`` unless the client hangs up or the server closes (then False)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            if ex.client_gone():
                ex.record.disconnected = True
                return False
            if self._closing.is_set():
                return False
            remaining = deadline - loop.time()
            if remaining <= 0:
                return True
            await asyncio.sleep(min(_SLICE, remaining))

    # --- behaviours ---------------------------------------------------------------------------

    async def _perform(self, ex: Exchange, behaviour: Behaviour) -> web.StreamResponse:
        if isinstance(behaviour, Delay):
            if not await self._wait(ex, behaviour.seconds):
                return web.Response(status=499)  # nobody is listening any more
            then = behaviour.then or Reply()
            ex.record.behaviour = f"delay+{behaviour_name(then)}"
            return await self._perform(ex, then)
        if isinstance(behaviour, Error):
            return self._error_response(ex, behaviour)
        if isinstance(behaviour, Reset):
            return self._abort(ex)
        if isinstance(behaviour, Reply):
            return await self._reply(ex, self._response(ex, behaviour))
        if isinstance(behaviour, StreamChunks):
            return await self._stream_texts(ex, behaviour.chunks, behaviour.gap, behaviour.finish_reason)
        if isinstance(behaviour, Loop):
            return await self._stream_texts(ex, [behaviour.text] * behaviour.times, behaviour.gap, "stop")
        if isinstance(behaviour, ResetAfterChunks):
            return await self._reset_after(ex, behaviour)
        if isinstance(behaviour, RawStream):
            return await self._raw_stream(ex, behaviour)
        return await self._stream_error(ex, behaviour)

    def _error_response(self, ex: Exchange, err: Error) -> web.Response:
        headers = dict(err.headers)
        if err.retry_after is not None and ex.format.retry_after_header:
            headers.setdefault("Retry-After", f"{err.retry_after:g}")
        if ex.format.request_id_header:
            headers.setdefault("request-id", f"req_fake{uuid.uuid4().hex[:20]}")
        if err.body is None:
            return json_response(error_body(ex.family, err.status, err.message, ex.model, err.retry_after), err.status, headers)
        if isinstance(err.body, (str, bytes)):
            return web.Response(status=err.status, body=err.body if isinstance(err.body, bytes) else err.body.encode(),
                                headers={**headers, "Content-Type": err.content_type})
        return json_response(err.body, err.status, headers)

    def _abort(self, ex: Exchange) -> web.Response:
        """Close the socket with no response at all (the client sees a server disconnect)."""
        ex.record.reset = True
        ex.record.status = None
        if ex.request.transport is not None:
            ex.request.transport.abort()
        return web.Response(status=499)  # never reaches the wire

    def _response(self, ex: Exchange, spec: Reply) -> ChatResponse:
        """Build the canonical reply: echo by default, tool calls, usage estimated unless given."""
        number = next(self._counter)
        parts: list[Part] = []
        if spec.thinking is not None or spec.thinking_signature is not None:
            item = ex.format.reasoning_item
            parts.append(ThinkingPart(spec.thinking or "", spec.thinking_signature,
                                      item(number, spec.thinking or "") if item and spec.thinking_signature is None
                                      else None))
        text = spec.text if spec.text is not None else ("" if spec.tool_calls else self._echo(ex))
        if text:
            parts.append(TextPart(text))
        for index, call in enumerate(spec.tool_calls):
            arguments = call.get("arguments", {})
            if not isinstance(arguments, str):
                arguments = json.dumps(arguments, separators=(",", ":"))
            parts.append(ToolCallPart(call.get("id") or f"{ex.format.call_prefix}{number}_{index}", call["name"],
                                      arguments))
        finish = spec.finish_reason or ("tool_calls" if spec.tool_calls else "stop")
        usage = spec.usage or Usage(prompt_tokens=_tokens(_request_text(ex.chat)),
                                    completion_tokens=_tokens(text or "") if text or spec.tool_calls else 0)
        return ChatResponse(id=f"{ex.format.response_prefix}{number}", model=spec.model or ex.model, parts=parts,
                            finish_reason=finish, usage=usage, created=1_700_000_000 + number)

    def _echo(self, ex: Exchange) -> str:
        if ex.chat is not None:
            last = ex.chat.last_user_message()
            if last is not None and last.text():
                return last.text()
        return "ok"

    def _encode(self, ex: Exchange, response: ChatResponse) -> dict[str, Any]:
        return ex.format.encode(response, self.gemini_call_ids)

    async def _reply(self, ex: Exchange, response: ChatResponse) -> web.StreamResponse:
        if not ex.stream:
            ex.record.completed = True
            return json_response(self._encode(ex, response))
        return await self._send_events(ex, response_to_events(response))

    async def _send_events(self, ex: Exchange, events: Iterable[StreamEvent], gap: float = 0.0) -> web.StreamResponse:
        """Stream events, pausing ``gap`` between content chunks; stop when the client leaves."""
        writer = StreamWriter(ex, strip_call_ids=not self.gemini_call_ids)
        if not await writer.start():
            return ex.response or web.Response(status=499)
        first_content = True
        for event in events:
            if isinstance(event, _CONTENT_EVENTS):
                if not first_content and gap and not await self._wait(ex, gap):
                    return ex.response  # type: ignore[return-value]
                first_content = False
            if not await writer.send(event):
                return ex.response  # type: ignore[return-value]
            if isinstance(event, StreamError):
                break
            await asyncio.sleep(0)  # let a hang-up be noticed between frames
        await writer.finish()
        return ex.response  # type: ignore[return-value]

    def _text_events(self, ex: Exchange, texts: Iterable[str], finish: FinishReason,
                     completion_chars: int) -> Iterable[StreamEvent]:
        response = self._response(ex, Reply(text=""))
        yield StreamStart(id=response.id, model=response.model, created=response.created)
        for text in texts:
            yield TextDelta(text)
        usage = Usage(response.usage.prompt_tokens, _tokens("x" * max(completion_chars, 1)))
        yield StreamEnd(finish, usage)

    async def _stream_texts(self, ex: Exchange, texts: list[str], gap: float,
                            finish: FinishReason) -> web.StreamResponse:
        """``stream_chunks``/``loop``: one frame per text; non-stream requests get the joined text."""
        if not ex.stream:
            if gap and not await self._wait(ex, gap * max(len(texts) - 1, 0)):
                return web.Response(status=499)
            return await self._reply(ex, self._response(ex, Reply(text="".join(texts), finish_reason=finish)))
        chars = sum(len(t) for t in texts)
        return await self._send_events(ex, self._text_events(ex, texts, finish, chars), gap)

    async def _reset_after(self, ex: Exchange, spec: ResetAfterChunks) -> web.StreamResponse:
        """Start answering, then abort: ``n`` SSE chunks for streams, half the JSON body otherwise."""
        if not ex.stream:
            body = json.dumps(self._encode(ex, self._response(ex, Reply(text=spec.text * max(spec.n, 1))))).encode()
            ex.response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
            ex.response.content_length = len(body)
            try:
                await ex.response.prepare(ex.request)
                ex.record.status = 200
                await ex.response.write(body[: len(body) // 2])
            except (ConnectionError, RuntimeError):
                ex.record.disconnected = True
        else:
            writer = StreamWriter(ex, strip_call_ids=not self.gemini_call_ids)
            if not await writer.start():
                return ex.response or web.Response(status=499)
            for index, event in enumerate(self._text_events(ex, [spec.text] * spec.n, "stop", 0)):
                if isinstance(event, StreamEnd):
                    break
                if index > 1 and spec.gap and not await self._wait(ex, spec.gap):
                    return ex.response  # type: ignore[return-value]
                if not await writer.send(event):
                    return ex.response  # type: ignore[return-value]
        await asyncio.sleep(0.01)  # let the chunks leave before the reset
        ex.record.reset = True
        if ex.request.transport is not None:
            ex.request.transport.abort()
        return ex.response  # type: ignore[return-value]

    async def _raw_stream(self, ex: Exchange, spec: RawStream) -> web.StreamResponse:
        """Headers, the optional real first chunk, then the raw bytes; stops when the client leaves."""
        writer = StreamWriter(ex, strip_call_ids=not self.gemini_call_ids)
        if not await writer.start():
            return ex.response or web.Response(status=499)
        if spec.text is not None:
            for event in list(self._text_events(ex, [spec.text], "stop", 0))[:-1]:
                if not await writer.send(event):
                    return ex.response  # type: ignore[return-value]
        for start in range(0, len(spec.data), spec.chunk_size):
            if not await writer.write(spec.data[start:start + spec.chunk_size]):
                return ex.response  # type: ignore[return-value]
            await asyncio.sleep(0)
        await writer.finish()
        return ex.response  # type: ignore[return-value]

    async def _stream_error(self, ex: Exchange, spec: StreamErrorAfter) -> web.StreamResponse:
        """Some chunks, then the format's in-stream error event (non-stream: a plain HTTP error)."""
        if not ex.stream:
            status = {"overloaded": ex.format.overloaded_status, "rate_limit": 429}.get(spec.kind, 500)
            return self._error_response(ex, Error(status, message=spec.message))
        events: list[StreamEvent] = list(self._text_events(ex, [spec.text] * spec.after_chunks, "stop", 0))[:-1]
        events.append(StreamError(spec.message, spec.kind))
        return await self._send_events(ex, events)
