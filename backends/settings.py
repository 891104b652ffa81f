"""What a connector is told about its backend: its own settings type, built by the server.

Connectors depend on the codec layer alone (``router.wire``), not on the server's configuration:
the server reads ``config.yaml`` and hands each connector a :class:`ConnectorSettings`
(``router.config.connector_settings``). Tests and embedders can build one directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from router.wire.sse import DEFAULT_MAX_LINE

DEFAULT_TIMEOUT = 120.0  # seconds, every phase (the default proxy_timeout)
# Most bytes read of one whole (non-streamed) reply. The largest real replies (a long completion
# with logprobs, many choices, a big tool call) are a few MB; 32 MiB leaves an order of magnitude
# of room while a broken or hostile provider's endless body costs at most this much memory.
DEFAULT_MAX_RESPONSE = 32 * 1024 * 1024
_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Per-phase limits in seconds: TCP/TLS connect, first response byte, gap between chunks."""

    connect: float
    first_byte: float
    idle: float


@dataclass(frozen=True, slots=True)
class ConnectorSettings:
    """One backend as its connector sees it.

    ``options`` holds the backend's other settings verbatim, for the types that have their own
    (OpenRouter's ``referer``/``title``; Code Assist's ``gcp_project_id``, ``credentials_path``,
    ``token_url``, ``client_id``, ``client_secret``). ``secrets`` is everything that must never
    appear in text the connector lets out; the API keys are always among them.
    """

    name: str
    type: str
    api_keys: tuple[str, ...] = ()
    base_url: str | None = None
    models: tuple[str, ...] = ()
    headers: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    timeouts: Timeouts = Timeouts(DEFAULT_TIMEOUT, DEFAULT_TIMEOUT, DEFAULT_TIMEOUT)
    max_line_bytes: int = DEFAULT_MAX_LINE  # longest SSE line (or one event's data) read from its streams
    max_response_bytes: int = DEFAULT_MAX_RESPONSE  # most bytes read of one whole (non-streamed) reply
    secrets: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    def __post_init__(self) -> None:
        # The keys are secrets whoever built these settings (no way to forget them).
        missing = tuple(k for k in self.api_keys if k not in self.secrets)
        if missing:
            object.__setattr__(self, "secrets", (*missing, *self.secrets))
