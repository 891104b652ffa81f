"""Stage 3: the plan — facts in, plan out, nothing mutated.

The client's model (maybe ``backend:model``) and the session decide the model to ask for; the
facts the rules read decide the plan (routes, limits, ``post:``, ``set:``). Facts no rule reads
are left at their defaults: the token estimate walks the whole conversation (long for agents),
the clock and the session mapping cost per request.
"""

from __future__ import annotations

from typing import Any, Mapping, TYPE_CHECKING

from dsl.evaluate import Facts, Plan, clock_now, evaluate
from dsl.session import session_ruleset

from ..bounds import check_header_facts
from ..errors import ProxyError
from ..sessions import Session
from ..wire.canonical import ChatRequest

if TYPE_CHECKING:  # pragma: no cover - annotations only: router.state imports the pipeline
    from ..state import RuntimeState


def tokens_for(chars: int) -> int:
    """Our token estimate for text we count ourselves: characters / 4, rounded up."""
    return (chars + 3) // 4


def estimate_prompt_tokens(request: ChatRequest) -> int:
    """Characters / 4 over all text: cheap, and what rules and limits need before the provider counts."""
    chars = sum(len(p.text) for p in request.system)
    for message in request.messages:
        for part in message.parts:
            text = getattr(part, "text", None) or getattr(part, "arguments", None)
            if isinstance(text, str):
                chars += len(text)
            else:
                for inner in getattr(part, "content", ()) or ():
                    chars += len(getattr(inner, "text", "") or "")
    return tokens_for(chars)


def resolve_model(state: RuntimeState, requested: str, session: Session) -> tuple[str, str | None]:
    """The model to ask for and the backend the client named (``backend:model``), if any."""
    model, client_backend = requested, None
    prefix, sep, rest = requested.partition(":")
    if sep and prefix in state.backends:
        client_backend, model = prefix, rest or _default_model(state, prefix)
    return session.model or model, client_backend


def plan_request(state: RuntimeState, request: ChatRequest, requested: str, session: Session,
                 headers: Mapping[str, str], caller: str | None, frontend: str) -> tuple[str, Facts, Plan]:
    """What the rules make of this request in this session: the model to ask for, the facts and
    the plan. Reads only; may raise a 400 for a bad ``backend:`` model or header facts over bounds."""
    model, client_backend = resolve_model(state, requested, session)
    session_rules = session_ruleset(session.route_edits, session.backend if not client_backend else None,
                                    None, session.oneoff)
    reads = state.ruleset.reads
    if session_rules.reads:
        reads = reads | session_rules.reads
    if "header" in reads:
        check_header_facts(headers)
    clock, weekday = clock_now() if "time" in reads or "weekday" in reads else ("00:00", "mon")
    facts = Facts(
        model=model, frontend=frontend, backend=client_backend or session.backend, caller=caller,
        tokens=estimate_prompt_tokens(request) if "tokens" in reads else 0, stream=request.stream,
        tools=bool(request.tools), headers=headers,
        session=_session_facts(session) if "session" in reads else {}, time=clock, weekday=weekday,
        context_window=state.catalog.context_window(model) if "context_window" in reads else None,
    )
    plan = evaluate(facts, state.ruleset, session_rules=session_rules, default_backend=state.config.default_backend)
    return model, facts, plan


def _session_facts(session: Session) -> dict[str, Any]:
    return {"project": session.project, "project_dir": session.project_dir, "backend": session.backend,
            "model": session.model, "id": session.id}


def _default_model(state: RuntimeState, backend: str) -> str:
    """``backend:`` with nothing after the colon: the backend's ``default_model``, else the client must say."""
    model = state.config.backends[backend].default_model if backend in state.config.backends else None
    if not model:
        raise ProxyError(400, f"model: {backend + ':'!r} names backend {backend!r} but no model; "
                              f"write {backend}:<model> (GET /v2/models lists them)", "invalid_request", param="model")
    return model
