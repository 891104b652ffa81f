"""Errors the proxy answers with. Each front end renders a :class:`ProxyError` in its own shape.

``kind`` is a small vocabulary shared by all formats (mapped by each codec's ``encode_error``):
invalid_request, authentication, permission, not_found, rate_limit, overloaded, timeout,
request_too_large, api_error.
"""

from __future__ import annotations


class ProxyError(Exception):
    """A failure with an HTTP status and a message a person can act on."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request",
                 param: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.param = param
        self.headers = headers or {}


def bad_request(message: str, param: str | None = None) -> ProxyError:
    return ProxyError(400, message, "invalid_request", param)
