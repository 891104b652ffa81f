"""Server-sent events: format one frame, and parse a byte stream incrementally.

All three providers stream as SSE (``text/event-stream``). Frames are small and the parser must cope
with network chunks that split a frame anywhere (even inside a multi-byte UTF-8 character or between
``\\r`` and ``\\n``), so it buffers bytes and only decodes complete lines.
"""

from __future__ import annotations

import re
from typing import Any

from router import fastjson

_EOL = re.compile(rb"\r\n|\r|\n")


def frame(data: str | dict[str, Any], event: str | None = None) -> bytes:
    """One SSE frame: optional ``event:`` line, ``data:`` line(s), blank line.

    Dicts are JSON-encoded compactly; a string with newlines becomes several ``data:`` lines so the
    receiver joins them back with ``\\n``.
    """
    text = fastjson.dumps_str(data) if isinstance(data, dict) else data
    lines = [f"event: {event}"] if event else []
    lines.extend(f"data: {line}" for line in text.split("\n"))
    return ("\n".join(lines) + "\n\n").encode("utf-8")


class SSEParser:
    """Incremental parser: ``feed(bytes)`` returns the frames completed so far.

    Each frame is ``(event or None, data)``; comment lines (``:keep-alive``) and ``id:``/``retry:``
    fields are ignored, frames with no ``data:`` line are not reported (per the SSE spec).
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._scanned = 0
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[tuple[str | None, str]]:
        buf = self._buffer + chunk if self._buffer else chunk
        frames: list[tuple[str | None, str]] = []
        pos = 0
        while True:
            match = _EOL.search(buf, max(pos, self._scanned))
            if match is None or (match.group() == b"\r" and match.end() == len(buf)):
                break  # incomplete line (a final lone \r may be the first half of \r\n)
            self._handle_line(buf[pos:match.start()].decode("utf-8", errors="replace"), frames)
            pos = match.end()
        self._buffer = buf[pos:]
        self._scanned = max(0, len(self._buffer) - 1)  # don't rescan a long partial line
        return frames

    def close(self) -> list[tuple[str | None, str]]:
        """Flush a final frame the sender did not terminate with a blank line."""
        frames: list[tuple[str | None, str]] = []
        if self._buffer:
            rest, self._buffer, self._scanned = self._buffer, b"", 0
            self._handle_line(rest.rstrip(b"\r").decode("utf-8", errors="replace"), frames)
        self._handle_line("", frames)
        return frames

    def _handle_line(self, line: str, frames: list[tuple[str | None, str]]) -> None:
        if line == "":
            if self._data:
                frames.append((self._event, "\n".join(self._data)))
            self._event, self._data = None, []
            return
        if line.startswith(":"):
            return
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value


def parse_all(payload: bytes) -> list[tuple[str | None, str]]:
    """Parse a complete SSE body (tests, cached replies)."""
    parser = SSEParser()
    return parser.feed(payload) + parser.close()
