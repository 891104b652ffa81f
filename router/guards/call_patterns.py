"""The textual tool-call forms as data, and a matcher that steps one of them over a growing buffer.

Why a module of its own: which forms count as a call (``<tool_call>``, ``[TOOL_CALLS]``, fenced
JSON, ``TOOL CALL:`` lines, ...) is a table that changes as models invent new habits, while the
repair guard's streaming logic does not. Adding a form means adding a :class:`Pattern` here (and
its trigger character to :data:`ANYWHERE` / :data:`LINE_START`); the guard in
:mod:`router.guards.repair` is untouched. A :class:`Matcher` answers, for the text seen so far,
"need more", "a match ending at N" or "not this form, the first N characters are text" — as early
as the text allows and depending only on the text, never on where chunks were split.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from router.guards.json_extent import JSON_WS, JsonScan, first_key

NEED, MATCH, REJECT = 0, 1, 2

FENCE_LANGS = frozenset({"", "json", "tool_call", "tool_code", "tool", "function_call", "jsonc"})

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:\-]*")
_INLINE_WS = re.compile(r"[ \t]*")
_LANG_LINE = re.compile(r"([A-Za-z0-9_+\-]*)[ \t]*(\r?\n)?")

Part = tuple[str, Any]


def _lit(s: str, icase: bool = False) -> Part:
    return ("lit", (s.lower() if icase else s, icase))


WS: Part = ("ws", JSON_WS)
INLINE_WS: Part = ("ws", _INLINE_WS)
NAME: Part = ("name", None)
FENCE_LANG: Part = ("lang", None)
EOF_OK: Part = ("eof_ok", None)


def _json(kinds: str, keyed: bool, skip: str | None) -> Part:
    """A JSON value starting with one of ``kinds``; ``keyed``: early first-key check;
    ``skip``: on an early rejection, stream the rest of this construct as text ("json"/"fence")."""
    return ("json", (kinds, keyed, skip))


@dataclass(frozen=True)
class Pattern:
    name: str
    parts: tuple[Part, ...]
    named: bool = False  # the call's name is in the text (NAME part); the JSON is the arguments
    skip_after_open: str | None = None  # once the opening parts matched, a reject skips this construct


PATTERNS: dict[str, Pattern] = {p.name: p for p in (
    Pattern("tool_call_tag", (_lit("<tool_call>"), WS, _json("{[", True, None), WS, EOF_OK, _lit("</tool_call>"))),
    Pattern("function_tag", (_lit("<function="), NAME, _lit(">"), WS, _json("{", False, None), WS, EOF_OK,
                             _lit("</function>")), named=True),
    Pattern("mistral", (_lit("[TOOL_CALLS]"), WS, _json("{[", True, None))),
    Pattern("bare_object", (_json("{", True, "json"),)),
    Pattern("bare_array", (_json("[", True, "json"),)),
    Pattern("fence", (_lit("```"), FENCE_LANG, WS, _json("{[", True, "fence"), WS, _lit("```")),
            skip_after_open="fence"),
    Pattern("tool_call_line", (_lit("tool call:", True), INLINE_WS, NAME, INLINE_WS, _json("{", False, None)),
            named=True),
    Pattern("tool_call_line_json", (_lit("tool call:", True), INLINE_WS, _json("{", True, None))),
    Pattern("tool_call_line_us", (_lit("tool_call:", True), INLINE_WS, NAME, INLINE_WS, _json("{", False, None)),
            named=True),
    Pattern("tool_call_line_us_json", (_lit("tool_call:", True), INLINE_WS, _json("{", True, None))),
)}

# Which patterns a trigger character can start: anywhere in the text, or only at a line start
# (after indentation). ``TRIGGER`` finds the next such character and must list the same ones.
ANYWHERE = {"<": ("tool_call_tag", "function_tag"), "[": ("mistral",)}
LINE_START = {
    "{": ("bare_object",), "[": ("mistral", "bare_array"), "`": ("fence",),
    "T": ("tool_call_line", "tool_call_line_json", "tool_call_line_us", "tool_call_line_us_json"),
    "t": ("tool_call_line", "tool_call_line_json", "tool_call_line_us", "tool_call_line_us_json"),
}
TRIGGER = re.compile(r"[<\[]|(?m:^)[ \t]*[{`Tt\[]")


@dataclass
class MatchStep:
    """What one :meth:`Matcher.step` decided about the buffer so far."""

    status: int
    end: int = 0  # MATCH: end of the call text; REJECT: characters that are certainly text
    skip: str | None = None  # REJECT: stream the construct starting after ``end`` as text


@dataclass
class Matcher:
    """Steps one :class:`Pattern` over the candidate buffer (which always starts at the trigger)."""

    pattern: Pattern
    idx: int = 0
    pos: int = 0
    eof_ok: bool = False
    opened: bool = False
    scan: JsonScan | None = None
    name: str = ""
    json_span: tuple[int, int] = (0, 0)
    dead: MatchStep | None = field(default=None)

    def step(self, buf: str, final: bool) -> MatchStep:
        if self.dead is not None:
            return self.dead
        out = self._step(buf, final)
        if out.status == REJECT:
            self.dead = out
        return out

    def _reject(self, skip: str | None = None, end: int = 1) -> MatchStep:
        if skip is None and self.opened and self.pattern.skip_after_open:
            skip, end = self.pattern.skip_after_open, self.pos
        return MatchStep(REJECT, end, skip)

    def _step(self, buf: str, final: bool) -> MatchStep:
        parts, n = self.pattern.parts, len(buf)
        while self.idx < len(parts):
            kind, arg = parts[self.idx]
            pos = self.pos
            if kind == "lit":
                s, icase = arg
                seg = buf[pos:pos + len(s)]
                if icase:
                    seg = seg.lower()
                if not s.startswith(seg):
                    return MatchStep(MATCH, pos) if self.eof_ok and pos == n else self._reject()
                if len(seg) < len(s):
                    if final:
                        return MatchStep(MATCH, pos) if self.eof_ok and pos == n else self._reject()
                    return MatchStep(NEED)
                self.pos = pos + len(s)
                if self.idx == 0:
                    self.opened = True
            elif kind == "ws":
                end = arg.match(buf, pos).end()
                if end == n and not final:
                    return MatchStep(NEED)
                self.pos = end
            elif kind == "name":
                if pos >= n:
                    return self._reject() if final else MatchStep(NEED)
                m = _NAME.match(buf, pos)
                if m is None:
                    return self._reject()
                if m.end() == n and not final:
                    return MatchStep(NEED)
                self.name, self.pos = m.group(), m.end()
            elif kind == "lang":
                m = _LANG_LINE.match(buf, pos)
                if m.group(2) is None:  # the opening line is not complete
                    if m.end() == n and not final:
                        return MatchStep(NEED)
                    return self._reject()
                if m.group(1).lower() not in FENCE_LANGS:
                    return self._reject()
                self.pos = m.end()
            elif kind == "json":
                kinds, keyed, skip = arg
                if self.scan is None:
                    if pos >= n:
                        return self._reject() if final else MatchStep(NEED)
                    if buf[pos] not in kinds:
                        return self._reject()
                    if keyed:
                        verdict = first_key(buf, pos)
                        if verdict == "need":
                            return self._reject() if final else MatchStep(NEED)
                        if verdict == "other" and skip == "json":
                            return self._reject(skip, pos)
                        if verdict != "yes":
                            return self._reject()
                    self.scan = JsonScan(pos, (1 if buf[pos] == "{" else 2) if keyed else 0)
                    self.json_span = (pos, pos)
                end = self.scan.scan(buf)
                if end == -1:  # a key no tool call has: stream the value on as text
                    return self._reject(skip, pos) if skip == "json" else self._reject()
                if end is None:
                    return self._reject() if final else MatchStep(NEED)
                self.json_span = (self.json_span[0], end)
                self.pos = end
            elif kind == "eof_ok":
                self.eof_ok = True
            self.idx += 1
        return MatchStep(MATCH, self.pos)

    def json_text(self, buf: str) -> str:
        return buf[self.json_span[0]:self.json_span[1]]
