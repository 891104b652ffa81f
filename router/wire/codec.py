"""What a wire format is to the rest of the proxy: the :class:`Codec` protocol, and its errors.

A codec module (``openai``, ``anthropic``, ``gemini``) turns one wire format into the canonical
model and back, in both directions: front ends (``router/frontends.py``) decode what clients send
and encode what they get; connectors (``backends/``) encode what providers get and decode what they
send. Both hold a codec through this protocol, so neither depends on which format it is.

Codecs know nothing of HTTP: a body they cannot read raises :class:`CodecError`, which names the
field and carries no status. Whoever called the codec decides what it means: the HTTP edge answers
a client's unreadable request with a 400 in the client's error shape; a connector treats a
provider's unreadable reply as that provider's failure (a 502 after failover).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, runtime_checkable

from .canonical import ChatRequest, ChatResponse, StreamEvent


class CodecError(Exception):
    """A body a codec cannot read. ``message`` names the field (``messages[2].content: ...``) and is
    safe to show; ``param`` is that field's path (None when the body as a whole is wrong)."""

    def __init__(self, param: str | None, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


class ErrorReport(Protocol):
    """What ``encode_error`` reads of an error: ``router.errors.ProxyError`` is one, and so is
    :class:`WireError`. ``kind`` is the shared vocabulary of ``router/errors.py``."""

    @property
    def status(self) -> int: ...

    @property
    def message(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def param(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class WireError:
    """An error a codec itself reports: a stream that failed after it started has no HTTP status
    of its own left to send, so its error event is encoded from one of these."""

    status: int
    message: str
    kind: str
    param: str | None = None


class EventEncoder(Protocol):
    """Canonical events -> the format's SSE frames, one event at a time (terminators included)."""

    def encode(self, event: StreamEvent) -> bytes: ...


class EventDecoder(Protocol):
    """One parsed SSE data object at a time -> canonical events; ``finish`` at the end of the body."""

    def feed(self, data: Any) -> list[StreamEvent]: ...

    def finish(self) -> list[StreamEvent]: ...


@runtime_checkable
class Codec(Protocol):
    """One wire format, both directions. Each codec is a module whose functions and classes have
    these names (a module satisfies a protocol), so using one costs no extra call.

    - front ends: ``decode_request``, ``encode_response``, ``encode_error``, ``StreamEncoder``
    - connectors: ``encode_request``, ``decode_response``, ``StreamDecoder``
    """

    FORMAT: str

    def decode_request(self, body: Any, *, model: str | None = None, stream: bool | None = None) -> ChatRequest:
        """A client's body (``model``/``stream`` when the format puts them in the URL); raises
        :class:`CodecError` naming the field."""
        ...

    def encode_request(self, req: ChatRequest) -> dict[str, Any]:
        """The body to send a provider."""
        ...

    def decode_response(self, body: Any) -> ChatResponse:
        """A provider's reply; raises :class:`CodecError` when it is malformed."""
        ...

    def encode_response(self, resp: ChatResponse) -> dict[str, Any]:
        """The body to send a client."""
        ...

    def encode_error(self, err: ErrorReport) -> dict[str, Any]:
        """The format's error body."""
        ...

    # Classes, one instance per stream: ``StreamEncoder(**options)`` (options the front end found
    # in the request, such as OpenAI's ``include_usage``) and ``StreamDecoder()``.
    StreamEncoder: Callable[..., EventEncoder]
    StreamDecoder: Callable[[], EventDecoder]
