"""Helpers shared by the guard tests: a config, declared tools, feeding and normalising events."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from router.wire.canonical import (
    ChatRequest, Message, StreamEnd, StreamEvent, StreamStart, TextDelta, ThinkingDelta, Tool, ToolCallDelta,
    ToolCallStart,
)
from router.config import AppConfig
from router.guards import GuardChain, ToolCallHistory, build_chain

CORPUS = Path(__file__).resolve().parent / "corpus"
CONFIG = AppConfig(backends={}, default_backend="echo")

TOOLS = [
    Tool("read_file", "Read a file", {"type": "object", "properties": {"path": {"type": "string"}},
                                      "required": ["path"], "additionalProperties": False}),
    Tool("run_command", "Run a shell command", {
        "type": "object", "properties": {"command": {"type": "string"}, "timeout": {"type": "integer"}},
        "required": ["command"]}),
    Tool("list_files", "List the project files", None),
    Tool("search", "Search", {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}),
]


def request(tools: list[Tool] | None = None, messages: list[Message] | None = None) -> ChatRequest:
    return ChatRequest(model="m", messages=messages or [], tools=TOOLS if tools is None else tools)


def counter_ids() -> Any:
    numbers = itertools.count()
    return lambda: f"call_{next(numbers):024x}"


def chain(*, req: ChatRequest | None = None, post: tuple = (), session: Mapping[str, Any] | None = None,
          history: ToolCallHistory | None = None, config: AppConfig = CONFIG) -> GuardChain:
    return build_chain(request=req or request(), rule_post=post, config=config, session_params=session or {},
                       history=history or ToolCallHistory(), new_call_id=counter_ids())


def run(ch: GuardChain, events: Iterable[StreamEvent]) -> list[StreamEvent]:
    out: list[StreamEvent] = []
    for event in events:
        out += ch.feed(event)
    out += ch.finish()
    return out


def text_stream(pieces: Iterable[str], finish: str = "stop") -> list[StreamEvent]:
    return [StreamStart("resp", "m"), *(TextDelta(p) for p in pieces), StreamEnd(finish)]  # type: ignore[arg-type]


def split(text: str, cuts: Iterable[int]) -> list[str]:
    points = sorted(set(c for c in cuts if 0 < c < len(text)))
    return [text[a:b] for a, b in zip([0, *points], [*points, len(text)])]


def normalize(events: list[StreamEvent]) -> list[tuple]:
    """Merge adjacent text/thinking deltas and each call's argument fragments: what a client sees."""
    out: list[tuple] = []
    for e in events:
        if isinstance(e, TextDelta):
            if not e.text:
                continue
            if out and out[-1][0] == "text":
                out[-1] = ("text", out[-1][1] + e.text)
            else:
                out.append(("text", e.text))
        elif isinstance(e, ThinkingDelta):
            if out and out[-1][0] == "thinking":
                out[-1] = ("thinking", out[-1][1] + e.text)
            else:
                out.append(("thinking", e.text))
        elif isinstance(e, ToolCallStart):
            out.append(("call", e.index, e.id, e.name, ""))
        elif isinstance(e, ToolCallDelta):
            for i in range(len(out) - 1, -1, -1):
                if out[i][0] == "call" and out[i][1] == e.index:
                    out[i] = out[i][:4] + (out[i][4] + e.arguments,)
                    break
            else:
                raise AssertionError(f"delta for unknown call {e.index}")
        elif isinstance(e, StreamEnd):
            out.append(("end", e.finish_reason))
        elif isinstance(e, StreamStart):
            out.append(("start",))
        else:
            out.append((type(e).__name__,))
    return out


def repair_only(req: ChatRequest | None = None, cap: int | None = None) -> GuardChain:
    session = {"loop_detection": False, "tool_call_loop_detection": False}
    post: tuple = ()
    if cap is not None:
        from dsl.ir import PostProcessor
        post = (PostProcessor("tool_call_repair", (("buffer_cap_bytes", cap),)),)
    return chain(req=req, session=session, post=post)
