"""The one interface every guard implements, and the registry that maps rule names to guards.

A guard is a small per-request state machine over canonical :class:`~router.canonical.StreamEvent`
objects: ``feed(event)`` returns the events to pass on now (zero, one or several — a guard may hold
text back while it decides, or replace it), ``finish()`` flushes whatever it still holds when the
upstream ended, and ``stop`` turns True once the guard has ended the client's stream itself (the
caller then closes the upstream so the provider stops generating and billing).

Non-streaming responses go through the very same guards (``response_to_events`` → guards →
``ResponseAccumulator``), so there is exactly one implementation of each behaviour.

Guards are registered by the names the rules language uses (``dsl.registry.POST_PROCESSORS``);
a test checks that both tables name the same set.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from router.wire.canonical import ChatRequest, ChatResponse, StreamEvent

if TYPE_CHECKING:
    from router.config import AppConfig
    from router.guards.tool_loop import ToolCallHistory

NOTE_PREFIX = "[llm-interactive-proxy: "


@dataclass
class GuardEvent:
    """Something a guard did, for usage records and logs."""

    kind: str  # "loop_cut" | "tool_call_repaired" | "tool_loop_warned" | "tool_loop_blocked"
    detail: str


@dataclass
class GuardContext:
    """What a guard may look at besides the events: the request, the session's tool-call history,
    the shared list of :class:`GuardEvent` records, and an id factory (tests make it predictable)."""

    request: ChatRequest
    history: "ToolCallHistory"
    events: list[GuardEvent] = field(default_factory=list)
    new_call_id: Callable[[], str] | None = None


class Guard:
    """Base class: pass-through behaviour and the settings plumbing shared by all guards."""

    name: ClassVar[str] = ""
    # Parameter names accepted from rules (besides ``enabled``), in display order.
    params: ClassVar[tuple[str, ...]] = ()

    def __init__(self, settings: Mapping[str, Any], ctx: GuardContext) -> None:
        self.settings = settings  # shared between requests (see chain._enabled): read only
        self.ctx = ctx
        self.stop = False

    @classmethod
    def config_defaults(cls, config: "AppConfig") -> dict[str, Any]:
        """``enabled`` and every parameter, from the app config (the lowest precedence layer)."""
        raise NotImplementedError

    def feed(self, event: StreamEvent) -> list[StreamEvent]:
        return [event]

    def leaves_unchanged(self, response: "ChatResponse") -> bool:
        """True when this guard certainly would not touch this whole (non-streamed) reply, so
        the chain need not replay it as events. The default is the safe answer: it might."""
        return False

    def finish(self) -> list[StreamEvent]:
        return []

    @property
    def buffered(self) -> int:
        """Characters currently held back (memory-bound tests and the benchmark read this)."""
        return 0

    def describe(self) -> str:
        """``name(k=v, ...)`` for ``!/hello``."""
        args = ", ".join(f"{p}={self.settings[p]:g}" if isinstance(self.settings[p], float)
                         else f"{p}={self.settings[p]}" for p in self.params if p in self.settings)
        return f"{self.name}({args})"

    def record(self, kind: str, detail: str) -> None:
        self.ctx.events.append(GuardEvent(kind, detail))


GUARDS: dict[str, type[Guard]] = {}


def register(cls: type[Guard]) -> type[Guard]:
    """Class decorator: make a guard available under its rules-language name."""
    GUARDS[cls.name] = cls
    return cls
