"""The one redaction: what turns provider output or configuration into text that leaves the proxy.

Every path that writes such text for a client (error messages, stream error events), a log line
or a stored usage/audit row goes through :class:`Redactor` (or :func:`redact`): the exact
secrets we know (configured keys, tokens) and anything shaped like a credential (provider key
prefixes, ``Bearer`` values, ``x-api-key: ...`` style fields, ``?key=`` parameters, the userinfo
of a URL) become ``[redacted]``. URLs shown on their own go through :func:`redact_url`.

It lives under ``backends/`` and imports nothing from ``router/`` so connectors can use it at
their boundary; the router imports it for logs.

Logging runs this on every line, so :meth:`Redactor.suspects` first asks, with plain substring
tests, whether anything secret-shaped can be there at all; the regular expression only runs when
it can. Every shape below contains one of ``_TRIGGERS`` (case-folded), which keeps that test exact.
"""

from __future__ import annotations

import re
from typing import Callable, Iterable
from urllib.parse import urlsplit, urlunsplit

__all__ = ["MIN_SECRET_LENGTH", "REDACTED", "Redactor", "redact", "redact_url"]

REDACTED = "[redacted]"
# A known secret shorter than this is not searched for: replacing a 3-letter word in every log
# line would hide more than it protects (credential shapes are still caught).
MIN_SECRET_LENGTH = 6

# Shapes of credentials, redacted even when we do not know the exact value. Each alternative
# contains one of _TRIGGERS (lower-cased), and none can backtrack over a long run of text.
_NAMES = r"(?i:authorization|api[-_]?key|token|secret|password|passwd)"
_SHAPES = re.compile("|".join([
    r"sk-[A-Za-z0-9_\-]{8,}",                      # OpenAI, Anthropic (sk-ant-), OpenRouter (sk-or-)
    r"AIza[0-9A-Za-z_\-]{20,}",                    # Google API keys
    r"ya29\.[0-9A-Za-z_\-.]+",                     # Google OAuth access tokens
    r"1//0[0-9A-Za-z_\-]{20,}",                    # Google OAuth refresh tokens
    r"GOCSPX-[0-9A-Za-z_\-]{8,}",                  # Google OAuth client secrets
    # ``Bearer v``: the word stays (a sentence about a header still reads as one), the value goes.
    r"(?P<scheme>(?i:bearer)\s+)[A-Za-z0-9._\-~+/=]{8,}",
    # ``x-api-key: v``, ``"api_key": "v"``, ``Authorization: Basic v``, ``access_token=v`` ...
    r"(?P<field>" + _NAMES + r"['\"]?\s*[:=]\s*['\"]?(?:(?i:bearer|basic|token)\s+)?)[^\s'\",;}&]{6,}",
    r"(?<=[?&])(?i:key)=[^\s&'\"#]{6,}",           # Gemini's ?key=
    r"(?<=://)[^/?#\s]*(?=@)",                     # URL userinfo (user:password), up to the last @
]))
_TRIGGERS = ("sk-", "aiza", "ya29.", "1//0", "gocspx-", "bearer", "authorization", "key", "token", "secret",
             "passw", "://")


def _replace(match: re.Match[str]) -> str:
    """``[redacted]`` in place of the credential; a field's name (``x-api-key: ``) and an auth
    scheme (``Bearer ``) stay readable."""
    return (match.group("field") or match.group("scheme") or "") + REDACTED


# More known secrets than this are looked for with one regex scan instead of one ``in`` each.
_LITERAL_SCANS = 16


class Redactor:
    """Known secrets and credential shapes out of a text. Build once per set of secrets."""

    __slots__ = ("secrets", "_known", "_has_known")

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets: tuple[str, ...] = tuple(sorted({s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH},
                                                     key=len, reverse=True))
        self._known = re.compile("|".join(map(re.escape, self.secrets))) if self.secrets else None
        self._has_known: Callable[[str], object]
        if len(self.secrets) > _LITERAL_SCANS:
            self._has_known = self._known.search  # type: ignore[union-attr]
        else:
            secrets_ = self.secrets

            def has_known(text: str) -> bool:
                for secret in secrets_:
                    if secret in text:
                        return True
                return False

            self._has_known = has_known

    def suspects(self, text: str) -> bool:
        """Whether anything in ``text`` may be secret (then :meth:`__call__` has work to do)."""
        if self._has_known(text):
            return True
        folded = text.lower()
        for trigger in _TRIGGERS:
            if trigger in folded:
                return True
        return False

    def __call__(self, text: str) -> str:
        """``text`` with every known secret and credential shape replaced by ``[redacted]``."""
        if not self.suspects(text):
            return text
        if self._known is not None:
            text = self._known.sub(REDACTED, text)
        return _SHAPES.sub(_replace, text)


_SHAPES_ONLY = Redactor()


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without ``secrets`` or anything shaped like a credential (one-off use: error paths)."""
    return (Redactor(secrets) if secrets else _SHAPES_ONLY)(text)


def redact_url(url: str) -> str:
    """A URL fit to show: no ``user:password@``, no credential-shaped query values."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact(url)
    if "@" in parts.netloc:
        parts = parts._replace(netloc=parts.netloc.rpartition("@")[2])
        url = urlunsplit(parts)
    return redact(url)
