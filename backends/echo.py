"""The built-in ``echo`` backend: no network, answers with the last user message.

It is the embedded default so the proxy starts and every front end, command and stream path can
be tried without a provider key. Like a provider's, its reply has a ceiling (``MAX_ECHO_CHARS``). To exercise tool-use turns it also understands one convention:
a user message ``call <tool> <json arguments>`` naming a declared tool produces that tool call, and
a tool result is answered with ``<tool> returned: <content>``.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import AsyncIterator, Iterator

from router.wire.canonical import (
    ChatRequest, ChatResponse, Part, StreamEvent, TextDelta, TextPart, ToolCallPart, ToolResultPart, Usage, response_to_events,
)

from router.wire.offload import run_sized

from .base import Backend
from .keys import KeyChoice

CHUNK_WORDS = 3
MAX_ECHO_CHARS = 64 * 1024
"""A provider's reply is bounded by its output limit; the echo's is bounded here, so a 10 MB message
does not come back as a 10 MB reply for the guards and encoders to walk."""


def estimate_tokens(text: str) -> int:
    """About four characters a token: good enough for a backend that bills nothing."""
    return max(1, (len(text) + 3) // 4) if text else 0


class EchoBackend(Backend):
    def __init__(self, name: str = "echo", models: tuple[str, ...] = ("echo",)) -> None:
        super().__init__(name)
        self.models = models or ("echo",)

    def _reply(self, request: ChatRequest) -> ChatResponse:
        parts: list[Part]
        finish = "stop"
        last = request.messages[-1] if request.messages else None
        results = [p for p in last.parts if isinstance(p, ToolResultPart)] if last else []
        user = request.last_user_message()
        text = user.typed_text().strip() if user else ""
        if results:
            parts = [TextPart("\n".join(f"{r.name or 'tool'} returned: {''.join(c.text for c in r.content if isinstance(c, TextPart))}"
                                        for r in results))]
        elif call := self._tool_call(text, request):
            parts, finish = [call], "tool_calls"
        else:
            if len(text) > MAX_ECHO_CHARS:
                text = text[:MAX_ECHO_CHARS] + f"\n[echo: cut at {MAX_ECHO_CHARS} of {len(text)} characters]"
            parts = [TextPart(text or "(empty message)")]
        prompt = sum(estimate_tokens(m.text()) for m in request.messages) + sum(estimate_tokens(p.text) for p in request.system)
        completion = sum(estimate_tokens(p.text) if isinstance(p, TextPart) else estimate_tokens(p.arguments) for p in parts)  # type: ignore[union-attr]
        return ChatResponse(
            id=f"echo-{uuid.uuid4().hex[:24]}", model=request.model, parts=parts, finish_reason=finish,  # type: ignore[arg-type]
            usage=Usage(prompt_tokens=prompt, completion_tokens=completion), created=int(time.time()),
        )

    @staticmethod
    def _tool_call(text: str, request: ChatRequest) -> ToolCallPart | None:
        words = text.strip().split(maxsplit=2)
        if len(words) < 2 or words[0] != "call":
            return None
        if not any(t.name == words[1] for t in request.tools):
            return None
        arguments = words[2] if len(words) > 2 else "{}"
        try:
            json.loads(arguments)
        except json.JSONDecodeError:
            return None
        return ToolCallPart(id=f"call_{uuid.uuid4().hex[:20]}", name=words[1], arguments=arguments)

    # No keys: ``keys.used`` stays None.
    async def complete(self, request: ChatRequest, keys: KeyChoice | None = None) -> ChatResponse:
        return await run_sized(request.size, self._reply, request)

    async def stream(self, request: ChatRequest, keys: KeyChoice | None = None) -> AsyncIterator[StreamEvent]:
        for event in _chunked(response_to_events(await run_sized(request.size, self._reply, request))):
            yield event

    async def list_models(self) -> list[str]:
        return list(self.models)


def _chunked(events: list[StreamEvent]) -> Iterator[StreamEvent]:
    """Split text deltas into a few words each, so streams really arrive in several chunks.

    A generator: a long echo is cut as it is sent, not all at once before the first chunk.
    """
    for event in events:
        if isinstance(event, TextDelta):
            words = event.text.split(" ")
            for i in range(0, len(words), CHUNK_WORDS):
                piece = " ".join(words[i:i + CHUNK_WORDS])
                yield TextDelta(piece + (" " if i + CHUNK_WORDS < len(words) else ""))
        else:
            yield event
