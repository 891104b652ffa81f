"""Stage 6: the guards that watch the answer (loop detection, tool-call repair and loop detection).

Tool-call histories are a service of their own (:class:`ToolHistories`), given to this stage: the
tool-call loop detector counts calls across a session's requests.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from dsl.evaluate import Plan

from ..guards import ToolCallHistory, apply_to_response, build_chain
from ..idle_lru import IdleLRU
from ..sessions import Session
from ..wire.canonical import ChatRequest, ChatResponse
from ..wire.offload import is_large, off_loop
from .exchange import Exchange

if TYPE_CHECKING:  # pragma: no cover - annotations only: router.state imports the pipeline
    from ..state import RuntimeState


class ToolHistories:
    """Each session's tool-call history: in process, bounded, idle ones forgotten, kept like the
    session itself under its owner and id."""

    shared = False  # a shared store's histories are loaded before and kept after (state_store/histories.py)

    def __init__(self, maxsize: int = 10_000, ttl: float = 3600, clock: Callable[[], float] = time.monotonic) -> None:
        # Idle ones: a history is kept ``ttl`` seconds after its session's last request with tools
        # (the cachetools TTLCache before forgot it ``ttl`` after it was made, in use or not).
        self._histories: IdleLRU[tuple[str | None, str], ToolCallHistory] = IdleLRU(maxsize, ttl, clock)

    def of(self, session: Session) -> ToolCallHistory:
        key = (session.owner, session.id)
        history = self._histories.use(key)
        if history is None:
            history = self._new_history()
            self._histories.put(key, history)
        return history

    def _new_history(self) -> ToolCallHistory:
        return ToolCallHistory()


_NO_TOOLS = ToolCallHistory()  # the history of requests without tools (see build_guards)


def build_guards(ex: Exchange, histories: ToolHistories) -> None:
    """Fill ``ex.guards``. Anonymous requests have no session to remember tool calls in: the
    request's own history is what the tool-call loop detector counts for them. Without declared
    tools the tool guards are not built (``skip_idle``), so a fresh, unused history is given."""
    session, plan = ex.session, ex.plan
    assert session is not None and plan is not None
    request = ex.request
    if not request.tools:
        history = _NO_TOOLS  # the tool guards are not built: nothing reads or writes it
    else:
        history = histories.of(session) if not ex.anonymous else ToolCallHistory()
    ex.guards = build_chain(request=request, rule_post=plan.post, config=ex.state.config,
                            session_params=session.params, history=history, skip_idle=True,
                            settings=ex.state.guard_settings)


async def guard_response(ex: Exchange, response: ChatResponse) -> ChatResponse:
    """A whole (non-streamed) answer through the guards; off the event loop when it is large."""
    guards = ex.guards
    assert guards is not None
    if is_large(_text_size(response)):
        return await off_loop(apply_to_response, guards, response)
    return apply_to_response(guards, response)


def active_guards(state: RuntimeState, session: Session, plan: Plan | None, histories: ToolHistories) -> list[str]:
    """Guards in effect for this session (for ``!/hello``): config defaults < rule ``post:`` < session switches."""
    chain = build_chain(request=ChatRequest(model="", messages=[]), rule_post=plan.post if plan else (),
                        config=state.config, session_params=session.params, history=histories.of(session),
                        settings=state.guard_settings)
    return chain.active()


def _text_size(response: ChatResponse) -> int:
    """Characters of text and tool arguments in a reply: what the guards' work grows with."""
    size = 0
    for part in response.parts:  # (a loop, not sum() over a generator: this runs per request)
        size += len(getattr(part, "text", None) or getattr(part, "arguments", None) or "")
    return size
