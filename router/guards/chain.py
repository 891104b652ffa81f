"""Composing the guards for one request: settings precedence, order, streaming and non-streaming.

Precedence, lowest to highest: app config defaults (``loop_detection:``,
``tool_call_loop_detection:``, ``session.tool_call_repair_*`` and their env vars) < the rule ``post:``
entries that matched (in the order given; naming a processor switches it on unless it says
``enabled=false``; its other arguments replace the defaults) < the session's ``!/set(...)`` booleans
(``loop_detection``, ``tool_call_repair``, ``tool_call_loop_detection``).
"""

from __future__ import annotations


from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from router.wire.canonical import (
    ChatRequest, ChatResponse, ResponseAccumulator, StreamEnd, StreamError, StreamEvent, response_to_events,
)
from router.guards.base import GUARDS, Guard, GuardContext, GuardEvent
from router.guards.tool_loop import ToolCallHistory

if TYPE_CHECKING:
    from dsl.ir import PostProcessor
    from router.config import AppConfig

# Repair first, so that a repaired call is what the tool-call loop detector sees; text loop
# detection last, so it sees the text the client will actually get.
ORDER = ("tool_call_repair", "tool_call_loop_detection", "loop_detection")


class GuardChain:
    """The enabled guards of one request, applied in :data:`ORDER`.

    Protocol for the caller:

    * ``feed(event)`` for every upstream event, *including* the final ``StreamEnd`` or
      ``StreamError``; send what it returns. A ``StreamEnd`` makes every guard settle what it held,
      so the returned list ends with the (possibly rewritten) ``StreamEnd``.
    * After each ``feed``, if ``stop_upstream`` is True, a guard has already ended the client's stream
      (note + ``StreamEnd(finish_reason="loop")`` were in the returned events): close the upstream.
      Further ``feed`` calls return nothing.
    * ``finish()`` once when the upstream is over, however it ended. It returns what guards still
      held waiting for more input (only non-empty when the upstream stopped without a ``StreamEnd``);
      it never invents a ``StreamEnd`` — the caller's decoder ``finish()`` supplies that.
    """

    def __init__(self, guards: list[Guard], ctx: GuardContext) -> None:
        self.guards = guards
        self._ctx = ctx
        self._done = False
        # True once a guard has ended the client's stream. A plain attribute, set by ``feed`` when
        # the stream it returns ends (a guard that stops always ends it with ``StreamEnd``): the
        # relay reads it after every event, where asking each guard showed per chunk.
        self.stop_upstream = False

    @property
    def events(self) -> list[GuardEvent]:
        return self._ctx.events

    def active(self) -> list[str]:
        return [g.describe() for g in self.guards]

    def buffered(self) -> dict[str, int]:
        """Characters each guard currently holds (bounded-memory checks, benchmark)."""
        return {g.name: g.buffered for g in self.guards}

    def feed(self, event: StreamEvent) -> list[StreamEvent]:
        if self._done:
            return []
        events = [event]
        for guard in self.guards:
            if len(events) == 1:
                events = guard.feed(events[0])
            else:
                nxt: list[StreamEvent] = []
                for e in events:
                    nxt.extend(guard.feed(e))
                events = nxt
            if not events:
                return events
        if type(events[-1]) in (StreamEnd, StreamError):
            self._done = True
            self.stop_upstream = any(guard.stop for guard in self.guards)
        return events

    def finish(self) -> list[StreamEvent]:
        if self._done:
            return []
        events: list[StreamEvent] = []
        for guard in self.guards:
            nxt: list[StreamEvent] = []
            for e in events:
                nxt.extend(guard.feed(e))
            nxt.extend(guard.finish())
            events = nxt
        self._done = True
        return events


def resolve_settings(rule_post: tuple["PostProcessor", ...], config: "AppConfig",
                     session_params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Effective settings (including ``enabled``) of every registered guard, by name."""
    settings = {name: cls.config_defaults(config) for name, cls in GUARDS.items()}
    for post in rule_post:
        target = settings.get(post.name)
        if target is None:
            continue  # the compiler rejects unknown names; nothing to do here
        target["enabled"] = bool(post.param("enabled", True))
        for key, value in post.params:
            if key != "enabled":
                target[key] = value
    for name, target in settings.items():
        value = session_params.get(name)
        if isinstance(value, bool):
            target["enabled"] = value
    return settings


# Guards that can only act on tool calls: without declared tools there are none to repair or count.
TOOL_GUARDS = frozenset({"tool_call_repair", "tool_call_loop_detection"})


def build_chain(*, request: ChatRequest, rule_post: tuple["PostProcessor", ...], config: "AppConfig",
                session_params: Mapping[str, Any], history: ToolCallHistory,
                new_call_id: Callable[[], str] | None = None, skip_idle: bool = False,
                settings: "GuardSettings | None" = None) -> GuardChain:
    """The guard chain for one request. ``settings`` is the running configuration's
    :class:`GuardSettings` for ``config`` (the pipeline passes it; without it they are worked out
    afresh). ``new_call_id`` is for tests (predictable tool-call ids)."""
    ctx = GuardContext(request=request, history=history, new_call_id=new_call_id)
    switches = tuple((k, session_params[k]) for k in ORDER if isinstance(session_params.get(k), bool)) \
        if session_params else ()
    enabled = (settings or GuardSettings(config)).enabled(rule_post, switches)
    if skip_idle and not request.tools:
        return GuardChain([cls(settings_, ctx) for name, cls, settings_ in enabled if name not in TOOL_GUARDS], ctx)
    return GuardChain([cls(settings_, ctx) for _name, cls, settings_ in enabled], ctx)


_Enabled = tuple[tuple[str, type[Guard], dict[str, Any]], ...]


class GuardSettings:
    """The enabled guards, in order, with their settings, for one configuration: worked out once
    per (rules' ``post``, session switches) — the same few combinations on every request — and
    kept as long as the configuration (a reload builds a new one with the new rule set).
    Resolving them per request (the config sections' defaults, then each ``post``) showed in
    profiles. Bounded: ``post`` tuples come from rules, switches from sessions, both few."""

    __slots__ = ("_config", "_known")
    LIMIT = 1024

    def __init__(self, config: "AppConfig") -> None:
        self._config = config
        self._known: dict[tuple[tuple["PostProcessor", ...], tuple[tuple[str, bool], ...]], _Enabled] = {}

    def enabled(self, rule_post: tuple["PostProcessor", ...], switches: tuple[tuple[str, bool], ...]) -> _Enabled:
        key = (rule_post, switches)
        found = self._known.get(key)
        if found is None:
            settings = resolve_settings(rule_post, self._config, dict(switches))
            found = tuple((name, GUARDS[name], settings[name]) for name in ORDER if settings[name].get("enabled"))
            if len(self._known) >= self.LIMIT:
                self._known.clear()
            self._known[key] = found
        return found


def apply_to_response(chain: GuardChain, response: ChatResponse) -> ChatResponse:
    """Non-streaming: the same guards fed ``response_to_events(response)``, folded back.

    The response's id, model, created time and usage are kept (a cut stream has no usage of its own).
    """
    if all(guard.leaves_unchanged(response) for guard in chain.guards):
        return response
    acc = ResponseAccumulator()
    for event in response_to_events(response):
        for out in chain.feed(event):
            acc.feed(out)
    for out in chain.finish():
        acc.feed(out)
    result = acc.result()
    result.id, result.model, result.created = response.id, response.model, response.created
    result.usage = response.usage
    return result
