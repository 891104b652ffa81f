"""The fake provider's engine, shared by every wire format: lifecycle, scripting, the record,
the generation path (auth, decode, pick a behaviour, perform it) and stream writing.

What differs between formats lives in their own modules (``openai``, ``anthropic``, ``gemini``,
``code_assist``): error shapes, auth failures, routes; ``fakes.provider`` assembles them.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import re
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable
from urllib.parse import parse_qsl

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from router.wire.canonical import (
    ChatRequest, ChatResponse, FinishReason, Part, StreamEnd, StreamError, StreamEvent, StreamStart,
    TextDelta, TextPart, ThinkingDelta, ThinkingPart, ToolCallDelta, ToolCallPart, ToolCallStart, Usage,
    response_to_events,
)
from router.errors import ProxyError
from router.wire import anthropic as anthropic_wire
from router.wire import gemini as gemini_wire
from router.wire import openai as openai_wire
from router.wire import sse

from . import anthropic, code_assist, gemini, openai
from .anthropic import anthropic_error
from .behaviours import (
    Behaviour, Delay, Error, Loop, RawStream, Reply, Reset, ResetAfterChunks, StreamChunks, StreamErrorAfter,
    behaviour_name,
)
from .code_assist import CodeAssistState, OAuthState
from .gemini import google_error, strip_function_call_ids
from .openai import openai_error
from .recording import RECORD, RecordedRequest, json_response

FAMILIES = ("openai", "anthropic", "gemini", "code_assist")
DEFAULT_KEYS: dict[str, tuple[str, ...]] = {
    "openai": ("sk-fake-openai",),
    "anthropic": ("sk-ant-fake",),
    "gemini": ("fake-gemini-key",),
    "code_assist": ("ya29.fake-access-token",),
}
DEFAULT_MODELS = ("fake-model", "fake-model-large")
_SLICE = 0.01  # how often waits look for a hung-up client (seconds)
_CONTENT_EVENTS = (TextDelta, ThinkingDelta, ToolCallStart, ToolCallDelta)
_FAIL_MODEL = re.compile(r"^fail-(\d{3})$")

AUTH_ERRORS: dict[str, Callable[[str | None], web.Response]] = {
    "openai": openai.auth_error, "anthropic": anthropic.auth_error, "gemini": gemini.auth_error,
    "code_assist": code_assist.auth_error,
}


def error_body(family: str, status: int, message: str | None = None, model: str = "",
               retry_after: float | None = None) -> dict[str, Any]:
    """The provider-shaped error body for ``family``."""
    if family == "openai":
        return openai_error(status, message, model)
    if family == "anthropic":
        return anthropic_error(status, message, model)
    domain = "cloudcode-pa.googleapis.com" if family == "code_assist" else "generativelanguage.googleapis.com"
    reason = "RATE_LIMIT_EXCEEDED" if status == 429 else None
    return google_error(status, message, model, retry_after, reason, domain)


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
class _Exchange:
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


class _StreamWriter:
    """Turns canonical events into this family's frames and writes them, noticing a hung-up client."""

    def __init__(self, ex: _Exchange, strip_call_ids: bool) -> None:
        self.ex = ex
        self._strip_ids = strip_call_ids
        self._trace = f"fake-trace-{uuid.uuid4().hex[:16]}"
        if ex.family == "openai":
            self._encoder: Any = openai_wire.StreamEncoder(include_usage=ex.include_usage)
        elif ex.family == "anthropic":
            self._encoder = anthropic_wire.StreamEncoder()
        else:
            self._encoder = gemini_wire.StreamEncoder()

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
        if self.ex.family in ("openai", "anthropic") or not data:
            return data
        return self._google_frames(data)

    def _google_frames(self, data: bytes) -> bytes:
        """Re-frame Gemini output: drop call ids, wrap for Code Assist, or make JSON-array items."""
        out = b""
        for _event, payload in sse.parse_all(data):
            item = json.loads(payload)
            if self._strip_ids:
                strip_function_call_ids(item)
            if self.ex.family == "code_assist" and "error" not in item:
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


class ProviderCore:
    """The engine of a local fake of OpenAI, Anthropic, Gemini, Code Assist and Google OAuth, all on one port.

    Attributes tests set or read:

    - ``keys[family]``: accepted credentials (``openai``, ``anthropic``, ``gemini``,
      ``code_assist``); anything else gets that provider's auth error.
    - ``models``: names listed by the ``/models`` endpoints.
    - ``requests``: every :class:`RecordedRequest`, in arrival order.
    - ``code_assist`` (:class:`CodeAssistState`) and ``oauth`` (:class:`OAuthState`).
    - ``validate``: decode request bodies with the project's codecs and 400 on malformed ones.
    - ``gemini_call_ids``: keep ``functionCall.id`` in Gemini replies (the real API omits it).

    Which behaviour a generation request gets: the model's queue (``enqueue(..., model=)``), then
    the model's rule (``on_model``), then the shared queue (``enqueue``), then a model named
    ``fail-<status>`` (an error with that status), then the default echo reply.
    """

    def __init__(self, *, keys: dict[str, Iterable[str]] | None = None, models: Iterable[str] = DEFAULT_MODELS,
                 validate: bool = True) -> None:
        self.keys: dict[str, set[str]] = {f: set(DEFAULT_KEYS[f]) for f in FAMILIES}
        for family, values in (keys or {}).items():
            self.keys[family] = set(values)
        self.models = list(models)
        self.validate = validate
        self.gemini_call_ids = False
        self.requests: list[RecordedRequest] = []
        self.code_assist = CodeAssistState()
        self.oauth = OAuthState()
        self._queue: deque[Behaviour] = deque()
        self._model_queues: dict[str, deque[Behaviour]] = {}
        self._model_rules: dict[str, Behaviour] = {}
        self._counter = itertools.count(1)
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> ProviderCore:
        app = web.Application(middlewares=[self._recording_middleware], client_max_size=64 * 1024 * 1024)
        self._add_routes(app)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        """Stop the server; waits and streams still running end promptly."""
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> ProviderCore:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """What the OpenAI SDK calls ``base_url`` (it appends ``/chat/completions``)."""
        return f"{self.url}/v1"

    @property
    def code_assist_endpoint(self) -> str:
        """Gemini CLI's ``CODE_ASSIST_ENDPOINT`` (it appends ``/v1internal:<method>``)."""
        return self.url

    @property
    def token_url(self) -> str:
        return f"{self.url}/token"

    def key(self, family: str) -> str:
        """One accepted credential for ``family`` (handy when configuring a backend)."""
        return sorted(self.keys[family])[0]

    # --- scripting ----------------------------------------------------------------------------

    def enqueue(self, *behaviours: Behaviour, model: str | None = None) -> ProviderCore:
        """Queue behaviours for the next generation requests (optionally only for ``model``)."""
        queue = self._queue if model is None else self._model_queues.setdefault(model, deque())
        queue.extend(behaviours)
        return self

    script = enqueue

    def on_model(self, model: str, behaviour: Behaviour | None) -> ProviderCore:
        """Every request for ``model`` gets ``behaviour`` (None removes the rule)."""
        if behaviour is None:
            self._model_rules.pop(model, None)
        else:
            self._model_rules[model] = behaviour
        return self

    def clear(self) -> None:
        """Forget queued behaviours, model rules and recorded requests."""
        self._queue.clear()
        self._model_queues.clear()
        self._model_rules.clear()
        self.requests.clear()

    @property
    def pending(self) -> int:
        """Behaviours still queued (shared and per model): tests can assert all were consumed."""
        return len(self._queue) + sum(len(q) for q in self._model_queues.values())

    def next_behaviour(self, model: str) -> Behaviour:
        queue = self._model_queues.get(model)
        if queue:
            return queue.popleft()
        if model in self._model_rules:
            return self._model_rules[model]
        if self._queue:
            return self._queue.popleft()
        match = _FAIL_MODEL.match(model)
        if match:
            return Error(int(match.group(1)))
        return Reply()

    # --- reading the record -------------------------------------------------------------------

    def calls(self, *, path: str | None = None, family: str | None = None,
              endpoint: str | None = None) -> list[RecordedRequest]:
        """Recorded requests filtered by exact path, family and/or endpoint name."""
        return [r for r in self.requests
                if (path is None or r.path == path) and (family is None or r.family == family)
                and (endpoint is None or r.endpoint == endpoint)]

    @property
    def generations(self) -> list[RecordedRequest]:
        """Recorded generation requests (the ones that consume behaviours)."""
        return [r for r in self.requests if r.endpoint in ("generate", "stream")]

    @property
    def last(self) -> RecordedRequest:
        if not self.requests:
            raise AssertionError("the fake provider has received no request")
        return self.requests[-1]

    async def wait_idle(self, timeout: float = 2.0) -> None:
        """Wait until every request so far has been fully handled."""
        await asyncio.wait_for(asyncio.gather(*(r._done.wait() for r in list(self.requests))), timeout)

    # --- plumbing -----------------------------------------------------------------------------

    def _add_routes(self, app: web.Application) -> None:
        raise NotImplementedError  # the assembly (fakes.provider.FakeProvider) adds each format's routes

    @web.middleware
    async def _recording_middleware(self, request: web.Request,
                                    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        """Record every request before the handler runs; mark it done (with its status) after."""
        raw = await request.read()
        record = RecordedRequest(method=request.method, path=request.path, query=dict(request.query),
                                 headers=CIMultiDictProxy(CIMultiDict(request.headers)), raw=raw)
        if raw:
            content_type = request.headers.get("Content-Type", "")
            if "x-www-form-urlencoded" in content_type:
                record.form = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
            else:
                try:
                    record.body = json.loads(raw)
                except ValueError:
                    record.body = None
        self.requests.append(record)
        request[RECORD] = record
        try:
            response = await handler(request)
            if record.status is None and not record.reset:
                record.status = response.status
            return response
        except web.HTTPException as exc:
            record.status = exc.status
            raise
        finally:
            record._done.set()

    async def _wait(self, ex: _Exchange, seconds: float) -> bool:
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

    # --- auth ---------------------------------------------------------------------------------

    def _auth_error(self, request: web.Request, family: str) -> web.Response | None:
        """None when the credential is accepted, else the provider's own auth failure."""
        record: RecordedRequest = request[RECORD]
        record.family = family
        key = record.api_key
        if key in self.keys[family]:
            return None
        return AUTH_ERRORS[family](key)

    async def _generate(self, request: web.Request, family: str, model: str, stream: bool, *,
                        sse: bool = True, include_usage: bool = True,
                        denied: web.Response | None = None) -> web.StreamResponse:
        """Common path: auth, body check, pick a behaviour, perform it."""
        record: RecordedRequest = request[RECORD]
        record.family, record.model, record.stream = family, model or None, stream
        record.endpoint = "stream" if stream else "generate"
        if denied is None:
            denied = self._auth_error(request, family)
        if denied is not None:
            return denied
        chat, invalid = self._decode(record, family, model, stream)
        if invalid is not None:
            return invalid
        ex = _Exchange(request, record, family, model, stream, chat, sse=sse, include_usage=include_usage)
        behaviour = self.next_behaviour(model)
        record.behaviour = behaviour_name(behaviour)
        return await self._perform(ex, behaviour)

    def _decode(self, record: RecordedRequest, family: str, model: str,
                stream: bool) -> tuple[ChatRequest | None, web.Response | None]:
        """Parse the body with the project's codec; a malformed one is the provider's 400."""
        if record.body is None:
            return None, json_response(error_body(family, 400, "Invalid JSON payload received."), 400)
        if not self.validate:
            return None, None
        try:
            if family == "openai":
                return openai_wire.decode_request(record.body), None
            if family == "anthropic":
                return anthropic_wire.decode_request(record.body), None
            body = record.body
            if family == "code_assist":
                if not model:
                    raise ProxyError(400, "model: required field is missing", param="model")
                if not isinstance(body, dict) or not isinstance(body.get("request"), dict):
                    raise ProxyError(400, "request: required field is missing", param="request")
                body = body["request"]
            return gemini_wire.decode_request(body, model=model, stream=stream), None
        except ProxyError as err:
            return None, json_response(error_body(family, 400, err.message, model), 400)

    # --- behaviours ---------------------------------------------------------------------------

    async def _perform(self, ex: _Exchange, behaviour: Behaviour) -> web.StreamResponse:
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

    def _error_response(self, ex: _Exchange, err: Error) -> web.Response:
        headers = dict(err.headers)
        if err.retry_after is not None and ex.family in ("openai", "anthropic"):
            headers.setdefault("Retry-After", f"{err.retry_after:g}")
        if ex.family == "anthropic":
            headers.setdefault("request-id", f"req_fake{uuid.uuid4().hex[:20]}")
        if err.body is None:
            return json_response(error_body(ex.family, err.status, err.message, ex.model, err.retry_after), err.status, headers)
        if isinstance(err.body, (str, bytes)):
            return web.Response(status=err.status, body=err.body if isinstance(err.body, bytes) else err.body.encode(),
                                headers={**headers, "Content-Type": err.content_type})
        return json_response(err.body, err.status, headers)

    def _abort(self, ex: _Exchange) -> web.Response:
        """Close the socket with no response at all (the client sees a server disconnect)."""
        ex.record.reset = True
        ex.record.status = None
        if ex.request.transport is not None:
            ex.request.transport.abort()
        return web.Response(status=499)  # never reaches the wire

    def _response(self, ex: _Exchange, spec: Reply) -> ChatResponse:
        """Build the canonical reply: echo by default, tool calls, usage estimated unless given."""
        number = next(self._counter)
        parts: list[Part] = []
        if spec.thinking is not None or spec.thinking_signature is not None:
            parts.append(ThinkingPart(spec.thinking or "", spec.thinking_signature))
        text = spec.text if spec.text is not None else ("" if spec.tool_calls else self._echo(ex))
        if text:
            parts.append(TextPart(text))
        for index, call in enumerate(spec.tool_calls):
            arguments = call.get("arguments", {})
            if not isinstance(arguments, str):
                arguments = json.dumps(arguments, separators=(",", ":"))
            prefix = "toolu_fake" if ex.family == "anthropic" else "call_fake"
            parts.append(ToolCallPart(call.get("id") or f"{prefix}{number}_{index}", call["name"], arguments))
        finish = spec.finish_reason or ("tool_calls" if spec.tool_calls else "stop")
        usage = spec.usage or Usage(prompt_tokens=_tokens(_request_text(ex.chat)),
                                    completion_tokens=_tokens(text or "") if text or spec.tool_calls else 0)
        prefix = {"openai": "chatcmpl-fake", "anthropic": "msg_fake"}.get(ex.family, "fake-resp-")
        return ChatResponse(id=f"{prefix}{number}", model=spec.model or ex.model, parts=parts,
                            finish_reason=finish, usage=usage, created=1_700_000_000 + number)

    def _echo(self, ex: _Exchange) -> str:
        if ex.chat is not None:
            last = ex.chat.last_user_message()
            if last is not None and last.text():
                return last.text()
        return "ok"

    def _encode(self, ex: _Exchange, response: ChatResponse) -> dict[str, Any]:
        if ex.family == "openai":
            return openai_wire.encode_response(response)
        if ex.family == "anthropic":
            return anthropic_wire.encode_response(response)
        body = gemini_wire.encode_response(response)
        if not self.gemini_call_ids:
            strip_function_call_ids(body)
        if ex.family == "code_assist":
            return {"response": body, "traceId": f"fake-trace-{uuid.uuid4().hex[:16]}"}
        return body

    async def _reply(self, ex: _Exchange, response: ChatResponse) -> web.StreamResponse:
        if not ex.stream:
            ex.record.completed = True
            return json_response(self._encode(ex, response))
        return await self._send_events(ex, response_to_events(response))

    async def _send_events(self, ex: _Exchange, events: Iterable[StreamEvent], gap: float = 0.0) -> web.StreamResponse:
        """Stream events, pausing ``gap`` between content chunks; stop when the client leaves."""
        writer = _StreamWriter(ex, strip_call_ids=not self.gemini_call_ids)
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

    def _text_events(self, ex: _Exchange, texts: Iterable[str], finish: FinishReason,
                     completion_chars: int) -> Iterable[StreamEvent]:
        response = self._response(ex, Reply(text=""))
        yield StreamStart(id=response.id, model=response.model, created=response.created)
        for text in texts:
            yield TextDelta(text)
        usage = Usage(response.usage.prompt_tokens, _tokens("x" * max(completion_chars, 1)))
        yield StreamEnd(finish, usage)

    async def _stream_texts(self, ex: _Exchange, texts: list[str], gap: float,
                            finish: FinishReason) -> web.StreamResponse:
        """``stream_chunks``/``loop``: one frame per text; non-stream requests get the joined text."""
        if not ex.stream:
            if gap and not await self._wait(ex, gap * max(len(texts) - 1, 0)):
                return web.Response(status=499)
            return await self._reply(ex, self._response(ex, Reply(text="".join(texts), finish_reason=finish)))
        chars = sum(len(t) for t in texts)
        return await self._send_events(ex, self._text_events(ex, texts, finish, chars), gap)

    async def _reset_after(self, ex: _Exchange, spec: ResetAfterChunks) -> web.StreamResponse:
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
            writer = _StreamWriter(ex, strip_call_ids=not self.gemini_call_ids)
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

    async def _raw_stream(self, ex: _Exchange, spec: RawStream) -> web.StreamResponse:
        """Headers, the optional real first chunk, then the raw bytes; stops when the client leaves."""
        writer = _StreamWriter(ex, strip_call_ids=not self.gemini_call_ids)
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

    async def _stream_error(self, ex: _Exchange, spec: StreamErrorAfter) -> web.StreamResponse:
        """Some chunks, then the format's in-stream error event (non-stream: a plain HTTP error)."""
        if not ex.stream:
            status = {"overloaded": 529 if ex.family == "anthropic" else 503, "rate_limit": 429}.get(spec.kind, 500)
            return self._error_response(ex, Error(status, message=spec.message))
        events: list[StreamEvent] = list(self._text_events(ex, [spec.text] * spec.after_chunks, "stop", 0))[:-1]
        events.append(StreamError(spec.message, spec.kind))
        return await self._send_events(ex, events)
