"""Client connections: how long a client may take to send a request, and how many may be open.

uvicorn closes idle kept-alive connections (``timeout_keep_alive``) but nothing bounds the time a
client takes to *send* a request: one header line every few seconds (slowloris), or a body
dribbled a byte at a time, holds a connection for as long as the client likes, and enough of them
hold every file descriptor. :class:`LimitedProtocol` is uvicorn's httptools protocol with one timer
per connection and a connection bound, from the ``server`` section of the config:

* ``header_timeout`` — from the moment a connection opens (or the first byte of the next request on
  a kept-alive one) until the request's headers are complete. On expiry: a 408 if part of a
  request arrived, else a plain close (an idle connection, as keep-alive expiry does).
* ``body_timeout`` — from the end of the headers until the whole body is in. On expiry: a 408 if
  no reply has started, else a close (a client still sending after its reply, e.g. after a 401).
* While the server holds a request up (it is not reading, or an earlier reply on the connection is
  still going out: pipelining), the client is not the slow one: the timer starts over.
* ``max_connections`` — a connection opened beyond it is closed at once, before anything is read,
  so clients over the limit hold nothing (SDKs retry a refused connection like a 503).

A request that arrives in one packet (every SDK's) never arms a timer: timers are armed only after
a read leaves a request incomplete. Errors are JSON in the error shape of the request's path, like
the app's own, and so is the 400 for bytes the HTTP parser refuses (uvicorn's is plain text).
* ``keep_alive_timeout`` — how long an idle kept-alive connection stays open (uvicorn's own timer,
  set per connection): longer than clients' own idle expiry, so the client closes first.

The settings are read from the live config when a connection opens, so a reload applies to new
connections.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, ClassVar

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from ..wire import fastjson
from ..config import ServerConfig
from ..errors import ProxyError
from ..frontends import frontend_for_path

if TYPE_CHECKING:  # pragma: no cover
    from ..state import StateRef

log = logging.getLogger("llm_proxy.connections")

_DEFAULTS = ServerConfig()
_IDLE, _HEADERS, _BODY = 0, 1, 2  # where a connection is in its current request
_WARN_EVERY = 10.0  # seconds between two "connection limit reached" warnings


class LimitedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus header/body read timeouts and a connection bound."""

    ref: ClassVar["StateRef | None"] = None  # whose config applies; bound by :func:`protocol_for`
    _last_warning: ClassVar[float] = 0.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        ref = self.ref
        self.settings: ServerConfig = ref.state.config.server if ref is not None else _DEFAULTS
        self.timeout_keep_alive = self.settings.keep_alive_timeout  # uvicorn's idle timer, from the live config
        self._phase = _HEADERS  # a new connection owes us a request's headers
        self._request_begun = False
        self._served = False  # a request has begun on this connection
        self._timer: asyncio.TimerHandle | None = None
        self._timer_phase = _IDLE

    # ---- connection lifecycle --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.settings.max_connections:
            self._warn_limit()
            transport.close()
            return
        self._sync_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._phase != self._timer_phase:  # only when a read left a request incomplete (or finished one)
            self._sync_timer()

    # ---- parser callbacks: track the phase -----------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._served:  # a later request on the connection: its own clock (the first's runs from connect)
            self._cancel_timer()
        self._served = True
        self._request_begun = True
        self._phase = _HEADERS

    def on_headers_complete(self) -> None:
        self._phase = _BODY
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._phase = _IDLE
        self._request_begun = False
        super().on_message_complete()

    # ---- timers ------------------------------------------------------------------------------------------

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_phase = _IDLE

    def _sync_timer(self) -> None:
        """One timer for the phase the connection is in; none while idle (keep-alive's own timer)."""
        phase = self._phase
        self._cancel_timer()
        if phase == _IDLE or self.transport is None or self.transport.is_closing():
            return
        seconds = self.settings.header_timeout if phase == _HEADERS else self.settings.body_timeout
        self._timer = self.loop.call_later(seconds, self._expired, phase)
        self._timer_phase = phase

    def _expired(self, phase: int) -> None:
        self._timer = None
        self._timer_phase = _IDLE
        if self.transport.is_closing() or self.transport.get_protocol() is not self:
            return
        if self._server_holds_up(phase):
            self._sync_timer()
            return
        if phase == _HEADERS:
            if not self._request_begun:  # nothing of a request arrived: just an idle connection
                self.transport.close()
                return
            self._reply(408, f"request headers not received within {self.settings.header_timeout:g} seconds "
                             "(server.header_timeout)", "timeout")
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            self._reply(408, f"request body not received within {self.settings.body_timeout:g} seconds "
                             "(server.body_timeout)", "timeout")
            cycle.disconnected = True  # the app stops waiting for the body; its reply goes nowhere
            cycle.message_event.set()
        else:
            self.transport.close()

    def _server_holds_up(self, phase: int) -> bool:
        """True while the server, not the client, holds the request up: it is not reading (flow
        control), or an earlier reply on this connection is still going out (a pipelined request
        waits for it, and a 408 written now would cut into that reply)."""
        if self.flow is not None and self.flow.read_paused:
            return True
        if phase == _BODY:
            return bool(self.pipeline)  # our request is queued behind another
        cycle = self.cycle  # in the header phase: the previous request's, if any
        return cycle is not None and not cycle.response_complete

    # ---- replies written here, not by the app --------------------------------------------------------

    def send_400_response(self, msg: str) -> None:
        """Bytes the HTTP parser refuses (control characters, invalid UTF-8 in the request line)."""
        self._reply(400, "invalid HTTP request: the request line or a header is malformed", "invalid_request")

    def _reply(self, status: int, message: str, kind: str) -> None:
        """A JSON error in the shape of the request's path (as far as it arrived), then close."""
        path, method = self._target()
        body = fastjson.dumps(frontend_for_path(path, method).codec.encode_error(ProxyError(status, message, kind)))
        head = [STATUS_LINE[status]]
        head += [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
        head.append(b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body))
        self.transport.write(b"".join(head) + body)
        self.transport.close()
        log.info("%s: %d %s", self.client[0] if self.client else "client", status, message)

    def _target(self) -> tuple[str, str]:
        scope = self.scope
        if scope is not None and "path" in scope:
            return scope["path"], scope.get("method", "POST")
        url: bytes = getattr(self, "url", b"") or b"/"
        try:
            method = self.parser.get_method().decode("ascii") if self.parser is not None else "POST"
        except Exception:  # noqa: BLE001 - the method was not parsed (yet)
            method = "POST"
        return url.split(b"?", 1)[0].decode("latin-1"), method

    @classmethod
    def _warn_limit(cls) -> None:
        now = time.monotonic()
        if now - cls._last_warning >= _WARN_EVERY:
            cls._last_warning = now
            log.warning("connection limit reached (server.max_connections): closing new connections")


def protocol_for(ref: "StateRef") -> type[LimitedProtocol]:
    """The protocol class for one app (uvicorn makes an instance per connection)."""
    return type("LimitedProtocol", (LimitedProtocol,), {"ref": ref})


class WorkerProtocol(LimitedProtocol):
    """The protocol of ``--workers N``: uvicorn imports it by name in each worker process, whose
    app (``router.asgi.create``) binds its config here before the first connection."""


def bind_worker(ref: "StateRef") -> None:
    WorkerProtocol.ref = ref
