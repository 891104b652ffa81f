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

This module is the guard and its conservative checks (:func:`normalize_calls`,
:class:`ToolValidator`): what is held, emitted, dropped and repaired. The forms themselves and the
matcher that recognises one live in :mod:`router.guards.call_patterns`; the incremental JSON extent
scanner both rely on lives in :mod:`router.guards.json_extent`.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import TYPE_CHECKING, Any

from router.wire.canonical import (
    StreamEnd, StreamEvent, TextDelta, Tool, ToolCallDelta, ToolCallStart,
)
from router.guards.base import Guard, register
from router.guards.call_patterns import (
    ANYWHERE, LINE_START, MATCH, NEED, PATTERNS, REJECT, TRIGGER, Matcher, MatchStep,
)
from router.guards.json_extent import ALLOWED_KEYS, ARG_KEYS, NAME_KEYS, WRAPPER_KEYS, JsonScan

if TYPE_CHECKING:
    from router.config import AppConfig


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


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
            out.append(ToolCallStart(index, event.id, event.name, event.custom))  # type: ignore[union-attr]
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
        m = TRIGGER.search(s)
        if m is None:
            return None
        j = m.end() - 1  # the trigger character, in s
        c = s[j]
        k = s.rfind("\n", 0, j)
        at_line_start = k >= 0 and not s[k + 1:j].strip(" \t")
        names = ANYWHERE.get(c, ())
        if at_line_start:
            names = tuple(dict.fromkeys(names + LINE_START.get(c, ())))
        return j - 1, names

    def _step(self, buf: str, final: bool) -> tuple[MatchStep, Matcher | None]:
        matchers = self._matchers
        assert matchers is not None
        best: tuple[MatchStep, Matcher] | None = None
        waiting = False
        for m in matchers:
            outcome = m.step(buf, final)
            if outcome.status == MATCH:
                return outcome, m
            if outcome.status == NEED:
                waiting = True
            elif best is None or (m.pos, outcome.skip is not None) > (best[1].pos, best[0].skip is not None):
                # the furthest rejection wins; at a tie, the one that recognised a construct to skip
                # (``[{"data": ...}]`` is a JSON look-alike, not merely "not [TOOL_CALLS]")
                best = (outcome, m)
        if waiting:
            return MatchStep(NEED), None
        if best is None:  # no pattern for this trigger (cannot happen with the tables above)
            return MatchStep(REJECT, 1), None
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
