"""The connector interface every provider implements, and the error classes dispatch acts on.

A connector turns a canonical :class:`ChatRequest` (whose ``model`` is already the target's model)
into a provider call and gives back a canonical response or stream. It depends on the codec layer
(``router.wire``) alone: its settings are its own (:mod:`backends.settings`), and the key choice
of a call is passed in and reported back in a :class:`~backends.keys.KeyChoice`. Provider and socket errors are
classified here, at the boundary, into :class:`BackendError` kinds; dispatch never looks at a
provider's status codes or exception types itself.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import AsyncIterator, Literal

from router.wire.canonical import ChatRequest, ChatResponse, StreamEvent

from .cooldowns import CooldownStore
from .keys import KeyChoice
from .redaction import redact

ErrorKind = Literal["auth", "rate_limited", "overloaded", "bad_request", "not_found", "timeout", "connection", "server"]

# Errors worth trying the next target (or key) for; the rest are the client's to fix.
RETRYABLE: frozenset[str] = frozenset({"rate_limited", "overloaded", "timeout", "connection", "server", "auth"})

# The HTTP status the client sees for each kind when no target succeeds.
STATUS_FOR_KIND: dict[str, int] = {
    "auth": 502, "rate_limited": 429, "overloaded": 503, "bad_request": 400, "not_found": 404,
    "timeout": 504, "connection": 502, "server": 502,
}
# The error classes a rule's ``on:`` names (dsl.registry.ERROR_CLASSES). Most follow from the kind;
# ``context_window`` and ``content_policy`` are told apart from other 400s by each connector, from
# its provider's own error shape (``HttpBackend.error_class``).
ErrorClass = Literal["context_window", "content_policy", "rate_limit", "timeout", "server_error", "auth"]
CLASS_FOR_KIND: dict[str, ErrorClass] = {
    "rate_limited": "rate_limit", "timeout": "timeout", "server": "server_error", "overloaded": "server_error",
    "connection": "server_error", "auth": "auth",
}
PROXY_KIND: dict[str, str] = {
    "auth": "api_error", "rate_limited": "rate_limit", "overloaded": "overloaded", "bad_request": "invalid_request",
    "not_found": "not_found", "timeout": "timeout", "connection": "api_error", "server": "api_error",
}


class BackendError(Exception):
    """A classified failure of one attempt. ``message`` is safe to show: it goes to the client, the
    logs and the usage row, so credential shapes are redacted here whoever raised it (connectors
    also redact their own keys, which have no recognisable shape, before they raise)."""

    def __init__(self, kind: ErrorKind, message: str, *, status: int | None = None,
                 retry_after: float | None = None, backend: str = "", error_class: ErrorClass | None = None,
                 repeatable: bool = True) -> None:
        message = redact(message)
        super().__init__(message)
        self.kind = kind
        self.error_class: ErrorClass | None = error_class or CLASS_FOR_KIND.get(kind)
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.backend = backend
        # False when asking the same target again would get the same answer (a reply over the
        # size cap): the chain's next target is still tried, this one is not asked twice.
        self.repeatable = repeatable

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE


@dataclass(slots=True)
class Health:
    ok: bool
    latency_ms: float = 0.0
    error: str | None = None


class Backend(abc.ABC):
    """One configured backend. Instances are long-lived and shared by all requests."""

    def __init__(self, name: str) -> None:
        self.name = name

    @abc.abstractmethod
    async def complete(self, request: ChatRequest, keys: KeyChoice | None = None) -> ChatResponse:
        """The whole reply at once. ``keys``: which keys the call may use; the connector writes
        the key it used into it (None: any key, nothing reported)."""

    @abc.abstractmethod
    def stream(self, request: ChatRequest, keys: KeyChoice | None = None) -> AsyncIterator[StreamEvent]:
        """The reply as canonical events: StreamStart first, StreamEnd (or StreamError) last.
        ``keys`` as for :meth:`complete` (the key is chosen, and reported, by the first event).

        Errors before the first event raise :class:`BackendError` so dispatch can fail over;
        closing the iterator early (``aclose``) must close the upstream connection.
        """

    async def list_models(self) -> list[str]:
        return []

    async def health(self) -> Health:
        return Health(ok=True)

    def share_cooldowns(self, store: "CooldownStore") -> None:
        """Keep key cooldowns in ``store`` (shared by every connector, outliving reloads) instead
        of the connector's own. Connectors without keys ignore it."""

    async def aclose(self) -> None:
        """Release pooled connections."""
