"""A programmable local fake LLM provider for connector and dispatch tests.

One aiohttp server on 127.0.0.1 (random free port) speaks four provider wire formats, so a
backend connector can be pointed at ``fake.url`` instead of the real service:

- OpenAI Chat Completions: ``POST /v1/chat/completions`` (JSON, or SSE ending ``data: [DONE]``),
  ``GET /v1/models``; ``Authorization: Bearer <key>``.
- Anthropic Messages: ``POST /v1/messages`` (JSON, or SSE ``message_start`` ... ``message_stop``),
  ``GET /v1/models``; ``x-api-key`` (or ``Authorization: Bearer``), ``anthropic-version`` required.
- Gemini API: ``POST /v1beta/models/{model}:generateContent`` / ``:streamGenerateContent``
  (``?alt=sse`` for SSE, otherwise a streamed JSON array), ``GET /v1beta/models[/{model}]``;
  ``x-goog-api-key`` header or ``?key=``.
- Google Code Assist (what Gemini CLI's OAuth login talks to, ``cloudcode-pa``):
  ``POST /v1internal:loadCodeAssist``, ``:onboardUser``, ``:generateContent``,
  ``:streamGenerateContent?alt=sse``, ``GET /v1internal/operations/{name}``; Bearer access token.
- An OAuth2 token endpoint ``POST /token`` (``grant_type=refresh_token``) that mints access tokens
  the Code Assist routes then accept.

Replies are produced with the project's own wire codecs (``router.wire.*``) from a canonical
:class:`~router.canonical.ChatResponse`, so the bytes match what the proxy's decoders expect,
while errors, auth failures and the Code Assist envelope are written here in each provider's
real shape. What a generation request gets is *programmable*: a queue of behaviours (see the
factory functions :func:`reply`, :func:`error`, :func:`delay`, :func:`stream_chunks`,
:func:`reset`, :func:`reset_after_chunks`, :func:`textual_tool_call`, :func:`loop`,
:func:`stream_error`, :func:`raw_stream`), per-model rules, and a default that echoes the last
user text. Every request is recorded (:class:`RecordedRequest`) including, for streams, how many chunks were sent
and whether the client hung up early.

Usage::

    async with FakeProvider() as fake:
        fake.enqueue(error(429, retry_after=2), reply(text="hi"))
        ...  # point a backend at fake.url with api key fake.key("openai")
        assert fake.last.headers["authorization"] == "Bearer sk-fake-openai"
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import re
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable, Union
from urllib.parse import parse_qsl

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from router.wire.canonical import (
    ChatRequest, ChatResponse, FinishReason, Part, StreamEnd, StreamError, StreamEvent, StreamStart,
    TextDelta, TextPart, ThinkingDelta, ThinkingPart, ToolCallDelta, ToolCallPart, ToolCallStart, Usage,
    response_to_events,
)
from router.wire.codec import CodecError
from router.wire import anthropic as anthropic_wire
from router.wire import gemini as gemini_wire
from router.wire import openai as openai_wire
from router.wire import sse

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
DEFAULT_TEXTUAL_TOOL_CALL = (
    "I'll read the file.\n<tool_call>\n"
    '{"name": "read_file", "arguments": {"path": "README.md"}}\n</tool_call>'
)


# =============================================================================================
# Behaviours: what one generation request gets. Plain data; the server interprets them.


@dataclass(slots=True)
class Reply:
    """A normal answer. ``text=None`` echoes the last user text (so tests can see what arrived),
    unless there are tool calls (then the reply is the calls alone)."""

    text: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    usage: Usage | None = None
    thinking: str | None = None
    thinking_signature: str | None = None
    finish_reason: FinishReason | None = None
    model: str | None = None  # model name reported back (default: the requested one)


@dataclass(slots=True)
class Error:
    """An HTTP error before any body byte, in the provider's error shape (or ``body`` verbatim)."""

    status: int
    body: Any = None  # dict -> JSON, str/bytes -> sent raw with ``content_type``
    retry_after: float | None = None
    message: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "text/plain"


@dataclass(slots=True)
class Delay:
    """Wait before sending headers (timeout tests), then behave like ``then`` (default: echo)."""

    seconds: float
    then: Behaviour | None = None


@dataclass(slots=True)
class StreamChunks:
    """Stream these texts one frame each with ``gap`` seconds between them (slow/idle streams)."""

    chunks: list[str]
    gap: float = 0.0
    finish_reason: FinishReason = "stop"


@dataclass(slots=True)
class Reset:
    """Abort the TCP connection without sending a single byte."""


@dataclass(slots=True)
class ResetAfterChunks:
    """Send headers and ``n`` text chunks, then abort the connection (a broken stream)."""

    n: int
    text: str = "chunk "
    gap: float = 0.0


@dataclass(slots=True)
class Loop:
    """Stream ``text`` ``times`` times (a looping model); stops when the client hangs up."""

    text: str
    times: int = 200
    gap: float = 0.005


@dataclass(slots=True)
class StreamErrorAfter:
    """Stream ``after_chunks`` chunks, then the format's in-stream error event (HTTP stays 200)."""

    after_chunks: int = 1
    message: str = "Overloaded"
    kind: str = "overloaded"
    text: str = "partial "


@dataclass(slots=True)
class RawStream:
    """A stream whose body goes wrong in ways no encoder writes: headers, optionally one real text
    chunk (``text``), then ``data`` verbatim in ``chunk_size`` pieces (e.g. a line that never ends)."""

    data: bytes
    text: str | None = "partial "
    chunk_size: int = 65536


Behaviour = Union[Reply, Error, Delay, StreamChunks, Reset, ResetAfterChunks, Loop, StreamErrorAfter, RawStream]


def reply(text: str | None = None, tool_calls: Iterable[dict[str, Any]] | None = None,
          usage: Usage | dict[str, int] | None = None, *, thinking: str | None = None,
          thinking_signature: str | None = None, finish_reason: FinishReason | None = None,
          model: str | None = None) -> Reply:
    """A reply. ``tool_calls`` items are ``{"name", "arguments": dict|str, "id"?}``;
    ``usage`` is a :class:`Usage` or ``{"prompt_tokens", "completion_tokens", "cached_tokens"}``."""
    if isinstance(usage, dict):
        usage = Usage(**usage)
    return Reply(text, list(tool_calls or []), usage, thinking, thinking_signature, finish_reason, model)


def error(status: int, body: Any = None, retry_after: float | None = None, *, message: str | None = None,
          headers: dict[str, str] | None = None, content_type: str = "text/plain") -> Error:
    """An error response; ``retry_after`` becomes ``Retry-After`` (OpenAI/Anthropic) or a
    ``google.rpc.RetryInfo`` detail (Gemini/Code Assist, which send no header)."""
    return Error(status, body, retry_after, message, dict(headers or {}), content_type)


def delay(seconds: float, then: Behaviour | None = None) -> Delay:
    return Delay(seconds, then)


def stream_chunks(chunks: Iterable[str], gap: float = 0.0, finish_reason: FinishReason = "stop") -> StreamChunks:
    return StreamChunks(list(chunks), gap, finish_reason)


def reset() -> Reset:
    return Reset()


def reset_after_chunks(n: int, text: str = "chunk ", gap: float = 0.0) -> ResetAfterChunks:
    return ResetAfterChunks(n, text, gap)


def textual_tool_call(text: str = DEFAULT_TEXTUAL_TOOL_CALL) -> Reply:
    """A reply whose *text* spells out a tool call (for tool-call repair tests)."""
    return Reply(text=text)


def loop(text: str, times: int = 200, gap: float = 0.005) -> Loop:
    return Loop(text, times, gap)


def stream_error(after_chunks: int = 1, message: str = "Overloaded", kind: str = "overloaded",
                 text: str = "partial ") -> StreamErrorAfter:
    return StreamErrorAfter(after_chunks, message, kind, text)


def raw_stream(data: bytes, text: str | None = "partial ", chunk_size: int = 65536) -> RawStream:
    return RawStream(data, text, chunk_size)


def behaviour_name(behaviour: Behaviour) -> str:
    """Short name recorded per request (``reply``, ``error``, ``delay``, ``loop``...)."""
    return {Reply: "reply", Error: "error", Delay: "delay", StreamChunks: "stream_chunks", Reset: "reset",
            ResetAfterChunks: "reset_after_chunks", Loop: "loop", StreamErrorAfter: "stream_error",
            RawStream: "raw_stream"}[type(behaviour)]


# =============================================================================================
# Recording


@dataclass(eq=False)
class RecordedRequest:
    """One request as the fake saw it, plus what it did about it.

    Fields filled for every request: ``method``, ``path``, ``query``, ``headers`` (case-insensitive),
    ``raw``, ``body`` (parsed JSON or None), ``form`` (form-encoded bodies). Generation requests also
    get ``family``, ``endpoint``, ``model``, ``stream``, ``behaviour``. ``status`` is the HTTP status
    sent (None for a reset). Streams count content ``chunks_sent``; ``disconnected`` is True when the
    client went away before the fake finished, ``completed`` when the response ended normally.
    """

    method: str
    path: str
    query: dict[str, str]
    headers: CIMultiDictProxy[str]
    raw: bytes = b""
    body: Any = None
    form: dict[str, str] | None = None
    family: str | None = None
    endpoint: str | None = None
    model: str | None = None
    stream: bool = False
    behaviour: str | None = None
    status: int | None = None
    chunks_sent: int = 0
    disconnected: bool = False
    reset: bool = False
    completed: bool = False
    _done: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    async def wait(self, timeout: float = 2.0) -> RecordedRequest:
        """Wait until the fake has finished handling this request (streams keep running after
        the client's last read), so ``disconnected``/``chunks_sent`` are final."""
        await asyncio.wait_for(self._done.wait(), timeout)
        return self

    @property
    def api_key(self) -> str | None:
        """The credential the client presented, however this family carries it."""
        bearer = self.headers.get("authorization", "")
        token = bearer[7:].strip() if bearer.lower().startswith("bearer ") else None
        if self.family == "anthropic":
            return self.headers.get("x-api-key") or token
        if self.family == "gemini":
            return self.headers.get("x-goog-api-key") or self.query.get("key") or token
        return token


RECORD = web.RequestKey("record", RecordedRequest)  # where the middleware leaves the record


# =============================================================================================
# Code Assist and OAuth state

TIERS: dict[str, dict[str, Any]] = {
    "free-tier": {"id": "free-tier", "name": "Gemini Code Assist for individuals",
                  "description": "Gemini-powered code suggestions and chat in multiple IDEs",
                  "userDefinedCloudaicompanionProject": False},
    "standard-tier": {"id": "standard-tier", "name": "Gemini Code Assist",
                      "description": "Unlimited coding assistant with the most powerful Gemini models",
                      "userDefinedCloudaicompanionProject": True},
    "legacy-tier": {"id": "legacy-tier", "name": "Gemini Code Assist for individuals (legacy)",
                    "description": "Gemini Code Assist legacy tier", "userDefinedCloudaicompanionProject": True},
}


@dataclass
class CodeAssistState:
    """What ``loadCodeAssist``/``onboardUser`` report, and the project checks on generation.

    ``onboarded`` gives ``currentTier`` (else only ``allowedTiers`` with ``tier`` as default);
    ``project`` is the assigned ``cloudaicompanionProject`` (free tier: the managed project;
    None for a user-defined-project tier whose client must bring its own). Projects in
    ``forbidden_projects`` get 403 PERMISSION_DENIED everywhere. ``pending_polls`` > 0 makes
    ``onboardUser`` return ``done: false`` and ``GET /v1internal/operations/..`` finish after
    that many polls.
    """

    tier: str = "free-tier"
    onboarded: bool = False
    project: str | None = None
    managed_project: str = "fake-managed-project-123456"
    forbidden_projects: set[str] = field(default_factory=set)
    pending_polls: int = 0
    ineligible_tiers: list[dict[str, Any]] = field(default_factory=list)
    extra_load_fields: dict[str, Any] = field(default_factory=dict)
    operations: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {"polls", "response"}

    def tier_info(self, tier_id: str | None = None, default: bool = False) -> dict[str, Any]:
        info = dict(TIERS.get(tier_id or self.tier, {"id": tier_id or self.tier, "name": tier_id or self.tier}))
        if default:
            info["isDefault"] = True
        return info


@dataclass
class OAuthState:
    """The ``/token`` endpoint: which refresh tokens work (None = any), whether to fail, what it minted."""

    refresh_tokens: set[str] | None = None
    client_id: str | None = None  # when set, other client ids get 401 invalid_client
    fail: bool = False  # every refresh answers 400 invalid_grant
    expires_in: int = 3599
    scope: str = ("https://www.googleapis.com/auth/cloud-platform https://www.googleapis.com/auth/userinfo.email "
                  "https://www.googleapis.com/auth/userinfo.profile openid")
    refresh_calls: list[dict[str, str]] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)


# =============================================================================================
# Error shapes, one function per provider family

_OPENAI_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Country, region, or territory not supported"),
    404: ("invalid_request_error", "model_not_found", "The model `{model}` does not exist or you do not have access to it."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for {model} on requests per min (RPM): Limit 3, Used 3, Requested 1."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    503: ("server_error", None, "The engine is currently overloaded, please try again later"),
}
_ANTHROPIC_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."), 401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low to access the Anthropic API."),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "model: {model}"), 413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "This request would exceed the rate limit for your organization."),
    500: ("api_error", "Internal server error"), 503: ("overloaded_error", "Overloaded"),
    504: ("timeout_error", "Request timed out"), 529: ("overloaded_error", "Overloaded"),
}
_GOOGLE_ERRORS: dict[int, tuple[str, str]] = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: ("UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 access token, "
          "login cookie or other valid authentication credential. See "
          "https://developers.google.com/identity/sign-in/web/devconsole-project."),
    403: ("PERMISSION_DENIED", "The caller does not have permission"),
    404: ("NOT_FOUND", "models/{model} is not found for API version v1beta, or is not supported for "
          "generateContent. Call ListModels to see the list of available models and their supported methods."),
    409: ("ABORTED", "The operation was aborted."),
    429: ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    499: ("CANCELLED", "The operation was cancelled."),
    500: ("INTERNAL", "An internal error has occurred. Please retry or report in "
          "https://developers.generativeai.google/guide/troubleshooting"),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    504: ("DEADLINE_EXCEEDED", "The request timed out. Please try again."),
}


def openai_error(status: int, message: str | None = None, model: str = "", code: str | None = "") -> dict[str, Any]:
    """``{"error": {"message", "type", "param", "code"}}`` as api.openai.com sends it."""
    kind, default_code, text = _OPENAI_ERRORS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None, f"HTTP {status}"))
    return {"error": {"message": message or text.format(model=model), "type": kind, "param": None,
                      "code": default_code if code == "" else code}}


def anthropic_error(status: int, message: str | None = None, model: str = "") -> dict[str, Any]:
    """``{"type": "error", "error": {"type", "message"}, "request_id"}`` as api.anthropic.com sends it."""
    kind, text = _ANTHROPIC_ERRORS.get(status, ("api_error" if status >= 500 else "invalid_request_error", f"HTTP {status}"))
    return {"type": "error", "error": {"type": kind, "message": message or text.format(model=model)},
            "request_id": f"req_fake{uuid.uuid4().hex[:20]}"}


def google_error(status: int, message: str | None = None, model: str = "", retry_after: float | None = None,
                 reason: str | None = None, domain: str = "googleapis.com") -> dict[str, Any]:
    """``{"error": {"code", "message", "status", "details"?}}`` (google.rpc.Status as JSON).

    ``reason`` adds a ``google.rpc.ErrorInfo`` detail, ``retry_after`` a ``google.rpc.RetryInfo``
    with ``retryDelay: "<n>s"`` - Google APIs put retry hints in the body, not a header.
    """
    kind, text = _GOOGLE_ERRORS.get(status, ("INTERNAL" if status >= 500 else "FAILED_PRECONDITION", f"HTTP {status}"))
    body: dict[str, Any] = {"code": status, "message": message or text.format(model=model), "status": kind}
    details: list[dict[str, Any]] = []
    if reason:
        details.append({"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": domain,
                        "metadata": {"service": domain}})
    if retry_after is not None:
        details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_after:g}s"})
    if details:
        body["details"] = details
    return {"error": body}


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


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, headers=headers,
                        text=json.dumps(body, ensure_ascii=False), content_type="application/json")


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
                _strip_function_call_ids(item)
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


def _strip_function_call_ids(item: dict[str, Any]) -> None:
    """The Gemini API does not put ``id`` on ``functionCall`` parts; the codec does. Make it real."""
    for candidate in item.get("candidates") or []:
        for part in ((candidate or {}).get("content") or {}).get("parts") or []:
            if isinstance(part, dict) and isinstance(part.get("functionCall"), dict):
                part["functionCall"].pop("id", None)


# =============================================================================================
# The server


class FakeProvider:
    """A local fake of OpenAI, Anthropic, Gemini, Code Assist and Google OAuth, all on one port.

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

    async def start(self) -> FakeProvider:
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

    async def __aenter__(self) -> FakeProvider:
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

    def enqueue(self, *behaviours: Behaviour, model: str | None = None) -> FakeProvider:
        """Queue behaviours for the next generation requests (optionally only for ``model``)."""
        queue = self._queue if model is None else self._model_queues.setdefault(model, deque())
        queue.extend(behaviours)
        return self

    script = enqueue

    def on_model(self, model: str, behaviour: Behaviour | None) -> FakeProvider:
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
        r = app.router
        r.add_post("/v1/chat/completions", self._openai_chat)
        r.add_get("/v1/models", self._list_models)
        r.add_post("/v1/messages", self._anthropic_messages)
        r.add_get("/v1beta/models", self._gemini_models)
        r.add_get("/v1beta/models/{model}", self._gemini_model)
        r.add_post("/v1beta/models/{model}:generateContent", self._gemini_generate)
        r.add_post("/v1beta/models/{model}:streamGenerateContent", self._gemini_generate)
        r.add_post("/v1internal:loadCodeAssist", self._load_code_assist)
        r.add_post("/v1internal:onboardUser", self._onboard_user)
        r.add_post("/v1internal:generateContent", self._code_assist_generate)
        r.add_post("/v1internal:streamGenerateContent", self._code_assist_generate)
        r.add_get("/v1internal/operations/{name}", self._get_operation)
        r.add_post("/token", self._token)

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
        if family == "openai":
            message = ("You didn't provide an API key. You need to provide your API key in an Authorization "
                       "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)." if not key else
                       f"Incorrect API key provided: {_mask(key)}. You can find your API key at "
                       "https://platform.openai.com/account/api-keys.")
            return _json(openai_error(401, message, code=None if not key else "invalid_api_key"), 401)
        if family == "anthropic":
            message = "x-api-key header is required" if not key else "invalid x-api-key"
            return _json(anthropic_error(401, message), 401)
        if family == "gemini":
            if not key:
                message = ("Method doesn't allow unregistered callers (callers without established identity). "
                           "Please use API Key or other form of API consumer identity to call this API.")
                return _json(google_error(403, message), 403)
            return _json(google_error(400, "API key not valid. Please pass a valid API key.",
                                      reason="API_KEY_INVALID", domain="googleapis.com"), 400)
        reason = "CREDENTIALS_MISSING" if not key else "ACCESS_TOKEN_TYPE_UNSUPPORTED"
        return _json(google_error(401, reason=reason, domain="googleapis.com"), 401)

    # --- models -------------------------------------------------------------------------------

    async def _list_models(self, request: web.Request) -> web.Response:
        """``GET /v1/models`` is shared: Anthropic clients send ``x-api-key``/``anthropic-version``."""
        anthropic = "x-api-key" in request.headers or "anthropic-version" in request.headers
        family = "anthropic" if anthropic else "openai"
        request[RECORD].endpoint = "models"
        denied = self._auth_error(request, family)
        if denied is not None:
            return denied
        if anthropic:
            data = [{"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
                    for m in self.models]
            return _json({"data": data, "has_more": False, "first_id": self.models[0] if self.models else None,
                          "last_id": self.models[-1] if self.models else None})
        data = [{"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "fake"} for m in self.models]
        return _json({"object": "list", "data": data})

    def _gemini_model_info(self, name: str) -> dict[str, Any]:
        return {"name": f"models/{name}", "version": "001", "displayName": name, "description": f"Fake {name}",
                "inputTokenLimit": 1_048_576, "outputTokenLimit": 65_536,
                "supportedGenerationMethods": ["generateContent", "countTokens"]}

    async def _gemini_models(self, request: web.Request) -> web.Response:
        request[RECORD].endpoint = "models"
        denied = self._auth_error(request, "gemini")
        if denied is not None:
            return denied
        return _json({"models": [self._gemini_model_info(m) for m in self.models]})

    async def _gemini_model(self, request: web.Request) -> web.Response:
        request[RECORD].endpoint = "model"
        denied = self._auth_error(request, "gemini")
        if denied is not None:
            return denied
        name = request.match_info["model"]
        if name not in self.models:
            return _json(google_error(404, f"models/{name} is not found for API version v1beta"), 404)
        return _json(self._gemini_model_info(name))

    # --- generation entry points --------------------------------------------------------------

    async def _openai_chat(self, request: web.Request) -> web.StreamResponse:
        record: RecordedRequest = request[RECORD]
        body = record.body if isinstance(record.body, dict) else {}
        options = body.get("stream_options") if isinstance(body.get("stream_options"), dict) else {}
        return await self._generate(request, "openai", str(body.get("model") or ""), body.get("stream") is True,
                                    include_usage=options.get("include_usage") is True)

    async def _anthropic_messages(self, request: web.Request) -> web.StreamResponse:
        record: RecordedRequest = request[RECORD]
        denied = self._auth_error(request, "anthropic")
        if denied is None and "anthropic-version" not in request.headers:
            denied = _json(anthropic_error(400, "anthropic-version: header is required"), 400)
        body = record.body if isinstance(record.body, dict) else {}
        return await self._generate(request, "anthropic", str(body.get("model") or ""), body.get("stream") is True,
                                    denied=denied)

    async def _gemini_generate(self, request: web.Request) -> web.StreamResponse:
        stream = request.path.endswith(":streamGenerateContent")
        return await self._generate(request, "gemini", request.match_info["model"], stream,
                                    sse=request.query.get("alt") == "sse")

    async def _code_assist_generate(self, request: web.Request) -> web.StreamResponse:
        record: RecordedRequest = request[RECORD]
        stream = request.path.endswith(":streamGenerateContent")
        denied = self._auth_error(request, "code_assist")
        body = record.body if isinstance(record.body, dict) else {}
        if denied is None:
            denied = self._project_error(body.get("project"), for_generation=True)
        return await self._generate(request, "code_assist", str(body.get("model") or ""), stream,
                                    sse=request.query.get("alt") == "sse", denied=denied)

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
            return None, _json(error_body(family, 400, "Invalid JSON payload received."), 400)
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
                    raise CodecError("model", "model: required field is missing")
                if not isinstance(body, dict) or not isinstance(body.get("request"), dict):
                    raise CodecError("request", "request: required field is missing")
                body = body["request"]
            return gemini_wire.decode_request(body, model=model, stream=stream), None
        except CodecError as err:
            return None, _json(error_body(family, 400, err.message, model), 400)

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
            return _json(error_body(ex.family, err.status, err.message, ex.model, err.retry_after), err.status, headers)
        if isinstance(err.body, (str, bytes)):
            return web.Response(status=err.status, body=err.body if isinstance(err.body, bytes) else err.body.encode(),
                                headers={**headers, "Content-Type": err.content_type})
        return _json(err.body, err.status, headers)

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
            _strip_function_call_ids(body)
        if ex.family == "code_assist":
            return {"response": body, "traceId": f"fake-trace-{uuid.uuid4().hex[:16]}"}
        return body

    async def _reply(self, ex: _Exchange, response: ChatResponse) -> web.StreamResponse:
        if not ex.stream:
            ex.record.completed = True
            return _json(self._encode(ex, response))
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

    # --- Code Assist --------------------------------------------------------------------------

    def _project_error(self, project: Any, for_generation: bool = False) -> web.Response | None:
        """403 for a forbidden project (or, on generation, one other than the assigned project)."""
        state = self.code_assist
        if for_generation and not project:
            return _json(google_error(400, "Invalid project: project is required.", domain="cloudcode-pa.googleapis.com"), 400)
        wrong = for_generation and state.project is not None and project != state.project
        if project and (project in state.forbidden_projects or wrong):
            message = (f"Permission 'cloudaicompanion.companions.generateChat' denied on resource "
                       f"'//cloudaicompanion.googleapis.com/projects/{project}/locations/global' (or it may not exist).")
            return _json(google_error(403, message, reason="IAM_PERMISSION_DENIED",
                                      domain="cloudaicompanion.googleapis.com"), 403)
        return None

    async def _load_code_assist(self, request: web.Request) -> web.Response:
        """``LoadCodeAssistResponse``: ``currentTier`` once onboarded, else ``allowedTiers`` to pick from."""
        record: RecordedRequest = request[RECORD]
        record.endpoint = "loadCodeAssist"
        denied = self._auth_error(request, "code_assist")
        body = record.body if isinstance(record.body, dict) else {}
        denied = denied or self._project_error(body.get("cloudaicompanionProject"))
        if denied is not None:
            return denied
        state = self.code_assist
        allowed = [state.tier_info(t, default=(t == state.tier)) for t in TIERS]
        if state.tier not in TIERS:
            allowed.insert(0, state.tier_info(default=True))
        out: dict[str, Any] = {"allowedTiers": allowed}
        if state.onboarded:
            out["currentTier"] = state.tier_info()
            if state.project:
                out["cloudaicompanionProject"] = state.project
        if state.ineligible_tiers:
            out["ineligibleTiers"] = state.ineligible_tiers
        out.update(state.extra_load_fields)
        return _json(out)

    async def _onboard_user(self, request: web.Request) -> web.Response:
        """``OnboardUserRequest`` -> a long-running operation; done at once unless ``pending_polls``."""
        record: RecordedRequest = request[RECORD]
        record.endpoint = "onboardUser"
        denied = self._auth_error(request, "code_assist")
        body = record.body if isinstance(record.body, dict) else {}
        project = body.get("cloudaicompanionProject")
        denied = denied or self._project_error(project)
        if denied is not None:
            return denied
        tier_id = body.get("tierId") or self.code_assist.tier
        user_defined = TIERS.get(tier_id, {}).get("userDefinedCloudaicompanionProject", True)
        if not user_defined and project:
            # Gemini CLI (setup.ts): setting a project for the free tier "causes a Precondition Failed error".
            return _json({"error": {"code": 400, "message": "Precondition check failed.",
                                    "status": "FAILED_PRECONDITION"}}, 400)
        state = self.code_assist
        assigned = project if user_defined else state.managed_project
        state.tier, state.onboarded = tier_id, True
        state.project = assigned or state.project
        response: dict[str, Any] = {"@type": "type.googleapis.com/google.internal.cloud.code.v1internal.OnboardUserResponse"}
        if assigned:
            response["cloudaicompanionProject"] = {"id": assigned, "name": assigned}
        name = f"operations/onboard-{next(self._counter)}"
        if state.pending_polls > 0:
            state.operations[name.split("/", 1)[1]] = {"polls": state.pending_polls, "response": response}
            return _json({"name": name, "done": False})
        return _json({"name": name, "done": True, "response": response})

    async def _get_operation(self, request: web.Request) -> web.Response:
        """``GET /v1internal/operations/{name}``: done once polled ``pending_polls`` times."""
        request[RECORD].endpoint = "getOperation"
        denied = self._auth_error(request, "code_assist")
        if denied is not None:
            return denied
        key = request.match_info["name"]
        operation = self.code_assist.operations.get(key)
        if operation is None:
            return _json(google_error(404, f"Operation operations/{key} not found."), 404)
        operation["polls"] -= 1
        if operation["polls"] > 0:
            return _json({"name": f"operations/{key}", "done": False})
        return _json({"name": f"operations/{key}", "done": True, "response": operation["response"]})

    # --- OAuth --------------------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        """Google's token endpoint, refresh grant only: mints a Bearer token Code Assist accepts."""
        record: RecordedRequest = request[RECORD]
        record.endpoint, record.family = "token", "oauth"
        form = record.form if record.form is not None else (record.body if isinstance(record.body, dict) else {})
        form = {str(k): str(v) for k, v in form.items()}
        state = self.oauth
        state.refresh_calls.append(form)
        if form.get("grant_type") != "refresh_token":
            return _json({"error": "unsupported_grant_type", "error_description": "Invalid grant_type: "
                          + form.get("grant_type", "")}, 400)
        if not form.get("client_id"):
            return _json({"error": "invalid_request", "error_description": "Could not determine client ID from request."}, 400)
        if state.client_id is not None and form["client_id"] != state.client_id:
            return _json({"error": "invalid_client", "error_description": "The OAuth client was not found."}, 401)
        known = state.refresh_tokens is None or form.get("refresh_token") in state.refresh_tokens
        if state.fail or not form.get("refresh_token") or not known:
            return _json({"error": "invalid_grant", "error_description": "Token has been expired or revoked."}, 400)
        token = f"ya29.fake-{next(self._counter)}-{uuid.uuid4().hex[:12]}"
        state.issued.append(token)
        self.keys["code_assist"].add(token)
        return _json({"access_token": token, "expires_in": state.expires_in, "token_type": "Bearer",
                      "scope": state.scope})


def _mask(key: str) -> str:
    """OpenAI shows only the ends of a wrong key."""
    return key if len(key) <= 8 else f"{key[:3]}{'*' * 12}{key[-4:]}"
