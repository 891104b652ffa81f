"""Client authentication: the key wherever each client family sends it, compared in constant time.

Keys are never logged or echoed; a caller is known by a short hash of its key (``caller`` in rules,
usage records and logs).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, Mapping

from .errors import ProxyError


def key_id(key: str) -> str:
    """A stable, non-reversible id for a key: enough to tell callers apart, useless to an attacker."""
    return "key-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]


def presented_key(headers: Mapping[str, str], query: Mapping[str, Any]) -> str | None:
    """``Authorization: Bearer``, ``x-api-key`` (Anthropic), ``x-goog-api-key`` or ``?key=`` (Gemini)."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    for name in ("x-api-key", "x-goog-api-key"):
        value = headers.get(name)
        if value:
            return value.strip()
    value = query.get("key")
    if isinstance(value, list):  # ``?key=a&key=b``: one key only, or none at all
        value = value[0] if len(set(value)) == 1 else None
    return value.strip() if isinstance(value, str) and value.strip() else None


class Authenticator:
    """Checks presented keys against the configured ones. ``enabled`` False accepts everyone."""

    def __init__(self, keys: tuple[str, ...] | list[str], enabled: bool = True,
                 admin_keys: tuple[str, ...] | list[str] = ()) -> None:
        # Admin keys are client keys too; their ids unlock the operator endpoints.
        everything = list(dict.fromkeys([*keys, *admin_keys]))
        self._keys = [(k.encode("utf-8"), key_id(k)) for k in everything]
        self.admin_ids = frozenset(key_id(k) for k in admin_keys)
        self._accepted: dict[str, str] = {}
        self.enabled = enabled

    def identify(self, headers: Mapping[str, str], query: Mapping[str, Any]) -> str | None:
        """The caller id of a valid key; raises 401 otherwise. None when auth is disabled and no key."""
        key = presented_key(headers, query)
        if not self.enabled:
            return key_id(key) if key else None
        if key is None:
            raise ProxyError(401, "missing API key: send 'Authorization: Bearer <key>' "
                                  "(or x-api-key / x-goog-api-key)", "authentication")
        known = self._accepted.get(key)
        if known is not None:
            return known
        presented = key.encode("utf-8")
        found = None
        for candidate, ident in self._keys:  # no early exit: timing does not tell which key matched
            if hmac.compare_digest(candidate, presented):
                found = ident
        if found is None:
            raise ProxyError(401, "invalid API key", "authentication")
        # Keys that matched once are looked up directly next time (a client sends the same key on
        # every request). Only valid keys get here, so this holds at most one entry per key; that
        # a valid key is answered faster tells nothing the 200 does not.
        self._accepted[key] = found
        return found
