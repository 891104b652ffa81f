"""Tool-call repair: tool calls the model wrote as text become real tool calls.

Recognised forms (``{...}`` is a JSON object; ``[...]`` a JSON array of such objects):

==================================  ===========================================================
``{"name": n, "arguments": {..}}``  bare JSON at the start of a line; also ``function``/
                                    ``parameters``, ``tool``/``args``, ``input``, OpenAI's
                                    ``{"type":"function","function":{...}}`` and arrays of them
````` ```json `` ... `` ``` `````   a fenced block (language json, tool_call, tool_code or none)
                                    holding one of the JSON forms above
``TOOL CALL: name {...}``           a line (also ``TOOL_CALL:``, any case; or ``TOOL CALL: {..}``)
``<tool_call>{..}</tool_call>``     Hermes/Qwen style, anywhere; the closing tag may be missing at
                                    the end of the response
``[TOOL_CALLS] [...]``              Mistral style, anywhere; several calls at once
``<function=name>{..}</function>``  Llama style, anywhere
==================================  ===========================================================

Conservative: a candidate becomes a call only if it parses completely, uses no keys other than the
known ones, names a tool the request declared, and its arguments are an object that validates
against that tool's JSON Schema (when the schema is usable). Anything else is passed on as text,
byte for byte.

Text around calls: text *before* the first repaired call stays as text (OpenAI, Anthropic and
Gemini all allow text next to tool calls; the model's preamble is often useful); whitespace right
before a call is dropped. Text *after* a repaired call is not emitted (SPEC: avoids ambiguity —
it is typically a hallucinated tool result), but further textual calls in it are still repaired.

Streaming. Text flows out as soon as it cannot be the start of a call: only from a trigger
character (``<`` or ``[`` anywhere; ``{``, ````` `` ````` ``, ``T`` at a line start) is text held, by a matcher that
rejects as early as the text allows (``<b>`` after two characters, a JSON object whose first key is
not a tool-call key after that key). A fenced block or JSON value that turned out not to be a call
is streamed on through without looking for calls inside it. The held text is capped at
``buffer_cap_bytes`` characters (a character is at least one byte): a candidate not resolved within
the cap is flushed as text and repair is off for the rest of the response. Every decision depends
only on the text, never on where chunks were split, so any split gives the output of the whole text
at once (tested on all split points).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from router.canonical import (
    StreamEnd, StreamEvent, TextDelta, Tool, ToolCallDelta, ToolCallStart,
)
from router.guards.base import Guard, register

if TYPE_CHECKING:
    from router.config import AppConfig

NEED, MATCH, REJECT = 0, 1, 2

NAME_KEYS = ("name", "tool", "tool_name", "function")
ARG_KEYS = ("arguments", "parameters", "args", "input", "params")
WRAPPER_KEYS = ("function", "function_call", "tool_call")
ALLOWED_KEYS = frozenset(NAME_KEYS + ARG_KEYS + WRAPPER_KEYS + ("id", "type"))
FENCE_LANGS = frozenset({"", "json", "tool_call", "tool_code", "tool", "function_call", "jsonc"})


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


# ---------------------------------------------------------------------------------------------
# Incremental JSON extent scanner


_STRUCT = re.compile(r'[{}\[\]"]')
_IN_STRING = re.compile(r'["\\]')


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
                j = _WS.match(buf, pos).end()
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
        self.pos -= shift


_WS = re.compile(r"[ \t\r\n]*")
_KEY = re.compile(r'"((?:[^"\\]|\\.)*)"')
_KEY_PREFIXES = frozenset(k[:i] for k in ALLOWED_KEYS for i in range(len(k) + 1))


def first_key(buf: str, pos: int) -> str:
    """Could the JSON value at ``buf[pos]`` be a tool call, judging by its first key?

    ``"need"`` (not decided yet), ``"yes"``, ``"no"`` (not JSON-like), or ``"other"`` (JSON with a
    first key no tool-call form starts with: the whole value can be streamed on as text).
    """
    i = _WS.match(buf, pos + 1).end()
    if buf[pos] == "[":
        if i >= len(buf):
            return "need"
        if buf[i] != "{":
            return "no"
        pos = i
        i = _WS.match(buf, pos + 1).end()
    if i >= len(buf):
        return "need"
    if buf[i] != '"':
        return "no"
    m = _KEY.match(buf, i)
    if m is None:
        partial = buf[i + 1:]
        return "need" if "\\" in partial or partial in _KEY_PREFIXES else "other"
    return "yes" if m.group(1) in ALLOWED_KEYS else "other"


# ---------------------------------------------------------------------------------------------
# Candidate matchers: a sequence of parts, stepped over a growing buffer


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:\-]*")
_INLINE_WS = re.compile(r"[ \t]*")
_LANG_LINE = re.compile(r"([A-Za-z0-9_+\-]*)[ \t]*(\r?\n)?")

Part = tuple[str, Any]


def _lit(s: str, icase: bool = False) -> Part:
    return ("lit", (s.lower() if icase else s, icase))


WS: Part = ("ws", _WS)
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

_ANYWHERE = {"<": ("tool_call_tag", "function_tag"), "[": ("mistral",)}
_LINE_START = {
    "{": ("bare_object",), "[": ("mistral", "bare_array"), "`": ("fence",),
    "T": ("tool_call_line", "tool_call_line_json", "tool_call_line_us", "tool_call_line_us_json"),
    "t": ("tool_call_line", "tool_call_line_json", "tool_call_line_us", "tool_call_line_us_json"),
}


@dataclass
class Outcome:
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
    dead: Outcome | None = field(default=None)

    def step(self, buf: str, final: bool) -> Outcome:
        if self.dead is not None:
            return self.dead
        out = self._step(buf, final)
        if out.status == REJECT:
            self.dead = out
        return out

    def _reject(self, skip: str | None = None, end: int = 1) -> Outcome:
        if skip is None and self.opened and self.pattern.skip_after_open:
            skip, end = self.pattern.skip_after_open, self.pos
        return Outcome(REJECT, end, skip)

    def _step(self, buf: str, final: bool) -> Outcome:
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
                    return Outcome(MATCH, pos) if self.eof_ok and pos == n else self._reject()
                if len(seg) < len(s):
                    if final:
                        return Outcome(MATCH, pos) if self.eof_ok and pos == n else self._reject()
                    return Outcome(NEED)
                self.pos = pos + len(s)
                if self.idx == 0:
                    self.opened = True
            elif kind == "ws":
                end = arg.match(buf, pos).end()
                if end == n and not final:
                    return Outcome(NEED)
                self.pos = end
            elif kind == "name":
                if pos >= n:
                    return self._reject() if final else Outcome(NEED)
                m = _NAME.match(buf, pos)
                if m is None:
                    return self._reject()
                if m.end() == n and not final:
                    return Outcome(NEED)
                self.name, self.pos = m.group(), m.end()
            elif kind == "lang":
                m = _LANG_LINE.match(buf, pos)
                if m.group(2) is None:  # the opening line is not complete
                    if m.end() == n and not final:
                        return Outcome(NEED)
                    return self._reject()
                if m.group(1).lower() not in FENCE_LANGS:
                    return self._reject()
                self.pos = m.end()
            elif kind == "json":
                kinds, keyed, skip = arg
                if self.scan is None:
                    if pos >= n:
                        return self._reject() if final else Outcome(NEED)
                    if buf[pos] not in kinds:
                        return self._reject()
                    if keyed:
                        verdict = first_key(buf, pos)
                        if verdict == "need":
                            return self._reject() if final else Outcome(NEED)
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
                    return self._reject() if final else Outcome(NEED)
                self.json_span = (self.json_span[0], end)
                self.pos = end
            elif kind == "eof_ok":
                self.eof_ok = True
            self.idx += 1
        return Outcome(MATCH, self.pos)

    def json_text(self, buf: str) -> str:
        return buf[self.json_span[0]:self.json_span[1]]


# ---------------------------------------------------------------------------------------------
# Turning parsed JSON into calls, conservatively


def _arguments(value: Any) -> dict[str, Any] | None:
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except (json.JSONDecodeError, RecursionError):
            return None
    return value if isinstance(value, dict) else None


def normalize_calls(value: Any) -> list[tuple[str, dict[str, Any]]] | None:
    """JSON value → [(name, arguments)], or None when it is not unambiguously tool calls."""
    items = value if isinstance(value, list) else [value]
    if not items:
        return None
    calls: list[tuple[str, dict[str, Any]]] = []
    for item in items:
        if not isinstance(item, dict) or not item or set(item) - ALLOWED_KEYS:
            return None
        for wrapper in WRAPPER_KEYS:
            inner = item.get(wrapper)
            if isinstance(inner, dict):
                if set(inner) - ALLOWED_KEYS or any(k in item for k in ARG_KEYS):
                    return None
                item = inner
                break
        names = [item[k] for k in NAME_KEYS if k in item]
        if len(names) != 1 or not isinstance(names[0], str):
            return None
        arg_values = [item[k] for k in ARG_KEYS if k in item]
        if len(arg_values) > 1:
            return None
        args = _arguments(arg_values[0]) if arg_values else {}
        if args is None:
            return None
        calls.append((names[0], args))
    return calls


class ToolValidator:
    """Name and JSON-Schema checks against the request's declared tools (validators cached)."""

    def __init__(self, tools: list[Tool]) -> None:
        self._tools = {t.name: t for t in tools}
        self._validators: dict[str, Any] = {}

    def __bool__(self) -> bool:
        return bool(self._tools)

    def valid(self, name: str, args: dict[str, Any]) -> bool:
        tool = self._tools.get(name)
        if tool is None:
            return False
        schema = tool.parameters
        if not schema:
            return True
        if name not in self._validators:
            self._validators[name] = self._compile(schema)
        validator = self._validators[name]
        return validator is None or validator.is_valid(args)

    @staticmethod
    def _compile(schema: dict[str, Any]) -> Any:
        """A validator, or None when the schema itself is unusable (then name + parse suffice)."""
        import jsonschema

        try:
            cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
            cls.check_schema(schema)
            return cls(schema)
        except Exception:  # noqa: BLE001 - a broken client schema must not break the response
            return None


# ---------------------------------------------------------------------------------------------
# The guard


_TRIGGER = re.compile(r"[<\[]|(?m:^)[ \t]*[{`Tt\[]")
_FENCE_CLOSE = re.compile(r"(?m:^)[ \t]{0,3}```")
_FENCE_CLOSE_PARTIAL = re.compile(r"[ \t]{0,3}`{0,2}\Z")

NORMAL, SKIP_JSON, SKIP_FENCE = 0, 1, 2


@register
class ToolCallRepairGuard(Guard):
    """Turns textual tool calls into ToolCallStart/ToolCallDelta events; see the module docstring."""

    name = "tool_call_repair"
    params = ("buffer_cap_bytes",)

    def __init__(self, settings: Any, ctx: Any) -> None:
        super().__init__(settings, ctx)
        self.cap = int(self.settings["buffer_cap_bytes"])
        request = ctx.request
        choice = request.tool_choice
        self._validator = ToolValidator([] if choice is not None and choice.mode == "none" else request.tools)
        self._new_id = ctx.new_call_id or new_call_id
        self._off = not self._validator  # no declared tools: nothing can be repaired
        self._buf = ""
        self._hold = ""  # trailing whitespace of emitted text, dropped if a call follows
        self._line_start = True  # the text consumed so far ends at a line start (plus indentation)
        self._mode = NORMAL
        self._skip_scan: JsonScan | None = None
        self._skip_left = 0  # SKIP_JSON streams at most ``cap`` characters before looking again
        self._matchers: list[Matcher] | None = None
        self._after_call = False
        self._calls = 0  # calls repaired
        self._next_index = 0  # next tool-call index sent to the client
        self._index: dict[int, int] = {}  # upstream tool-call index -> index sent
        self.peak = 0

    @classmethod
    def config_defaults(cls, config: "AppConfig") -> dict[str, Any]:
        return {"enabled": config.session.tool_call_repair_enabled,
                "buffer_cap_bytes": config.session.tool_call_repair_buffer_cap_bytes}

    @property
    def buffered(self) -> int:
        return len(self._buf) + len(self._hold)

    # ---- events

    def feed(self, event: StreamEvent) -> list[StreamEvent]:
        kind = type(event)
        if kind is TextDelta:
            if self._off and not self._after_call and not self._buf:
                if self._hold:
                    event = TextDelta(self._hold + event.text)  # type: ignore[union-attr]
                    self._hold = ""
                return [event]
            text = event.text  # type: ignore[union-attr]
            if (not self._buf and not self._line_start and self._mode == NORMAL and not self._after_call
                    and "\n" not in text and "<" not in text and "[" not in text):
                # Fast path (most chunks): no trigger possible, and the line-start state stays False.
                body = text.rstrip()
                if not body:
                    self._hold += text
                    return []
                held, self._hold = self._hold, text[len(body):]
                if held:
                    return [TextDelta(held + body)]
                return [event] if len(body) == len(text) else [TextDelta(body)]
            out: list[StreamEvent] = []
            self._buf += text
            self._process(out, final=False)
            if len(self._buf) > self.peak:
                self.peak = len(self._buf)
            return out
        out = self._flush()
        if kind is ToolCallStart:
            index = self._index[event.index] = self._next_index  # type: ignore[union-attr]
            self._next_index += 1
            out.append(ToolCallStart(index, event.id, event.name))  # type: ignore[union-attr]
        elif kind is ToolCallDelta:
            if event.index in self._index:  # type: ignore[union-attr]
                out.append(ToolCallDelta(self._index[event.index], event.arguments))  # type: ignore[union-attr]
        elif kind is StreamEnd:
            if self._calls and event.finish_reason in ("stop", "length"):  # type: ignore[union-attr]
                event = StreamEnd("tool_calls", event.usage)  # type: ignore[union-attr]
            out.append(event)
        else:
            out.append(event)
        return out

    def finish(self) -> list[StreamEvent]:
        return self._flush()

    def _flush(self) -> list[StreamEvent]:
        """The text ended (end of stream, or another kind of event): settle the held text."""
        out: list[StreamEvent] = []
        if self._buf:
            self._process(out, final=True)
        self._mode, self._matchers, self._skip_scan = NORMAL, None, None
        if self._hold and not self._after_call:
            out.append(TextDelta(self._hold))
        self._hold = ""
        return out

    # ---- the scanner

    def _consume(self, text: str, out: list[StreamEvent]) -> None:
        """``text`` is settled as text: emit it (or drop it after a repaired call)."""
        if not text:
            return
        nl = text.rfind("\n")
        tail = text[nl + 1:]
        self._line_start = (nl >= 0 or self._line_start) and not tail.strip(" \t")
        if self._after_call:
            return
        body = text.rstrip()
        if not body:
            self._hold += text
            return
        held, self._hold = self._hold, text[len(body):]
        if held:
            body = held + body
        if out and type(out[-1]) is TextDelta:  # one event per feed, however many decisions
            out[-1] = TextDelta(out[-1].text + body)  # type: ignore[union-attr]
        else:
            out.append(TextDelta(body))

    def _process(self, out: list[StreamEvent], final: bool) -> None:
        buf = self._buf
        while buf:
            if self._off:
                self._consume(buf, out)
                buf = ""
                break
            if self._mode == SKIP_JSON:
                scan = self._skip_scan
                assert scan is not None
                window = buf if len(buf) <= self._skip_left else buf[:self._skip_left]
                end = scan.scan(window)
                if end is None:
                    if not final and len(buf) < self._skip_left:
                        self._consume(buf, out)
                        scan.rebase(len(buf))
                        self._skip_left -= len(buf)
                        buf = ""
                        break
                    end = len(window)  # ended, or not closed within the cap: look for calls again
                self._consume(buf[:end], out)
                buf, self._mode, self._skip_scan = buf[end:], NORMAL, None
                continue
            if self._mode == SKIP_FENCE:
                s = ("\n" if self._line_start else "x") + buf
                m = _FENCE_CLOSE.search(s)
                if m is not None:
                    end = m.end() - 1
                    self._consume(buf[:end], out)
                    buf, self._mode = buf[end:], NORMAL
                    continue
                keep = 0
                if not final:
                    nl = s.rfind("\n")
                    if nl >= 0:
                        p = _FENCE_CLOSE_PARTIAL.match(s, nl + 1)
                        keep = len(s) - (nl + 1) if p is not None else 0
                self._consume(buf[:len(buf) - keep], out)
                buf = buf[len(buf) - keep:]
                break
            if self._matchers is None:
                found = self._find_trigger(buf)
                if found is None:
                    self._consume(buf, out)
                    buf = ""
                    break
                i, names = found
                self._consume(buf[:i], out)
                buf = buf[i:]
                self._matchers = [Matcher(PATTERNS[n]) for n in names]
            outcome, matcher = self._step(buf if len(buf) <= self.cap else buf[:self.cap], final)
            if outcome.status == NEED:
                if len(buf) >= self.cap:  # unresolved within the cap: give up for this response
                    self._off = True
                    self._matchers = None
                    continue
                break
            self._matchers = None
            if outcome.status == MATCH:
                assert matcher is not None
                calls = self._parse(matcher, buf)
                if calls:
                    self._emit_calls(calls, out)
                    buf = buf[outcome.end:]
                    self._line_start = False
                    continue
                self._consume(buf[:outcome.end], out)
                buf = buf[outcome.end:]
                continue
            self._consume(buf[:outcome.end], out)
            buf = buf[outcome.end:]
            if outcome.skip == "json":
                self._mode, self._skip_scan, self._skip_left = SKIP_JSON, JsonScan(0), self.cap
            elif outcome.skip == "fence":
                self._mode = SKIP_FENCE
        self._buf = buf

    def _find_trigger(self, buf: str) -> tuple[int, tuple[str, ...]] | None:
        s = ("\n" if self._line_start else "x") + buf
        m = _TRIGGER.search(s)
        if m is None:
            return None
        j = m.end() - 1  # the trigger character, in s
        c = s[j]
        k = s.rfind("\n", 0, j)
        at_line_start = k >= 0 and not s[k + 1:j].strip(" \t")
        names = _ANYWHERE.get(c, ())
        if at_line_start:
            names = tuple(dict.fromkeys(names + _LINE_START.get(c, ())))
        return j - 1, names

    def _step(self, buf: str, final: bool) -> tuple[Outcome, Matcher | None]:
        matchers = self._matchers
        assert matchers is not None
        best: tuple[Outcome, Matcher] | None = None
        waiting = False
        for m in matchers:
            outcome = m.step(buf, final)
            if outcome.status == MATCH:
                return outcome, m
            if outcome.status == NEED:
                waiting = True
            elif best is None or m.pos > best[1].pos:
                best = (outcome, m)
        if waiting:
            return Outcome(NEED), None
        if best is None:  # no pattern for this trigger (cannot happen with the tables above)
            return Outcome(REJECT, 1), None
        return best[0], None

    def _parse(self, matcher: Matcher, buf: str) -> list[tuple[str, dict[str, Any]]] | None:
        try:
            value = json.loads(matcher.json_text(buf))
        except (json.JSONDecodeError, RecursionError):
            return None
        if matcher.pattern.named:
            args = _arguments(value)
            calls = [(matcher.name, args)] if args is not None else None
        else:
            calls = normalize_calls(value)
        if not calls or not all(self._validator.valid(n, a) for n, a in calls):
            return None
        return calls

    def _emit_calls(self, calls: list[tuple[str, dict[str, Any]]], out: list[StreamEvent]) -> None:
        self._hold = ""
        self._after_call = True
        for name, args in calls:
            index = self._next_index
            self._next_index += 1
            self._calls += 1
            out.append(ToolCallStart(index, self._new_id(), name))
            out.append(ToolCallDelta(index, json.dumps(args, ensure_ascii=False, separators=(",", ":"))))
            self.record("tool_call_repaired", f"{name} (from text)")
