"""Tool-call loop detection: the agent calls the same tool with the same arguments again and again.

Signature of a call: tool name + canonical JSON of its arguments (sorted keys, no whitespace), so
``{"a":1,"b":2}`` and ``{ "b": 2, "a": 1 }`` are the same call whichever wire format carried it.

How repeats are counted (the larger of two counts is used):

* **Proxy history** (:class:`ToolCallHistory`, one per session): every call this proxy passed or
  stopped, with timestamps; calls older than ``ttl_seconds`` no longer count. This is the
  authoritative count within one proxy instance.
* **Conversation**: the request's messages already hold the assistant's previous tool calls. The
  number of *consecutive* most recent assistant turns that made this exact call is counted too
  (no timestamps there, so consecutiveness stands in for the TTL). This catches loops when a
  session's requests are spread over several proxy instances, and after a proxy restart.

Policy: an identical call is let through ``max_repeats`` times; the next one trips the mode.
``break`` replaces it with an assistant note explaining the loop. ``chance_then_block`` first
replaces it with a warning telling the model to change approach, and if the model repeats the call
again (within the TTL) replaces it with the block note. A response whose every call was stopped ends
with ``finish_reason="stop"`` (the client has nothing to execute); other calls in the same response
still go through, re-indexed.

Calls are held only until they are complete (the next event that is not one of their argument
fragments), at most ``MAX_HELD_ARGUMENTS`` characters — a larger call is passed on unchecked.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from router.wire.canonical import (
    ChatRequest, StreamEnd, StreamError, StreamEvent, TextDelta, ToolCallDelta, ToolCallPart, ToolCallStart,
)
from router.guards.base import NOTE_PREFIX, Guard, register

if TYPE_CHECKING:
    from router.config import AppConfig

MAX_HELD_ARGUMENTS = 65536
_MAX_TIMES_PER_SIGNATURE = 64
_MAX_CONVERSATION_TURNS = 64


def signature(name: str, arguments: str) -> str:
    """A short stable key for (name, canonical arguments); hashed so history memory stays small."""
    try:
        canonical = json.dumps(json.loads(arguments) if arguments.strip() else {}, sort_keys=True,
                               separators=(",", ":"), ensure_ascii=False)
    except (json.JSONDecodeError, RecursionError):
        canonical = arguments.strip()
    digest = hashlib.blake2b(f"{name}\x00{canonical}".encode("utf-8", "surrogatepass"), digest_size=16)
    return digest.hexdigest()


class _Entry:
    __slots__ = ("times", "warned_at")

    def __init__(self) -> None:
        self.times: deque[float] = deque(maxlen=_MAX_TIMES_PER_SIGNATURE)
        self.warned_at: float | None = None


class ToolCallHistory:
    """Per-session record of tool calls: signature → recent timestamps and a warned flag.

    Bounded: at most ``max_entries`` signatures (least recently used evicted first), at most 64
    timestamps each, and signatures are 32-character hashes. Expiry is lazy (on lookup).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_entries: int = 256) -> None:
        self.clock = clock
        self.max_entries = max_entries
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __bool__(self) -> bool:  # an empty history is still a history: `history or new()` must keep it
        return True

    def _get(self, sig: str, ttl: float) -> _Entry | None:
        entry = self._entries.get(sig)
        if entry is None:
            return None
        cutoff = self.clock() - ttl
        while entry.times and entry.times[0] < cutoff:
            entry.times.popleft()
        if entry.warned_at is not None and entry.warned_at < cutoff:
            entry.warned_at = None
        if not entry.times and entry.warned_at is None:
            del self._entries[sig]
            return None
        return entry

    def count(self, sig: str, ttl: float) -> int:
        """Calls with this signature recorded within the last ``ttl`` seconds."""
        entry = self._get(sig, ttl)
        return len(entry.times) if entry else 0

    def warned(self, sig: str, ttl: float) -> bool:
        entry = self._get(sig, ttl)
        return bool(entry and entry.warned_at is not None)

    def to_json(self) -> dict[str, list[Any]]:
        """Signature → [times, warned_at]: what a shared store keeps (meaningful across processes
        only with a wall clock, ``time.time``)."""
        return {sig: [list(e.times), e.warned_at] for sig, e in self._entries.items()}

    @classmethod
    def from_json(cls, data: Any, clock: Callable[[], float] = time.time, max_entries: int = 256) -> "ToolCallHistory":
        """Inverse of :meth:`to_json`; entries of a wrong shape are skipped."""
        history = cls(clock, max_entries)
        if isinstance(data, dict):
            for sig, value in list(data.items())[-max_entries:]:
                if not (isinstance(sig, str) and isinstance(value, list) and len(value) == 2):
                    continue
                times, warned_at = value
                entry = _Entry()
                entry.times.extend(float(t) for t in times if isinstance(t, (int, float)))
                entry.warned_at = float(warned_at) if isinstance(warned_at, (int, float)) else None
                history._entries[sig] = entry
        return history

    def record(self, sig: str, warned: bool = False) -> None:
        entry = self._entries.get(sig)
        if entry is None:
            entry = self._entries[sig] = _Entry()
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(sig)
        now = self.clock()
        entry.times.append(now)
        if warned:
            entry.warned_at = now


def conversation_runs(request: ChatRequest) -> dict[str, int]:
    """Signature → number of consecutive most recent assistant turns that made that call.

    Tool results (role ``tool``, or user messages holding only tool results, as Anthropic sends
    them) do not break a run; a real user message or an assistant turn without tool calls does.
    """
    runs: dict[str, int] = {}
    alive: set[str] | None = None  # signatures still running; None before the first turn
    turns = 0
    for message in reversed(request.messages):
        if message.role == "tool" or (message.role == "user" and message.parts and all(
                p.type == "tool_result" for p in message.parts)):
            continue
        if message.role != "assistant":
            break
        calls = {signature(p.name, p.arguments) for p in message.parts if isinstance(p, ToolCallPart)}
        if not calls:
            break
        alive = calls if alive is None else alive & calls
        if not alive:
            break
        for sig in alive:
            runs[sig] = runs.get(sig, 0) + 1
        turns += 1
        if turns >= _MAX_CONVERSATION_TURNS:
            break
    return runs


class _Held:
    __slots__ = ("start", "parts", "size", "released")

    def __init__(self, start: ToolCallStart) -> None:
        self.start = start
        self.parts: list[str] = []
        self.size = 0
        self.released = False  # too large to hold: passed on unchecked


@register
class ToolCallLoopGuard(Guard):
    """Stops identical repeated tool calls; see the module docstring."""

    name = "tool_call_loop_detection"
    params = ("max_repeats", "ttl_seconds", "mode")

    def __init__(self, settings: Any, ctx: Any) -> None:
        super().__init__(settings, ctx)
        self.max_repeats = int(self.settings["max_repeats"])
        self.ttl = float(self.settings["ttl_seconds"])
        self.mode = str(self.settings["mode"])
        self._runs: dict[str, int] | None = None  # computed on the first tool call only
        self._held: _Held | None = None
        self._index: dict[int, int] = {}  # upstream index -> index sent to the client
        self._emitted = 0
        self._notes: list[str] = []
        self._stopped = 0

    @classmethod
    def config_defaults(cls, config: "AppConfig") -> dict[str, Any]:
        c = config.tool_call_loop_detection
        return {"enabled": c.enabled, "max_repeats": c.max_repeats, "ttl_seconds": c.ttl_seconds, "mode": c.mode}

    @property
    def buffered(self) -> int:
        return self._held.size if self._held else 0

    def feed(self, event: StreamEvent) -> list[StreamEvent]:
        kind = type(event)
        if kind is ToolCallDelta:
            held = self._held
            if held is not None and event.index == held.start.index and not held.released:
                held.parts.append(event.arguments)
                held.size += len(event.arguments)
                if held.size > MAX_HELD_ARGUMENTS:
                    return self._release(held)
                return []
            if event.index in self._index:
                return [ToolCallDelta(self._index[event.index], event.arguments)]
            return []  # fragments of a call that was stopped
        out = self._complete()
        if kind is ToolCallStart:
            self._held = _Held(event)  # type: ignore[arg-type]
            return out
        if kind is StreamEnd:
            out += self._flush_notes()
            if self._stopped and self._emitted == 0 and event.finish_reason == "tool_calls":  # type: ignore[union-attr]
                event = StreamEnd("stop", event.usage)  # type: ignore[union-attr]
        elif kind is StreamError:
            out += self._flush_notes()
        out.append(event)
        return out

    def finish(self) -> list[StreamEvent]:
        return self._complete() + self._flush_notes()

    def _flush_notes(self) -> list[StreamEvent]:
        if not self._notes:
            return []
        text = "\n\n".join(self._notes)
        self._notes = []
        return [TextDelta(text)]

    def _emit(self, held: _Held) -> list[StreamEvent]:
        index = self._emitted
        self._emitted += 1
        self._index[held.start.index] = index
        out: list[StreamEvent] = [ToolCallStart(index, held.start.id, held.start.name, held.start.custom)]
        if held.parts:
            out.append(ToolCallDelta(index, "".join(held.parts)))
        return out

    def _release(self, held: _Held) -> list[StreamEvent]:
        out = self._emit(held)
        held.released, held.parts = True, []
        return out

    def _complete(self) -> list[StreamEvent]:
        held, self._held = self._held, None
        if held is None or held.released:
            return []
        name = held.start.name
        sig = signature(name, "".join(held.parts))
        if self._runs is None:
            self._runs = conversation_runs(self.ctx.request)
        history = self.ctx.history
        previous = max(history.count(sig, self.ttl), self._runs.get(sig, 0))
        if previous < self.max_repeats:
            history.record(sig)
            return self._emit(held)
        times = previous + 1
        self._stopped += 1
        if self.mode == "chance_then_block" and not history.warned(sig, self.ttl):
            history.record(sig, warned=True)
            self.record("tool_loop_warned", f"{name}: identical call #{times}")
            self._notes.append(
                f"{NOTE_PREFIX}tool call loop warning — `{name}` was called {times} times with the same "
                f"arguments and keeps giving the same result. The call was not run. Change approach: "
                f"use different arguments or another tool, or explain what is blocking you. "
                f"Repeating it again will be blocked.]")
        else:
            history.record(sig)
            self.record("tool_loop_blocked", f"{name}: identical call #{times}")
            self._notes.append(
                f"{NOTE_PREFIX}tool call loop stopped — `{name}` was called {times} times with the same "
                f"arguments within {self.ttl:g} s, so this call was not run. Try a different approach.]")
        return []
