"""Agent guards: post-processors over canonical stream events (no HTTP here).

Three guards, applied in this fixed order:

1. ``tool_call_repair`` (:mod:`router.guards.repair`) — tool calls the model wrote as text become
   real tool calls;
2. ``tool_call_loop_detection`` (:mod:`router.guards.tool_loop`) — the same call with the same
   arguments repeated too often is replaced by an explanation (it runs after repair so a repaired
   call is counted like any other);
3. ``loop_detection`` (:mod:`router.guards.loop`) — text that repeats itself is cut off and the
   upstream closed (last, so it judges the text the client actually receives).

Streaming and non-streaming share one implementation: :func:`apply_to_response` feeds a complete
response through the same chain. State lives in the :class:`GuardChain` of one request, except the
session's :class:`ToolCallHistory`, which the caller keeps per session and passes in. Memory per
stream is bounded whatever the response length: repair holds at most ``buffer_cap_bytes``
characters, loop detection a ``max_pattern_length * min_repetitions`` window, the tool-call loop
detector one call's arguments (at most 64 KiB).

Settings precedence (:func:`build_chain`): config defaults < rule ``post:`` arguments < session
``!/set(...)`` switches. The guard names are those of ``dsl.registry.POST_PROCESSORS``.
"""

from router.guards import loop, repair, tool_loop  # noqa: F401  (registers the guards)
from router.guards.base import GUARDS, Guard, GuardContext, GuardEvent
from router.guards.chain import ORDER, GuardChain, GuardSettings, apply_to_response, build_chain, resolve_settings
from router.guards.tool_loop import ToolCallHistory

__all__ = [
    "GUARDS",
    "ORDER",
    "Guard",
    "GuardChain",
    "GuardSettings",
    "GuardContext",
    "GuardEvent",
    "ToolCallHistory",
    "apply_to_response",
    "build_chain",
    "resolve_settings",
]
