"""Helpers for the wire tests: canonical <-> JSON, stream plumbing, per-format normalisation."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from router.wire.canonical import (
    ChatResponse, ImagePart, ResponseAccumulator, StreamEvent, TextPart, ThinkingPart, ToolCallPart, Usage,
)
from router.wire import anthropic, gemini, openai, responses
from router.wire.common import guess_media_type, is_base64
from router.wire.sse import parse_all

FORMATS = {"openai": openai, "anthropic": anthropic, "gemini": gemini, "responses": responses}
DONE = "[DONE]"


def to_json(obj: Any) -> Any:
    """Dataclasses -> plain JSON; stream events get an ``event`` label (they have no ``type``)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {}
        if type(obj).__module__ == "router.wire.canonical" and not hasattr(obj, "type") and type(obj).__name__ not in (
                "ChatRequest", "ChatResponse", "Message", "Tool", "ToolChoice", "Usage", "CustomFormat"):
            out["event"] = type(obj).__name__
        for f in dataclasses.fields(obj):
            out[f.name] = to_json(getattr(obj, f.name))
        return out
    if isinstance(obj, list):
        return [to_json(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_json(v) for k, v in obj.items()}
    return obj


def decode_stream(fmt: str, items: list[Any]) -> list[StreamEvent]:
    """Feed parsed SSE data objects (``"[DONE]"`` for OpenAI's terminator) through a decoder."""
    decoder = FORMATS[fmt].StreamDecoder()
    events: list[StreamEvent] = []
    for item in items:
        events.extend(decoder.finish() if item == DONE else decoder.feed(item))
    return events + decoder.finish()


def encode_stream(fmt: str, events: list[StreamEvent]) -> bytes:
    encoder = FORMATS[fmt].StreamEncoder()
    return b"".join(encoder.encode(e) for e in events)


def sse_items(payload: bytes) -> list[Any]:
    return [DONE if data == DONE else json.loads(data) for _, data in parse_all(payload)]


def frames(payload: bytes) -> list[str]:
    """SSE body split into frames (readable in golden files)."""
    text = payload.decode("utf-8")
    assert text == "" or text.endswith("\n\n"), "every frame must end with a blank line"
    return [f for f in text.split("\n\n") if f]


def accumulate(events: list[StreamEvent]) -> ChatResponse:
    acc = ResponseAccumulator()
    for event in events:
        acc.feed(event)
    return acc.result()


def _args(part: ToolCallPart) -> ToolCallPart:
    return ToolCallPart(part.id, part.name, json.dumps(part.parsed_arguments(), sort_keys=True))


def normalize(resp: ChatResponse, fmt: str) -> ChatResponse:
    """What ``resp`` looks like after a trip through ``fmt`` (drop what the format cannot carry)."""
    parts: list[Any] = []
    for part in resp.parts:
        if isinstance(part, ThinkingPart):
            signature = part.signature or None
            if fmt == "gemini" and signature and not is_base64(signature):
                signature = None
            if fmt == "openai" or (not part.text and not signature) or (fmt == "responses" and not signature):
                continue
            parts.append(ThinkingPart(part.text, signature))
        elif isinstance(part, TextPart):
            if part.text:
                parts.append(TextPart(part.text))
        elif isinstance(part, ImagePart):
            if fmt == "gemini":
                parts.append(ImagePart(url=part.url, data=part.data,
                                       media_type=part.media_type or (guess_media_type(part) if part.url else "image/png")))
        elif isinstance(part, ToolCallPart):
            parts.append(_args(part))
    if fmt == "responses":  # text runs between other parts are one message item each
        merged: list[Any] = []
        for part in parts:
            if isinstance(part, TextPart) and merged and isinstance(merged[-1], TextPart):
                merged[-1] = TextPart(merged[-1].text + part.text)
            else:
                merged.append(part)
        parts = merged
    if fmt == "openai":  # one content string, then the tool calls
        text = "".join(p.text for p in parts if isinstance(p, TextPart))
        parts = ([TextPart(text)] if text else []) + [p for p in parts if isinstance(p, ToolCallPart)]
    finish = resp.finish_reason
    if finish == "loop" or (finish == "error" and fmt != "gemini"):
        finish = "stop"
    if finish == "stop" and fmt in ("openai", "gemini", "responses") and any(isinstance(p, ToolCallPart) for p in parts):
        finish = "tool_calls"
    if finish == "tool_calls" and fmt in ("gemini", "responses") and not any(isinstance(p, ToolCallPart) for p in parts):
        finish = "stop"
    usage = Usage(resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.cached_tokens)
    created = resp.created if fmt in ("openai", "responses") else 0
    return ChatResponse(resp.id, resp.model, parts, finish, usage, created)
