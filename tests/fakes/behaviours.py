"""What one generation request of the fake provider gets: plain data the server interprets
(:func:`reply`, :func:`error`, :func:`delay`, :func:`stream_chunks`, :func:`reset`,
:func:`reset_after_chunks`, :func:`textual_tool_call`, :func:`loop`, :func:`stream_error`,
:func:`raw_stream`). Shared by every wire format."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Union

from router.wire.canonical import FinishReason, Usage

DEFAULT_TEXTUAL_TOOL_CALL = (
    "I'll read the file.\n<tool_call>\n"
    '{"name": "read_file", "arguments": {"path": "README.md"}}\n</tool_call>'
)


@dataclass(slots=True)
class Reply:
    """A normal answer. ``text=None`` echoes the last user text (so tests can see what arrived),
    unless there are tool calls (then the reply is the calls alone)."""

    text: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    usage: Usage | None = None
    thinking: str | None = None
    thinking_signature: str | None = None
    finish_reason: FinishReason | None = None
    model: str | None = None  # model name reported back (default: the requested one)


@dataclass(slots=True)
class Error:
    """An HTTP error before any body byte, in the provider's error shape (or ``body`` verbatim)."""

    status: int
    body: Any = None  # dict -> JSON, str/bytes -> sent raw with ``content_type``
    retry_after: float | None = None
    message: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "text/plain"


@dataclass(slots=True)
class Delay:
    """Wait before sending headers (timeout tests), then behave like ``then`` (default: echo)."""

    seconds: float
    then: Behaviour | None = None


@dataclass(slots=True)
class StreamChunks:
    """Stream these texts one frame each with ``gap`` seconds between them (slow/idle streams)."""

    chunks: list[str]
    gap: float = 0.0
    finish_reason: FinishReason = "stop"


@dataclass(slots=True)
class Reset:
    """Abort the TCP connection without sending a single byte."""


@dataclass(slots=True)
class ResetAfterChunks:
    """Send headers and ``n`` text chunks, then abort the connection (a broken stream)."""

    n: int
    text: str = "chunk "
    gap: float = 0.0


@dataclass(slots=True)
class Loop:
    """Stream ``text`` ``times`` times (a looping model); stops when the client hangs up."""

    text: str
    times: int = 200
    gap: float = 0.005


@dataclass(slots=True)
class StreamErrorAfter:
    """Stream ``after_chunks`` chunks, then the format's in-stream error event (HTTP stays 200)."""

    after_chunks: int = 1
    message: str = "Overloaded"
    kind: str = "overloaded"
    text: str = "partial "


@dataclass(slots=True)
class RawStream:
    """A stream whose body goes wrong in ways no encoder writes: headers, optionally one real text
    chunk (``text``), then ``data`` verbatim in ``chunk_size`` pieces (e.g. a line that never ends)."""

    data: bytes
    text: str | None = "partial "
    chunk_size: int = 65536


Behaviour = Union[Reply, Error, Delay, StreamChunks, Reset, ResetAfterChunks, Loop, StreamErrorAfter, RawStream]


def reply(text: str | None = None, tool_calls: Iterable[dict[str, Any]] | None = None,
          usage: Usage | dict[str, int] | None = None, *, thinking: str | None = None,
          thinking_signature: str | None = None, finish_reason: FinishReason | None = None,
          model: str | None = None) -> Reply:
    """A reply. ``tool_calls`` items are ``{"name", "arguments": dict|str, "id"?}``;
    ``usage`` is a :class:`Usage` or ``{"prompt_tokens", "completion_tokens", "cached_tokens"}``."""
    if isinstance(usage, dict):
        usage = Usage(**usage)
    return Reply(text, list(tool_calls or []), usage, thinking, thinking_signature, finish_reason, model)


def error(status: int, body: Any = None, retry_after: float | None = None, *, message: str | None = None,
          headers: dict[str, str] | None = None, content_type: str = "text/plain") -> Error:
    """An error response; ``retry_after`` becomes ``Retry-After`` (OpenAI/Anthropic) or a
    ``google.rpc.RetryInfo`` detail (Gemini/Code Assist, which send no header)."""
    return Error(status, body, retry_after, message, dict(headers or {}), content_type)


def delay(seconds: float, then: Behaviour | None = None) -> Delay:
    return Delay(seconds, then)


def stream_chunks(chunks: Iterable[str], gap: float = 0.0, finish_reason: FinishReason = "stop") -> StreamChunks:
    return StreamChunks(list(chunks), gap, finish_reason)


def reset() -> Reset:
    return Reset()


def reset_after_chunks(n: int, text: str = "chunk ", gap: float = 0.0) -> ResetAfterChunks:
    return ResetAfterChunks(n, text, gap)


def textual_tool_call(text: str = DEFAULT_TEXTUAL_TOOL_CALL) -> Reply:
    """A reply whose *text* spells out a tool call (for tool-call repair tests)."""
    return Reply(text=text)


def loop(text: str, times: int = 200, gap: float = 0.005) -> Loop:
    return Loop(text, times, gap)


def stream_error(after_chunks: int = 1, message: str = "Overloaded", kind: str = "overloaded",
                 text: str = "partial ") -> StreamErrorAfter:
    return StreamErrorAfter(after_chunks, message, kind, text)


def raw_stream(data: bytes, text: str | None = "partial ", chunk_size: int = 65536) -> RawStream:
    return RawStream(data, text, chunk_size)


def behaviour_name(behaviour: Behaviour) -> str:
    """Short name recorded per request (``reply``, ``error``, ``delay``, ``loop``...)."""
    return {Reply: "reply", Error: "error", Delay: "delay", StreamChunks: "stream_chunks", Reset: "reset",
            ResetAfterChunks: "reset_after_chunks", Loop: "loop", StreamErrorAfter: "stream_error",
            RawStream: "raw_stream"}[type(behaviour)]
