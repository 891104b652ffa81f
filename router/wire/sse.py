"""Server-sent events: format one frame, and parse a byte stream incrementally.

All three providers stream as SSE (``text/event-stream``). Frames are small and the parser must cope
with network chunks that split a frame anywhere (even inside a multi-byte UTF-8 character or between
``\\r`` and ``\\n``), so it buffers bytes and only decodes complete lines.

What it buffers is bounded: a line, or the data of one event, longer than ``max_line`` bytes raises
:class:`LineTooLong` (an upstream that never sent a line break grew the buffer to ~690 MB). The
default is far above any real frame: output token limits keep a whole tool call (Gemini sends each
in one frame) well under it.
"""

from __future__ import annotations

import re
from typing import Any

from router.wire import fastjson

_EOL = re.compile(rb"\r\n|\r|\n")
DEFAULT_MAX_LINE = 1024 * 1024


class LineTooLong(ValueError):
    """A line, or one event's data, over the parser's ``max_line`` bytes. ``frames`` are the ones
    the same ``feed`` call completed before it: they are good, and the caller should pass them on."""

    def __init__(self, limit: int, frames: list[tuple[str | None, str]] | None = None) -> None:
        super().__init__(f"a stream line or event is longer than {limit} bytes")
        self.limit = limit
        self.frames = frames or []


def frame(data: str | dict[str, Any], event: str | None = None) -> bytes:
    """One SSE frame: optional ``event:`` line, ``data:`` line(s), blank line.

    Dicts are JSON-encoded compactly (compact JSON has no line breaks: they are escaped inside
    strings); a string with newlines becomes several ``data:`` lines so the receiver joins them
    back with ``\\n``.
    """
    if isinstance(data, dict):
        body = b"data: " + fastjson.dumps(data) + b"\n\n"
        return body if not event else b"event: " + event.encode("utf-8") + b"\n" + body
    lines = [f"event: {event}"] if event else []
    lines.extend(f"data: {line}" for line in data.split("\n"))
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def event_end(chunk: bytes, start: int = 0) -> int:
    """Where the first event that ends in ``chunk`` after ``start`` ends: just past its blank line
    (``\\n\\n``, or ``\\r\\n\\r\\n`` where lines end in CRLF); ``len(chunk)`` when none does. For
    reading a chunk an event at a time; any split gives :class:`SSEParser` the same frames."""
    end = chunk.find(b"\n\n", start)
    if end >= 0:
        return end + 2
    end = chunk.find(b"\r\n\r\n", start)
    return len(chunk) if end < 0 else end + 4


class SSEParser:
    """Incremental parser: ``feed(bytes)`` returns the frames completed so far.

    Each frame is ``(event or None, data)``; comment lines (``:keep-alive``) and ``id:``/``retry:``
    fields are ignored, frames with no ``data:`` line are not reported (per the SSE spec).
    """

    def __init__(self, max_line: int | None = DEFAULT_MAX_LINE) -> None:
        self.max_line = max_line  # None: no limit (our own output, parsed back in tests and replays)
        # The incomplete last line. A bytearray, so a long line growing chunk by chunk is appended
        # to, not copied whole on every chunk.
        self._buffer = bytearray()
        self._scanned = 0
        self._event: str | None = None
        self._data: list[str] = []
        self._data_size = 0

    def feed(self, chunk: bytes) -> list[tuple[str | None, str]]:
        if not self._buffer and b"\r" not in chunk:
            return self._feed_lf(chunk)
        return self._feed_any(chunk)

    def _feed_lf(self, chunk: bytes) -> list[tuple[str | None, str]]:
        """``_feed_any`` for a chunk that starts a line and has no ``\\r``: every line ends with
        ``\\n``, so one ``split`` finds them all.

        Speed trick (one place; ``tests/wire/test_wire_sse.py`` checks it gives what
        ``_feed_any`` gives for any chunking): providers end lines with ``\\n`` and each network
        read usually holds whole events, and the general loop's regular-expression search per line
        was the largest single cost of reading a stream. The three lines every provider's events
        are made of (``event: <name>``, ``data: <json>``, the blank line ending the event) are read
        here without a call of ``_handle_line`` each: Anthropic sends three lines an event, and the
        call per line was ~5% of a streamed Responses -> Anthropic reply's instructions.
        """
        lines = chunk.split(b"\n")
        rest = lines.pop()  # the incomplete last line (empty when the chunk ends a line)
        frames: list[tuple[str | None, str]] = []
        max_line = self.max_line
        try:
            for line in lines:
                if not line:
                    if self._data:
                        frames.append((self._event, "\n".join(self._data)))
                    self._event, self._data, self._data_size = None, [], 0
                elif line.startswith(b"data: "):
                    value = line[6:].decode("utf-8", errors="replace")
                    self._data.append(value)
                    self._data_size += len(value)
                    if max_line is not None and self._data_size > max_line:
                        raise LineTooLong(max_line)
                elif line.startswith(b"event: "):
                    self._event = line[7:].decode("utf-8", errors="replace")
                else:
                    self._handle_line(line.decode("utf-8", errors="replace"), frames)
        except LineTooLong as exc:  # an event of too many data lines
            exc.frames = frames
            raise
        if rest:
            if self.max_line is not None and len(rest) > self.max_line:
                raise LineTooLong(self.max_line, frames)
            self._buffer += rest
            self._scanned = len(rest) - 1
        return frames

    def _feed_any(self, chunk: bytes) -> list[tuple[str | None, str]]:
        buffer = self._buffer
        if buffer:
            buffer += chunk
            buf: bytes | bytearray = buffer
        else:
            buf = chunk  # most chunks end on a line break: nothing is copied
        frames: list[tuple[str | None, str]] = []
        pos = 0
        try:
            while True:
                match = _EOL.search(buf, max(pos, self._scanned))
                if match is None or (match.group() == b"\r" and match.end() == len(buf)):
                    break  # incomplete line (a final lone \r may be the first half of \r\n)
                self._handle_line(buf[pos:match.start()].decode("utf-8", errors="replace"), frames)
                pos = match.end()
        except LineTooLong as exc:  # an event of too many data lines
            exc.frames = frames
            raise
        rest = len(buf) - pos
        if self.max_line is not None and rest > self.max_line:
            raise LineTooLong(self.max_line, frames)
        if buf is buffer:
            del buffer[:pos]
        elif rest:
            buffer += memoryview(buf)[pos:]
        self._scanned = max(0, rest - 1)  # don't rescan a long partial line
        return frames

    def close(self) -> list[tuple[str | None, str]]:
        """Flush a final frame the sender did not terminate with a blank line."""
        frames: list[tuple[str | None, str]] = []
        if self._buffer:
            rest, self._buffer, self._scanned = self._buffer, bytearray(), 0
            self._handle_line(rest.rstrip(b"\r").decode("utf-8", errors="replace"), frames)
        self._handle_line("", frames)
        return frames

    def _handle_line(self, line: str, frames: list[tuple[str | None, str]]) -> None:
        if line == "":
            if self._data:
                frames.append((self._event, "\n".join(self._data)))
            self._event, self._data, self._data_size = None, [], 0
            return
        if line.startswith(":"):
            return
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._data_size += len(value)  # an event of many data lines: bound their sum too
            if self.max_line is not None and self._data_size > self.max_line:
                raise LineTooLong(self.max_line)
        elif name == "event":
            self._event = value


def parse_all(payload: bytes) -> list[tuple[str | None, str]]:
    """Parse a complete SSE body (tests, cached replies)."""
    parser = SSEParser(max_line=None)
    return parser.feed(payload) + parser.close()
