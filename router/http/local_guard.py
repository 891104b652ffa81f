"""Local mode: no client keys, loopback only, and no web page may drive the proxy.

Without keys the proxy trusts whoever can reach its loopback address. A browser on the same
machine can reach it too, on behalf of any web page the operator visits: by DNS rebinding (a name
the page controls resolves to 127.0.0.1, so the request carries that name as ``Host``) or by a
cross-site "simple" request (``text/plain`` or form bodies need no CORS preflight). A request in
local mode is therefore accepted only when

* its ``Host`` names a loopback address (``localhost``, ``127.x.y.z``, ``[::1]``, with or without a
  port) — a rebound name is refused;
* it carries no ``Origin``, or a loopback one — browsers send ``Origin`` on cross-site requests;
* a ``POST`` says ``Content-Type: application/json`` — a browser cannot send that cross-site
  without a preflight, which the proxy never grants.

With client keys (or ``--disable-auth``, a deliberate choice) none of this applies.
"""

from __future__ import annotations

import ipaddress
from typing import Mapping

from ..errors import ProxyError

_SHOWN = 80  # how much of a refused header value the error repeats


def is_loopback_name(host: str) -> bool:
    """``localhost`` or a loopback IP literal (v4 or v6, without brackets or port)."""
    host = host.lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_is_loopback(value: str) -> bool:
    """A ``Host`` header value (``name``, ``name:port``, ``[v6]`` or ``[v6]:port``) naming loopback."""
    value = value.strip()
    if value.startswith("["):
        name, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not _is_port_suffix(rest)):
            return False
        return ":" in name and is_loopback_name(name)
    name, colon, port = value.partition(":")
    if colon and not port.isdigit():
        return False  # a second colon (bare IPv6 is not a valid Host) or a non-numeric port
    return is_loopback_name(name)


def _is_port_suffix(rest: str) -> bool:
    return rest.startswith(":") and rest[1:].isdigit()


def origin_is_loopback(origin: str) -> bool:
    """``http(s)://<loopback host>[:port]``; ``null`` (sandboxed pages, files) is not."""
    scheme, sep, rest = origin.strip().partition("://")
    return bool(sep) and scheme.lower() in ("http", "https") and "/" not in rest and host_is_loopback(rest)


def _shown(value: str) -> str:
    return repr(value if len(value) <= _SHOWN else value[:_SHOWN] + "...")


def check_local_request(method: str, headers: Mapping[str, str]) -> None:
    """Raise a 4xx :class:`ProxyError` for a request that a web page could have made.

    ``headers`` has lower-case names (Falcon's ASGI ``req.headers``). A request without ``Host``
    (HTTP/1.0) cannot come from a browser and passes that check.
    """
    host = headers.get("host")
    if host is not None and not host_is_loopback(host):
        raise ProxyError(403, f"Host {_shown(host)} is not a loopback name: without client keys this proxy only "
                              "answers requests addressed to localhost, 127.0.0.1 or [::1] (set auth.api_keys "
                              "to serve other names)", "permission")
    origin = headers.get("origin")
    if origin is not None and not origin_is_loopback(origin):
        raise ProxyError(403, f"cross-origin request from {_shown(origin)} refused: without client keys this proxy "
                              "does not answer web pages (set auth.api_keys to allow it)", "permission")
    if method == "POST":
        media = headers.get("content-type", "").partition(";")[0].strip().lower()
        if media != "application/json":
            raise ProxyError(415, f"Content-Type {_shown(media or '(none)')} refused: send POST bodies as "
                                  "'Content-Type: application/json'", "invalid_request")
