"""How big anything a client sends may be once the proxy keeps it: the one table of those limits.

A string a client chooses ends up in places that live longer than its request: the usage store
(``requested_model``), metric labels, the rule planner's memo, session files, history, audit rows.
Without a bound, one client with unique multi-megabyte model names grew the process by hundreds
of megabytes and ``/metrics`` with it. Each limit below is checked once, where the value enters
(request decoding, session commands, fact building), with a ``len()`` comparison, and a value over
it is refused with a message naming the field rather than cut silently (a cut model name would
route somewhere the client did not ask for).

The request body as a whole is bounded by ``max_body_bytes`` (``router/http/edge.py``) and the session
id by :func:`router.sessions.valid_session_id`; these limits are for what sits inside them.
"""

from __future__ import annotations

from typing import Mapping

from .errors import ProxyError
# Model names (MAX_MODEL_CHARS) are checked by the codecs where they enter, so their number lives
# with them (the codec layer imports nothing from the rest of ``router``); ``too_long`` is the
# one wording of every refusal, theirs and these.
from .wire.common import MAX_MODEL_CHARS, too_long
# What one chat message may ask of the command language (commands a message, characters a command,
# targets a session route, routed models a session) is bounded in ``dsl/bounds.py`` (the language
# imports nothing from ``router``); listed here so this module stays the one table to read.
from dsl.bounds import MAX_CHAIN_LINKS, MAX_COMMAND_CHARS, MAX_COMMANDS_PER_MESSAGE, MAX_SESSION_ROUTES

__all__ = [
    "MAX_AUDITED_COMMAND_CHARS",
    "MAX_CHAIN_LINKS",
    "MAX_COMMAND_CHARS",
    "MAX_COMMANDS_PER_MESSAGE",
    "MAX_SESSION_ROUTES",
    "MAX_HEADER_FACT_CHARS",
    "MAX_MODEL_CHARS",
    "MAX_SESSION_BYTES",
    "MAX_SETTING_CHARS",
    "TooLong",
    "check_header_facts",
    "clip",
    "too_long",
]

# A string a session command stores (``project``, ``project_dir``): macOS's PATH_MAX.
MAX_SETTING_CHARS = 1024
# A header value that rules may look at (``header("x-team")``): generous for any real header.
MAX_HEADER_FACT_CHARS = 8192
# Everything a session's commands store (settings, routes, one-off; not the proxy's own history),
# as JSON: the in-memory store holds up to ``session.max_sessions`` of these.
MAX_SESSION_BYTES = 16 * 1024
# A routing command as written into the audit log (the command's text may be padded at will).
MAX_AUDITED_COMMAND_CHARS = 512


class TooLong(ValueError):
    """A client-supplied value over its limit; ``str()`` is the message for the client."""


def check_header_facts(headers: Mapping[str, str]) -> None:
    """A 400 naming the header when one is too long to be a rule's fact. Called only when rules
    read headers; the server's own header limits bound the rest."""
    for name, value in headers.items():
        if len(value) > MAX_HEADER_FACT_CHARS:
            raise ProxyError(400, f"header {name}: " + too_long("the value", len(value), MAX_HEADER_FACT_CHARS),
                             "invalid_request", param=name)


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters (marked) for records that only show it."""
    return text if len(text) <= limit else text[: limit - 3] + "..."
