"""What every HTTP connector shares: a pooled aiohttp session, timeouts, key rotation, SSE reading,
and the one place where provider statuses and socket errors become :class:`BackendError` kinds.

aiohttp's ClientSession is the outbound client because it measured fastest here
(``benchmarks/proxy_bench.py``: aiohttp vs httpx pass-through): the data plane must not be the bottleneck.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import re
import time
from typing import Any, AsyncIterator, Awaitable, Callable, ClassVar, Mapping

import aiohttp
from yarl import URL

from router.wire import fastjson
from router.wire.canonical import ChatRequest, ChatResponse, StreamError, StreamEvent
from router.wire.codec import Codec, CodecError
from router.wire.sse import LineTooLong, SSEParser, event_end

from .base import Backend, BackendError, ErrorClass, ErrorKind, Health
from .cooldowns import CooldownStore
from .keys import Key, KeyChoice, KeyPool
from .redaction import redact, redact_url
from .settings import ConnectorSettings, Timeouts

MODELS_TTL = 300.0
# How much of a provider's text an error message quotes. Redaction runs on a longer stretch
# first, so a key cut by the clip is still recognised whole.
MESSAGE_CHARS = 500
_REDACT_MARGIN = 4096
# How much of an error reply is read: its message is quoted clipped and its class is told from
# its start, so the rest (a provider or proxy may send an endless one) is left unread.
ERROR_BODY_BYTES = 1024 * 1024


async def _read_at_most(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The start of ``response``'s body, at most ``limit`` bytes, read as it arrives (never more
    than ``limit`` is held). The one way a body is read off a provider's reply: error bodies are
    read to ``ERROR_BODY_BYTES``, whole replies to one byte over ``max_response_bytes`` (so an
    oversized one is told from one that is exactly the limit). Releasing the response afterwards
    closes its connection when more was left unread."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await response.content.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def clipped(text: str, secrets: list[str], limit: int = MESSAGE_CHARS) -> str:
    """Provider text fit for a client, a log line or a usage row: redacted, then at most ``limit`` characters."""
    text = redact(text[:limit + _REDACT_MARGIN], secrets)
    return text if len(text) <= limit else text[:limit] + "..."


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)s\s*$")


def retry_delay_from_body(body: bytes) -> float | None:
    """Seconds from a ``google.rpc.RetryInfo`` detail (``"retryDelay": "2.5s"``): Gemini and Code
    Assist send their retry hint in the error body, not in a Retry-After header."""
    if b"RetryInfo" not in body:
        return None
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if isinstance(data, list) and data:
        data = data[0]
    err = data.get("error") if isinstance(data, dict) else None
    details = err.get("details") if isinstance(err, dict) else None
    for detail in details if isinstance(details, list) else ():
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            match = _DURATION.match(str(detail.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    return None


def classify_status(status: int) -> ErrorKind:
    if status in (401, 403):
        return "auth"
    if status == 429:
        return "rate_limited"
    if status in (503, 529):
        return "overloaded"
    if status in (408, 504):
        return "timeout"
    if status == 404:
        return "not_found"
    if 400 <= status < 500:
        return "bad_request"
    return "server"


def provider_message(body: bytes) -> str:
    """The provider's own error message from any of the three error shapes, else the raw text
    (whole: the caller redacts before it clips, see :func:`clipped`)."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return text or "no error message"
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return err["message"]
        if isinstance(err, str):
            return err
    return text


_VERSION_SEGMENT = re.compile(r"/v\d+(?:alpha\d*|beta\d*|internal)?(?=/|$)")


def with_api_version(url: str, version: str = "/v1") -> str:
    """``url`` with an API version in its path: ``http://host:11434`` → ``http://host:11434/v1``;
    one that has a version anywhere in its path (``…/api/v1``, ``…/v1beta/openai``) is kept."""
    return url if _VERSION_SEGMENT.search(URL(url).path) else url + version


def without_api_version(url: str, *versions: str) -> str:
    """``url`` without a trailing API version of ``versions``: ``https://api.anthropic.com/v1`` →
    ``https://api.anthropic.com`` (the connector adds the version to every path itself)."""
    for version in versions:
        if url.endswith(version):
            return url[: -len(version)].rstrip("/")
    return url


class HttpBackend(Backend):
    """Base of the provider connectors. Subclasses name their codec and say where to send.

    ``base_url`` is accepted with or without the API version (``/v1``, ``/v1beta``): each type
    fits it to what its paths expect (:meth:`fit_base_url`), so an operator's guess of where the
    version goes is never a 404.
    """

    default_base_url = ""
    codec: ClassVar[Codec]  # the wire format the provider speaks (a router/wire module)
    # True when auth_headers() depends on the key alone, so the headers per key can be kept.
    headers_follow_key = True

    def __init__(self, settings: ConnectorSettings, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(settings.name)
        self.settings = settings
        self.base_url = self.fit_base_url((settings.base_url or self.default_base_url).rstrip("/"))
        self.shown_url = redact_url(self.base_url)  # the base URL as messages may show it
        if "@" in URL(self.base_url).raw_authority:
            # load_config refuses these with the setting's position; settings made in code end
            # here, at start-up, instead of in aiohttp's ValueError (a 500) on the first request
            raise ValueError(f"backend {settings.name!r}: credentials in base_url are not supported "
                             f"({self.shown_url}); use api_key or an Authorization header in headers")
        self.timeouts: Timeouts = settings.timeouts
        self._slow_start_timeout = aiohttp.ClientTimeout(total=None, connect=self.timeouts.connect,
                                                 sock_read=self.timeouts.first_byte)
        self.keys = KeyPool.of(settings.api_keys, clock, backend=settings.name)
        self.extra_headers = dict(settings.headers)
        self._session: aiohttp.ClientSession | None = None
        self._models: tuple[float, list[str]] | None = None
        self._urls: dict[str, URL] = {}
        self._headers: dict[tuple[str, bool], dict[str, str]] = {}

    @classmethod
    def fit_base_url(cls, url: str) -> str:
        """The configured base URL as this type's paths expect it (see the class docstring)."""
        return url

    # ---- plumbing --------------------------------------------------------------------------------

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=60, ttl_dns_cache=300)
            timeout = aiohttp.ClientTimeout(total=None, connect=self.timeouts.connect, sock_read=self.timeouts.idle)
            # No cookie jar: the session is shared by every client of this backend, and a cookie a
            # provider sets for one request must not ride along on everyone else's.
            self._session = aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=True,
                                                  json_serialize=json.dumps, cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    def auth_headers(self, key: str) -> dict[str, str]:
        raise NotImplementedError

    def secrets(self) -> list[str]:
        """What must never appear in text we let out: the keys, and secret-looking header values."""
        return list(self.settings.secrets)

    def redact(self, text: str) -> str:
        """Provider or socket text fit to show (see :mod:`backends.redaction`), clipped."""
        return clipped(text, self.secrets())

    def _send(self, method: str, url: str, key: str, body: Any | None,
              params: Mapping[str, str] | None = None) -> Awaitable[aiohttp.ClientResponse]:
        """The request, as an awaitable that gives the response once its headers arrived within
        the first-byte timeout. Not a coroutine itself (one frame less per request): ``call``
        awaits it and turns socket errors into BackendErrors (``_connection_error``)."""
        headers = self._headers.get((key, body is not None)) if self.headers_follow_key else None
        if headers is None:  # the same few per backend: made once (aiohttp copies what it is given)
            headers = {**self.extra_headers, **self.auth_headers(key)}
            if body is not None:
                headers["Content-Type"] = "application/json"
            if self.headers_follow_key:
                if len(self._headers) >= 64:
                    self._headers.clear()
                self._headers[(key, body is not None)] = headers
        target = self._urls.get(url)
        if target is None:  # parsed once: a backend calls a handful of URLs (Gemini: one per model)
            if len(self._urls) >= 512:
                self._urls.clear()
            target = self._urls[url] = URL(url)
        data = fastjson.dumps(body) if body is not None else None
        if self.timeouts.first_byte == self.timeouts.idle:
            # aiohttp's sock_read (= idle) already bounds the wait for the first byte: no timer
            # of our own per request (each costs a loop lookup and a heap entry).
            return self.session.request(method, target, data=data, headers=headers, params=params)
        if self.timeouts.first_byte > self.timeouts.idle:
            return self._slow_start(method, target, data, headers, params)
        return self._within_first_byte(method, target, data, headers, params)

    async def _slow_start(self, method: str, target: URL, data: bytes | None, headers: dict[str, str],
                          params: Mapping[str, str] | None) -> aiohttp.ClientResponse:
        # sock_read also bounds the wait for the headers, so the idle limit would cut a slow
        # start short: wait up to first_byte for them, then hold the socket to idle.
        response = await self.session.request(method, target, data=data, headers=headers, params=params,
                                              timeout=self._slow_start_timeout)
        protocol = response.connection.protocol if response.connection is not None else None
        if protocol is not None:
            protocol.read_timeout = self.timeouts.idle
        return response

    async def _within_first_byte(self, method: str, target: URL, data: bytes | None, headers: dict[str, str],
                                 params: Mapping[str, str] | None) -> aiohttp.ClientResponse:
        async with asyncio.timeout(self.timeouts.first_byte):
            return await self.session.request(method, target, data=data, headers=headers, params=params)

    def _connection_error(self, exc: BaseException, method: str = "", url: str = "") -> BackendError:
        """What a failed send means, as a classified error."""
        if isinstance(exc, (TimeoutError, aiohttp.ServerTimeoutError)):
            called = f" ({method} {redact_url(url)})" if url else ""
            return BackendError("timeout", f"no response within {self.timeouts.first_byte:g}s{called}",
                                backend=self.name)
        if isinstance(exc, aiohttp.ClientConnectorError):
            message = f"cannot connect to {self.shown_url}: {exc.os_error or exc}"
        elif isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError)):
            message = f"connection to {self.shown_url} failed: {exc}"
        else:
            message = f"request to {self.shown_url} failed: {exc}"
        # aiohttp's own text may quote the URL it was given: redact the whole message
        return BackendError("connection", self.redact(message), backend=self.name)

    async def _error_from(self, response: aiohttp.ClientResponse) -> BackendError:
        try:
            body = await asyncio.wait_for(_read_at_most(response, ERROR_BODY_BYTES), timeout=self.timeouts.idle)
        except (asyncio.TimeoutError, aiohttp.ClientError):
            body = b""
        finally:
            response.release()
        kind = self.classify(response.status, body)
        message = self.redact(provider_message(body))
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if retry_after is None:
            retry_after = retry_delay_from_body(body)
        status = str(response.status)
        if not message.startswith(status):  # aiohttp-style bodies say "404: Not Found" themselves
            message = f"{status} {message}"
        # The URL called (never its credentials), so a wrong base_url or model shows where it went.
        called = f"{response.method} {redact_url(str(response.url.with_query(None)))}"
        return BackendError(kind, f"{message} ({called})", status=response.status,
                            retry_after=retry_after, backend=self.name,
                            error_class=self.error_class(response.status, body))

    def classify(self, status: int, body: bytes) -> ErrorKind:
        return classify_status(status)

    def share_cooldowns(self, store: CooldownStore) -> None:
        self.keys.store = store

    def error_class(self, status: int, body: bytes) -> ErrorClass | None:
        """The ``on:`` class of an error reply when its kind alone does not tell it (a prompt too
        long, a policy refusal); None leaves it to the kind. Each provider says these its own way."""
        return None

    async def call(self, method: str, url: str, body: Any | None, params: Mapping[str, str] | None = None,
                   keys: KeyChoice | None = None, model: str = "") -> tuple[aiohttp.ClientResponse, Key]:
        """One logical call about ``model`` (empty for calls about no model: listings, set-up):
        try keys in rotation; a 429/401 cools that key for that model and moves to the next.
        ``keys`` says which keys may be tried and gets the label of each one sent with."""
        gate = keys.allow if keys is not None else None
        last: BackendError | None = None
        gated = 0
        for key in self.keys.candidates(model):
            if gate is not None:
                allowed = gate(key.label)
                if not isinstance(allowed, bool):  # a shared limiter's gate is awaited
                    allowed = await allowed
                if not allowed:
                    gated += 1
                    continue
            if keys is not None:
                keys.used = key.label
            try:
                response = await self._send(method, url, key.value, body, params)
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise self._connection_error(exc, method, url) from None
            if response.status < 400:
                self.keys.succeeded(key, model)
                return response, key
            error = await self._error_from(response)
            if error.kind in ("auth", "rate_limited") and len(self.keys) > 1:
                self.keys.cool_down(key, error.retry_after, model)
                last = error
                continue
            raise error
        if last is not None:
            # the backend is usable again as soon as its first key is, not when the last one is
            last.retry_after = self.keys.retry_after(model) or last.retry_after or None
            raise last
        if gated:
            raise BackendError("rate_limited", "the per-key rate limits of every key of this backend are exhausted",
                               retry_after=1.0, backend=self.name)
        raise BackendError("rate_limited", f"every API key of this backend is cooling down for {model or 'this call'}",
                           retry_after=self.keys.retry_after(model) or 1.0, backend=self.name)

    async def read_json(self, response: aiohttp.ClientResponse) -> Any:
        """A whole reply's JSON, read to at most ``max_response_bytes`` (a larger reply, told by its
        Content-Length before any of it is read, or by its bytes as they arrive, is a ``server``
        error: 502, and the chain's next target is tried)."""
        limit = self.settings.max_response_bytes
        try:
            declared = response.content_length
            if declared is not None and declared > limit:
                raise self._too_large(limit, f"it declares {declared} bytes")
            raw = await _read_at_most(response, limit + 1)
            if len(raw) > limit:
                raise self._too_large(limit, "it was not read further")
        except asyncio.TimeoutError:
            raise BackendError("timeout", f"response body idle for more than {self.timeouts.idle:g}s",
                               backend=self.name) from None
        except aiohttp.ClientError as exc:
            raise BackendError("connection", self.redact(f"response body was cut off: {exc}"),
                               backend=self.name) from None
        except BackendError:
            response.close()  # the rest is never read: drop the connection rather than drain it
            raise
        finally:
            response.release()
        try:
            return fastjson.loads(raw)
        except fastjson.JSONDecodeError:
            raise BackendError("server", f"the provider sent a body that is not JSON: {self.quote(raw)}",
                               backend=self.name) from None

    def _too_large(self, limit: int, how: str) -> BackendError:
        return BackendError("server", f"the provider's reply is larger than {limit} bytes "
                            f"(backends.{self.name}.max_response_bytes); {how}", backend=self.name,
                            repeatable=False)  # the same request gets the same reply: not asked twice

    def quote(self, data: bytes | str) -> str:
        """A short redacted quote of what the provider sent, for an error message."""
        return repr(clipped(data.decode("utf-8", "replace") if isinstance(data, bytes) else data,
                            self.secrets(), 200))

    # ---- capabilities ----------------------------------------------------------------------------

    async def list_models(self) -> list[str]:
        """Configured models, else the provider's list, cached for five minutes."""
        if self.settings.models:
            return list(self.settings.models)
        now = time.monotonic()
        if self._models and now - self._models[0] < MODELS_TTL:
            return self._models[1]
        models = await self.fetch_models()
        self._models = (now, models)
        return models

    async def fetch_models(self) -> list[str]:
        return []

    async def model_ids(self, url: str, list_key: str, id_key: str) -> list[str]:
        """GET a provider's model listing: ``{list_key: [{id_key: ...}, ...]}``."""
        response, _key = await self.call("GET", url, None)
        data = await self.read_json(response)
        items = data.get(list_key, []) if isinstance(data, dict) else []
        return [str(m[id_key]) for m in items if isinstance(m, dict) and id_key in m]

    async def health(self) -> Health:
        started = time.perf_counter()
        try:
            await asyncio.wait_for(self.fetch_models(), timeout=min(10.0, self.timeouts.first_byte))
        except BackendError as exc:
            return Health(False, (time.perf_counter() - started) * 1000, exc.kind)
        except asyncio.TimeoutError:
            return Health(False, (time.perf_counter() - started) * 1000, "timeout")
        return Health(True, (time.perf_counter() - started) * 1000)

    async def complete(self, request: ChatRequest, keys: KeyChoice | None = None
                       ) -> ChatResponse:  # pragma: no cover - abstract
        raise NotImplementedError

    def stream(self, request: ChatRequest, keys: KeyChoice | None = None
               ) -> AsyncIterator[StreamEvent]:  # pragma: no cover - abstract
        raise NotImplementedError

    # ---- reading replies with the codec ----------------------------------------------------------

    def decode(self, data: Any) -> ChatResponse:
        """A whole reply, read with the provider's codec (an unreadable one is a BackendError)."""
        return decode_or_fail(self, self.codec.decode_response, data)

    def events(self, open_response: Callable[[], Awaitable[aiohttp.ClientResponse]],
               unwrap: Callable[[Any], Any] | None = None) -> EventStream:
        """A streamed reply as canonical events, read with the provider's codec. The call is
        made (``open_response``) when the first event is asked for, as ``Backend.stream`` requires."""
        return EventStream(self, open_response, self.codec.StreamDecoder(), unwrap)


class EventStream:
    """A provider's SSE body as canonical events: ``[DONE]`` and EOF both finish the decoder.
    ``unwrap``: what of each frame the decoder reads (Code Assist wraps Gemini's frames).

    It is an async iterator of events (``Backend.stream``'s contract) and also hands out, at once,
    every event one upstream read completed (:meth:`next_batch`, :meth:`ready`): the relay then
    encodes them together and writes once per upstream read instead of once per event, and no
    async generator is resumed per event. (Replacing the generators ``sse_data`` ->
    ``stream_events`` -> the connector's ``stream``, and Falcon's one ASGI send per event, cut
    the proxy's instructions per streamed reply; see ``benchmarks/inprocess_bench.py --stream``.)

    The stream's first event is handed out (``__anext__``, dispatch's wait for the first event)
    as soon as its frame is parsed and decoded: the rest of the same read waits, unparsed, until
    :meth:`ready` or :meth:`next_batch` asks for it, after the first byte has gone to the client.
    A short reply arrives in one read (every event at once); decoding the eight events behind the
    first one was ~20% of the proxy's work before the client's first byte, and splitting them into
    SSE frames another ~7% (``benchmarks/inprocess_bench.py --stream --ttfb --one-read``).

    Socket trouble mid-stream, or a line over ``max_line_bytes``, becomes a :class:`BackendError`
    (the frames completed before an over-long line are passed on first). A provider's error event
    becomes a :class:`StreamError` whose message reaches the client and the usage row: it is
    redacted here, at the boundary, like every other provider text. Closing (``aclose``), an
    error, or the end closes the upstream response.
    """

    __slots__ = ("_backend", "_open", "_decoder", "_unwrap", "_response", "_parser", "_pending", "_frames", "_raw",
                 "_done", "_error")

    def __init__(self, backend: HttpBackend, open_response: Callable[[], Awaitable[aiohttp.ClientResponse]],
                 decoder: Any, unwrap: Callable[[Any], Any] | None = None) -> None:
        self._backend = backend
        self._open = open_response
        self._decoder = decoder
        self._unwrap = unwrap
        self._response: aiohttp.ClientResponse | None = None
        self._parser = SSEParser(backend.settings.max_line_bytes)
        self._pending: list[StreamEvent] = []
        self._frames: list[tuple[str | None, str]] = []  # parsed, not decoded yet (see the class docstring)
        self._raw = b""  # read, not parsed yet: what followed the first event in its read
        self._done = False
        self._error: BackendError | None = None  # raised after the events read before it are passed on

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> StreamEvent:
        if not self._pending:
            self._pending = await self.next_batch(first=True)
            if not self._pending:
                raise StopAsyncIteration
        return self._pending.pop(0)

    def ready(self) -> list[StreamEvent]:
        """The events already read and not yet handed out (no waiting)."""
        pending, self._pending = self._pending, []
        if self._raw:
            raw, self._raw = self._raw, b""
            self._frames += self._parse(raw)  # a line too long: the frames before it, the error after them
        if self._frames:
            frames, self._frames = self._frames, []
            try:
                pending += self._decode(frames)
            except BaseException:  # as in next_batch: an error closes the upstream response
                self._close()
                raise
        return pending

    async def next_batch(self, first: bool = False) -> list[StreamEvent]:
        """The events of the next upstream read that completes any (those already read first);
        an empty list once the stream is over. ``first``: only up to the first frame that gives
        an event, the rest of its read kept for later (``__anext__``)."""
        if self._pending or self._frames or self._raw:
            events = self.ready()
            if events or (self._done and self._error is None):
                return events
            # what was kept back gave no event (a finish chunk whose end comes later): read on
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        if self._done:
            return []
        try:
            response = self._response
            if response is None:
                response = self._response = await self._open()
            content = response.content
            while True:
                try:
                    chunk = await content.readany()
                except asyncio.TimeoutError:
                    raise BackendError("timeout", f"stream idle for more than {self._backend.timeouts.idle:g}s",
                                       backend=self._backend.name) from None
                except aiohttp.ClientError as exc:
                    raise BackendError("connection", self._backend.redact(f"stream was cut off: {exc}"),
                                       backend=self._backend.name) from None
                if not chunk:
                    events = self._decode(self._parser.close())
                    return events + self._end()
                events = self._first_events(chunk) if first else self._decode(self._parse(chunk))
                if events:
                    return events
                if self._error is not None:  # a line too long, and no good event before it
                    error, self._error = self._error, None
                    raise error
                if self._done:
                    return events
        except BaseException:
            self._close()
            raise

    def _parse(self, chunk: bytes) -> list[tuple[str | None, str]]:
        """The SSE frames ``chunk`` completes. A line over ``max_line_bytes`` is not a frame we could
        ever read: the good frames before it are returned, and the stream ends with an error after
        them (kept in ``_error``; before the first event that is a failover, after it the client
        gets its format's error event)."""
        try:
            return self._parser.feed(chunk)
        except LineTooLong as exc:
            self._error = BackendError(
                "server", f"the provider sent a stream line longer than {exc.limit} bytes "
                f"(backends.{self._backend.name}.max_line_bytes); the stream was ended",
                backend=self._backend.name)
            self._close()
            return exc.frames

    def _first_events(self, chunk: bytes) -> list[StreamEvent]:
        """The events of ``chunk`` up to the first frame that gives any. What follows that frame
        is kept for :meth:`ready`: the rest of the read unparsed in ``_raw``, frames of the same
        piece undecoded in ``_frames``. A piece is ``chunk`` up to the end of its next event
        (:func:`~router.wire.sse.event_end`)."""
        start = 0
        while start < len(chunk):
            end = event_end(chunk, start)
            frames = self._parse(chunk[start:end])
            if self._error is not None:  # a line too long: the good frames, then the error
                return self._decode(frames)
            for i in range(len(frames)):
                events = self._decode(frames[i:i + 1])
                if self._done:
                    return events
                if events:
                    self._frames, self._raw = frames[i + 1:], chunk[end:]
                    return events
            start = end
        return []

    def _decode(self, frames: list[tuple[str | None, str]]) -> list[StreamEvent]:
        """The events of ``frames``, in order."""
        events: list[StreamEvent] = []
        decoder, unwrap, backend = self._decoder, self._unwrap, self._backend
        for _event, data in frames:
            if data == "[DONE]":
                return events + self._end()
            try:
                obj = fastjson.loads(data)
            except fastjson.JSONDecodeError:
                raise BackendError("server", f"the provider sent a stream frame that is not JSON: {backend.quote(data)}",
                                   backend=backend.name) from None
            for event in decoder.feed(obj if unwrap is None else unwrap(obj)):
                if type(event) is StreamError:
                    event.message = backend.redact(event.message)
                events.append(event)
        return events

    def _end(self) -> list[StreamEvent]:
        """The decoder's last events; the stream is over and the response closed."""
        self._done = True
        self._close()
        events = self._decoder.finish()
        for event in events:
            if type(event) is StreamError:
                event.message = self._backend.redact(event.message)
        return events

    def _close(self) -> None:
        self._done = True
        if self._response is not None:
            self._response.close()

    async def aclose(self) -> None:
        self._pending, self._frames, self._raw = [], [], b""
        self._close()


def decode_or_fail(backend: HttpBackend, decode: Callable[[Any], ChatResponse], data: Any) -> ChatResponse:
    """A provider reply we cannot read is the provider's fault: 502, not a crash."""
    try:
        return decode(data)
    except CodecError as exc:
        raise BackendError("server", backend.redact(f"unreadable reply from the provider: {exc.message}"),
                           backend=backend.name) from None
