"""Text loop detection: cut a response whose tail is one pattern repeated back to back.

Definition. The text *loops* at position ``x`` when its last ``k * p`` characters before ``x`` are
``k`` copies of one unit of length ``p`` (``min_pattern_length <= p <= max_pattern_length``,
``k = min_repetitions``) and ``p`` is the *smallest* period of that span. The last condition is what
keeps ``----``/``====`` rules, ``}}}}`` runs and ``| --- | --- |`` table separators out: their smallest
period is below ``min_pattern_length`` (default 20). A phrase shorter than that ("I'm stuck. " 50
times) is still a loop when its unit holds at least three different letters/digits and it fills
``SHORT_SPAN_FACTOR * min_repetitions * min_pattern_length`` characters (400 by default) — rules,
``0, 0, 0`` and ``NaN NaN`` never qualify, a model stuck on a short sentence does.

Algorithm (per check, independent of the response length):

* Only a tail window of ``max_pattern_length * min_repetitions`` characters is kept.
* Checks run at fixed absolute offsets, every ``CHECK_INTERVAL`` (16) characters, so the outcome does
  not depend on how the text was chunked (streaming and non-streaming cut at the same place). A loop
  is therefore seen once its copies reach a check point: at most 16 characters past the
  ``min_repetitions``-th copy while it keeps going (a run of exactly ``min_repetitions`` copies that
  stops between two check points is let through).
* At a check point ``x`` the last ``min_pattern_length`` characters (the *anchor*) are searched
  backwards with ``str.rfind`` within ``max_pattern_length`` characters. No earlier occurrence means
  no loop ends here — the common case, one C-level search over ~520 characters. An occurrence at
  distance ``p`` is verified with one slice comparison
  ``t[x-k*p : x-p] == t[x-(k-1)*p : x]`` (``k`` copies ⇔ the span equals itself shifted by ``p``).
  The nearest occurrence is the smallest period, so a verified ``p`` is minimal. When the anchor
  itself has a short period (inside a ``-----`` run) up to three earlier anchors are tried.

Cost per check: O(max_pattern_length * min_repetitions) byte comparisons in C in the worst case,
one ``rfind`` in the common case; memory: the window. On a cut, what was already sent stays (it
cannot be unsent while streaming, and non-streaming gives the same text for consistency), then a
note and ``StreamEnd(finish_reason="loop")``, which every codec maps to its normal stop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from router.wire.canonical import ChatResponse, StreamEnd, StreamEvent, TextDelta, ThinkingDelta
from router.guards.base import NOTE_PREFIX, Guard, register

if TYPE_CHECKING:
    from router.config import AppConfig

CHECK_INTERVAL = 16  # characters between checks: detection latency vs cost
_EXTRA_ANCHORS = 3  # earlier anchors tried when the last one sits inside a short-period run
_MAX_OCCURRENCES = 4  # anchor occurrences verified per anchor (coincidental matches are rare)
SHORT_SPAN_FACTOR = 4  # a sub-minimum unit must repeat over 4x the normal span (400 chars by default)


@dataclass(frozen=True, slots=True)
class Detection:
    keep: int  # characters of the chunk just fed that precede the cut point
    period: int  # length of the repeated unit
    repetitions: int  # copies counted inside the window (at least min_repetitions)


class RepetitionDetector:
    """Incremental detector over one text channel (answer text or thinking text)."""

    __slots__ = ("min_len", "max_len", "reps", "short_span", "window", "interval", "_tail", "_pending", "_total",
                 "_next")

    def __init__(self, min_len: int, max_len: int, reps: int, interval: int = CHECK_INTERVAL) -> None:
        self.min_len, self.max_len, self.reps = min_len, max(max_len, min_len), reps
        self.short_span = SHORT_SPAN_FACTOR * reps * min_len
        self.window = max(self.max_len * reps, self.short_span) + self.min_len
        self.interval = interval
        self._tail = ""
        self._pending: list[str] = []  # chunks since the last check point (fewer than interval chars)
        self._total = 0  # characters fed so far
        self._next = interval  # absolute offset of the next check

    @property
    def buffered(self) -> int:
        return len(self._tail) + sum(map(len, self._pending))

    def feed(self, text: str) -> Detection | None:
        if not text:
            return None
        end = self._total + len(text)
        if end < self._next:  # fast path: no check point inside this chunk, just remember it
            self._pending.append(text)
            self._total = end
            return None
        start = self._total  # absolute offset of this chunk: check points lie inside it
        if self._pending:
            self._pending.append(text)
            text = "".join(self._pending)
            self._pending = []
        tail = self._tail + text
        base = end - len(tail)  # absolute offset of tail[0]
        while self._next <= end:
            x = self._next - base
            period = self._check(tail, x)
            if period:
                return Detection(self._next - start, period, self._count(tail, x, period))
            self._next += self.interval
        self._tail = tail if len(tail) <= self.window else tail[-self.window:]
        self._total = end
        return None

    def _check(self, t: str, x: int) -> int:
        lo, k = self.min_len, self.reps
        if x < lo * k:
            return 0
        for a in range(_EXTRA_ANCHORS + 1):
            stop = x - a * lo
            start = stop - lo
            if start - lo < 0:
                return 0
            anchor = t[start:stop]
            search_end = stop - 1
            floor = max(0, start - self.max_len)
            short = False
            for _ in range(_MAX_OCCURRENCES):
                j = t.rfind(anchor, floor, search_end)
                if j < 0:
                    break
                p = start - j
                if p < lo:
                    if self._short_loop(t, x, p):
                        return p
                    short = True  # the anchor has a short period here: try an earlier anchor
                    break
                if x - k * p >= 0 and t[x - k * p:x - p] == t[x - (k - 1) * p:x]:
                    return p
                search_end = j + lo - 1  # next occurrence further back
            if not short:
                return 0  # a loop ending at x would make this anchor recur at distance p
        return 0

    def _short_loop(self, t: str, x: int, q: int) -> bool:
        """A unit shorter than ``min_pattern_length`` ("I'm stuck. " x 50) counts only when it holds
        at least 3 different letters/digits (never ``----``, ``| --- |``, ``0, 0,``, ``NaN NaN``) and
        repeats over ``SHORT_SPAN_FACTOR`` times the usual span."""
        span = self.short_span
        if x < span or t[x - span:x - q] != t[x - span + q:x]:
            return False
        return len({c for c in t[x - q:x] if c.isalnum()}) >= 3

    @staticmethod
    def _count(t: str, x: int, p: int) -> int:
        unit, c = t[x - p:x], 1
        while x - (c + 1) * p >= 0 and t[x - (c + 1) * p:x - c * p] == unit:
            c += 1
        return c


@register
class LoopDetectionGuard(Guard):
    """Cuts the stream (text or thinking) once it loops; see the module docstring."""

    name = "loop_detection"
    params = ("min_pattern_length", "max_pattern_length", "min_repetitions")

    def __init__(self, settings: Any, ctx: Any) -> None:
        super().__init__(settings, ctx)
        # Detectors are made when the first text of their channel arrives: one guard is built
        # for every request, and most non-streamed replies never need one (``leaves_unchanged``).
        self._detectors: dict[type, RepetitionDetector] = {}

    def _detector(self, channel: type) -> RepetitionDetector:
        detector = self._detectors.get(channel)
        if detector is None:
            lo = int(self.settings["min_pattern_length"])
            hi = max(int(self.settings["max_pattern_length"]), lo)
            detector = self._detectors[channel] = RepetitionDetector(lo, hi, int(self.settings["min_repetitions"]))
        return detector

    def leaves_unchanged(self, response: ChatResponse) -> bool:
        """No loop fits in fewer than ``min_pattern_length * min_repetitions`` characters (the
        shortest span of any detection; sub-minimum units need four times more): most replies."""
        shortest = int(self.settings["min_pattern_length"]) * int(self.settings["min_repetitions"])
        chars = 0
        for part in response.parts:
            text = getattr(part, "text", None)
            if isinstance(text, str):
                chars += len(text)
        return chars < shortest

    @classmethod
    def config_defaults(cls, config: "AppConfig") -> dict[str, Any]:
        c = config.loop_detection
        return {"enabled": c.enabled, "min_pattern_length": c.min_pattern_length,
                "max_pattern_length": c.max_pattern_length, "min_repetitions": c.min_repetitions}

    @property
    def buffered(self) -> int:
        return sum(d.buffered for d in self._detectors.values())

    def feed(self, event: StreamEvent) -> list[StreamEvent]:
        if type(event) is TextDelta:
            hit = self._detector(TextDelta).feed(event.text)
            if hit is None:
                return [event]
            return self._cut(TextDelta(event.text[:hit.keep]) if hit.keep else None, hit, "text")
        if type(event) is ThinkingDelta:
            hit = self._detector(ThinkingDelta).feed(event.text)
            if hit is None:
                return [event]
            return self._cut(ThinkingDelta(event.text[:hit.keep]) if hit.keep else None, hit, "thinking")
        return [event]

    def _cut(self, head: StreamEvent | None, hit: Detection, channel: str) -> list[StreamEvent]:
        self.stop = True
        self.record("loop_cut", f"{channel}: a {hit.period}-character pattern repeated {hit.repetitions} times")
        note = (f"\n\n{NOTE_PREFIX}response cut off — the model repeated the same text "
                f"{hit.repetitions} times]")
        out: list[StreamEvent] = [head] if head is not None else []
        out += [TextDelta(note), StreamEnd(finish_reason="loop")]
        return out
