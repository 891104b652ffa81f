"""Freeform (``custom``) tool calls back from providers that only have functions.

Towards a format without freeform tools a custom tool is sent as a function with one string
argument ``input`` (:func:`router.wire.common.function_form`). The provider then calls that
function with JSON arguments; the client declared a custom tool and expects its raw input. These
functions turn such calls back, for a whole response and for a stream (whose argument fragments
are held until the call is complete, since ``{"input": "...`` cannot be unwrapped piece by piece).

A call that already is custom (a Responses backend) or that names no custom tool passes unchanged.
"""

from __future__ import annotations

import json
from typing import Iterable

from router.wire.canonical import (
    ChatResponse, StreamEvent, Tool, ToolCallDelta, ToolCallPart, ToolCallStart,
)
from router.wire.common import CUSTOM_INPUT


def custom_names(tools: Iterable[Tool]) -> frozenset[str]:
    """Names of the freeform tools among ``tools`` (empty for almost every request)."""
    return frozenset(t.name for t in tools if t.custom is not None)


def raw_input(arguments: str) -> str:
    """The raw input from a function call's JSON arguments: ``input`` when the model wrote
    ``{"input": "..."}`` as asked, else the text it wrote (nothing it sent is dropped)."""
    try:
        parsed = json.loads(arguments) if arguments.strip() else {}
    except json.JSONDecodeError:
        return arguments
    if isinstance(parsed, dict) and isinstance(parsed.get(CUSTOM_INPUT), str):
        return parsed[CUSTOM_INPUT]
    return arguments


def restore_response(response: ChatResponse, names: frozenset[str]) -> ChatResponse:
    """``response`` with calls of the custom tools in ``names`` made custom again (in place)."""
    for part in response.parts:
        if isinstance(part, ToolCallPart) and not part.custom and part.name in names:
            part.arguments, part.custom = raw_input(part.arguments), True
    return response


class StreamRestorer:
    """Stream events with calls of custom tools made custom: a call's fragments are held and sent
    as one raw-input delta when the next event that is not one of its fragments arrives."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names
        self._held: dict[int, list[str]] = {}

    def feed(self, event: StreamEvent) -> list[StreamEvent]:
        if isinstance(event, ToolCallDelta) and event.index in self._held:
            self._held[event.index].append(event.arguments)
            return []
        out = self._flush()
        if isinstance(event, ToolCallStart) and not event.custom and event.name in self.names:
            self._held[event.index] = []
            return out + [ToolCallStart(event.index, event.id, event.name, custom=True)]
        return out + [event]

    def _flush(self) -> list[StreamEvent]:
        out: list[StreamEvent] = [ToolCallDelta(index, raw_input("".join(parts)))
                                  for index, parts in self._held.items()]
        self._held.clear()
        return out
