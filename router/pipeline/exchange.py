"""The one object a request's stages share: what came in, what each stage decided, what goes out.

Each stage of :mod:`router.pipeline` reads the fields earlier stages filled and fills its own, in
the order of the orchestrator (``Pipeline.chat``); nothing else carries per-request state. The
usage record (``record``) is filled from here when the request ends (``record.finish_record``).
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, Mapping

from dsl.commands import ParsedMessage
from dsl.evaluate import Facts, Plan, TargetRules

from ..frontends import Frontend
from ..record.recorder import RequestRecord
from ..wire.canonical import ChatRequest

if TYPE_CHECKING:
    from ..guards import GuardChain
    from ..sessions import Session
    from ..state import RuntimeState
    from .dispatch import Outcome

_REQUEST_PREFIX = uuid.uuid4().hex[:8]
_request_counter = itertools.count(1)


def next_request_id() -> str:
    """Unique per process start and cheap: a random prefix and a counter (not a secret)."""
    return f"{_REQUEST_PREFIX}-{next(_request_counter):x}"


@dataclass(slots=True)
class RequestContext:
    """What the HTTP edge knows about a request besides its body."""

    headers: Mapping[str, str]  # lower-case names
    caller: str | None
    path: str = ""
    request_id: str = field(default_factory=next_request_id)
    session_id: str = ""
    # Keyword arguments for the front end's StreamEncoder (OpenAI: include_usage from stream_options).
    encoder_options: dict[str, Any] = field(default_factory=dict)
    # A session id the front end found in the body (Responses' prompt_cache_key), used when no
    # header names one; only ever a valid session id.
    session_hint: str | None = None
    # A reply to keep before the client can see it (Responses: for ``previous_response_id``):
    # the front end's encoder appends the final response object to ``completed``, and the
    # stream awaits ``keep_reply`` with it before the frame that carries it goes out.
    completed: list[Any] | None = None
    keep_reply: Callable[[Any], Awaitable[Any]] | None = None


@dataclass(slots=True)
class JsonReply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class StreamReply:
    chunks: AsyncIterator[bytes]
    headers: dict[str, str] = field(default_factory=dict)


Reply = JsonReply | StreamReply


@dataclass(slots=True)
class Exchange:
    """One request on its way through the stages (see the field comments for who fills what)."""

    # From the edge.
    frontend: Frontend
    request: ChatRequest  # changed only by the commands stage (stripped) and the overrides stage
    ctx: RequestContext
    state: RuntimeState  # the configuration this request runs under (a reload swaps the next one's)
    record: RequestRecord
    requested: str  # the model as the client sent it
    # session.py
    session: Session | None = None
    session_source: str = ""  # the header that named the session, or "conversation" (derived)
    anonymous: bool = True  # the session is not stored (nothing changed it yet): not saved here either
    # With a shared session store: the request's session part of its one round trip (its version
    # and what it changes, ``state_store/sessions.SessionStep``), sent by dispatch; else None.
    rider: Any = None
    headers: dict[str, str] = field(default_factory=dict)  # the reply's own headers
    # commands.py
    parsed: ParsedMessage | None = None  # commands of the latest user message, if any
    report: str | None = None  # an interactive session's command report, put before the answer
    # plan.py
    model: str = ""  # the model to ask for, after ``backend:`` prefixes and the session's model
    facts: Facts | None = None
    plan: Plan | None = None
    # overrides.py (what dispatch needs besides the plan)
    governed: TargetRules | None = None  # file rules with limits or set govern every target tried
    scopes: Mapping[str, str | None] | None = None  # limit scope values (only when limits apply)
    # guard.py
    guards: GuardChain | None = None
    # lookup.py: (key, ttl) to store this answer under, or None when caching is off
    cache_slot: tuple[str, int] | None = None
    # budget.py: the budgets checked, settled with the recorded cost when the request is recorded
    budget_charge: Any = None  # a budget.BudgetGate when a budget may apply, else None
    # dispatch
    outcome: Outcome | None = None
