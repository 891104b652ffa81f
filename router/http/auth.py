"""Client authentication: the key wherever each client family sends it, compared in constant time.

Keys are never logged or echoed; a caller is known by a short hash of its key (``caller`` in rules,
usage records and logs).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, Mapping

from ..config import AppConfig, ConfigError
from ..errors import ProxyError


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
    """Checks presented keys against the configured ones. ``enabled`` False accepts everyone.

    ``local_only``: local mode (no keys, loopback): the middleware also refuses requests a web
    page could have made (``router/local_guard.py``).
    """

    def __init__(self, keys: tuple[str, ...] | list[str], enabled: bool = True,
                 admin_keys: tuple[str, ...] | list[str] = (), *, local_only: bool = False) -> None:
        # Admin keys are client keys too; their ids unlock the operator endpoints.
        everything = list(dict.fromkeys([*keys, *admin_keys]))
        self._keys = [(k.encode("utf-8"), key_id(k)) for k in everything]
        self.admin_ids = frozenset(key_id(k) for k in admin_keys)
        self._accepted: dict[str, str] = {}
        self.enabled = enabled
        self.local_only = local_only

    @property
    def mode(self) -> str:
        """``keys`` (enforced), ``local`` (no keys, loopback only) or ``disabled`` (``--disable-auth``)."""
        return "keys" if self.enabled else "local" if self.local_only else "disabled"

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


def authenticator_for(config: AppConfig, *, disable_auth: bool, loopback: bool) -> Authenticator:
    """The auth policy of a config, decided the same way at start-up and on every reload.

    Keys configured (``auth.api_keys`` or ``auth.admin_keys``): enforced. ``--disable-auth``:
    everyone, deliberately. No keys: local mode, allowed only when the server listens on a
    loopback address; elsewhere the config is refused (a reload keeps the previous one).
    """
    if disable_auth:
        return Authenticator(config.auth_keys, enabled=False, admin_keys=config.admin_keys)
    if config.auth_keys or config.admin_keys:
        return Authenticator(config.auth_keys, admin_keys=config.admin_keys)
    if not loopback:
        raise ConfigError("refusing to serve a non-loopback address without client keys: set auth.api_keys or "
                          "LLM_PROXY_API_KEYS, or pass --disable-auth deliberately")
    return Authenticator((), enabled=False, local_only=True)
