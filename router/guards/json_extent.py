"""Where a JSON value ends in a growing buffer, and whether it can be a tool call at all.

Why a module of its own: the repair guard holds text back while it might be a tool call, so it must
know, chunk by chunk and without re-reading, where a JSON object or array closes, and it must let
go of a look-alike (``{"name": "my-app", "version": ...}``) as early as the text allows. Both jobs
are pure functions of the text, with no notion of patterns, streams or events; here they can be
read and tested alone. ``json.loads`` still validates an extent once it is found.

The scanner is specialised for tool-call objects: it knows the keys such an object may have
(:data:`ALLOWED_KEYS`), which :mod:`router.guards.repair` also uses to normalise a parsed value.
"""

from __future__ import annotations

import re

NAME_KEYS = ("name", "tool", "tool_name", "function")
ARG_KEYS = ("arguments", "parameters", "args", "input", "params")
WRAPPER_KEYS = ("function", "function_call", "tool_call")
ALLOWED_KEYS = frozenset(NAME_KEYS + ARG_KEYS + WRAPPER_KEYS + ("id", "type"))

JSON_WS = re.compile(r"[ \t\r\n]*")
_STRUCT = re.compile(r'[{}\[\]"]')
_IN_STRING = re.compile(r'["\\]')
_KEY = re.compile(r'"((?:[^"\\]|\\.)*)"')
_KEY_PREFIXES = frozenset(k[:i] for k in ALLOWED_KEYS for i in range(len(k) + 1))


class JsonScan:
    """Finds where the JSON object/array starting at ``buf[pos]`` ends, resuming where it stopped.

    Only brackets outside strings are counted (escapes honoured, including one split at the end of
    the buffer); ``json.loads`` validates the extent afterwards. Regex skips make it C-speed.

    With ``key_depth`` set, every object key at that depth must be one a tool call can have
    (``ALLOWED_KEYS``): ``{"name": "my-app", "version": ...}`` is rejected at ``"version"`` instead
    of being held until it closes.
    """

    __slots__ = ("pos", "depth", "in_str", "key_depth", "str_start", "pending_key")

    def __init__(self, pos: int, key_depth: int = 0) -> None:
        self.pos, self.depth, self.in_str = pos, 0, False
        self.key_depth = key_depth
        self.str_start = 0
        self.pending_key: tuple[int, int] | None = None  # a string at key depth awaiting its ':'

    def scan(self, buf: str) -> int | None:
        """End offset (exclusive) once balanced, ``None`` (need more text) or ``-1`` (a bad key)."""
        pos, depth, in_str, n = self.pos, self.depth, self.in_str, len(buf)
        result = None
        while True:
            if self.pending_key is not None:
                j = JSON_WS.match(buf, pos).end()
                if j >= n:
                    pos = j
                    break
                a, b = self.pending_key
                self.pending_key = None
                if buf[j] == ":" and buf[a:b] not in ALLOWED_KEYS:
                    result = -1
                    break
            if in_str:
                m = _IN_STRING.search(buf, pos)
                if m is None:
                    pos = n
                    break
                if m.group() == "\\":
                    if m.end() >= n:
                        pos = m.start()  # escape split at the end: look at it again next time
                        break
                    pos = m.end() + 1
                    continue
                in_str, pos = False, m.end()
                if depth == self.key_depth:
                    self.pending_key = (self.str_start + 1, m.start())
                continue
            m = _STRUCT.search(buf, pos)
            if m is None:
                pos = n
                break
            c, pos = m.group(), m.end()
            if c == '"':
                in_str, self.str_start = True, m.start()
            elif c in "{[":
                depth += 1
            else:
                depth -= 1
                if depth <= 0:
                    result = pos
                    break
        self.pos, self.depth, self.in_str = pos, depth, in_str
        return result

    def rebase(self, shift: int) -> None:
        """The caller dropped ``shift`` characters from the front of its buffer."""
        self.pos -= shift


def first_key(buf: str, pos: int) -> str:
    """Could the JSON value at ``buf[pos]`` be a tool call, judging by its first key?

    ``"need"`` (not decided yet), ``"yes"``, ``"no"`` (not JSON-like), or ``"other"`` (JSON with a
    first key no tool-call form starts with: the whole value can be streamed on as text).
    """
    i = JSON_WS.match(buf, pos + 1).end()
    if buf[pos] == "[":
        if i >= len(buf):
            return "need"
        if buf[i] != "{":
            return "no"
        pos = i
        i = JSON_WS.match(buf, pos + 1).end()
    if i >= len(buf):
        return "need"
    if buf[i] != '"':
        return "no"
    m = _KEY.match(buf, i)
    if m is None:
        partial = buf[i + 1:]
        return "need" if "\\" in partial or partial in _KEY_PREFIXES else "other"
    return "yes" if m.group(1) in ALLOWED_KEYS else "other"
