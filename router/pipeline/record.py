"""Stage 8: the usage record — exactly one per request, written when the reply is complete (a JSON
reply's at once, a stream's when it ends), filled from the exchange."""

from __future__ import annotations

import asyncio

import time
from dataclasses import asdict

from ..budgets import BudgetExceeded
from ..errors import ProxyError
from ..record.recorder import Recorder
from ..wire.canonical import ChatResponse, Usage
from .budget import settle_budgets
from .dispatch import RateLimited
from .exchange import Exchange
from .plan import estimate_prompt_tokens, tokens_for


def note_answer(ex: Exchange, response: ChatResponse) -> None:
    """A dispatched, whole answer: who answered, and the tokens (estimated when the provider said none)."""
    rec = ex.record
    rec.ttfb = time.perf_counter() - rec.started
    target = ex.outcome.target if ex.outcome is not None else None
    rec.backend, rec.model = (target.backend, target.model) if target else (None, response.model)
    rec.usage, rec.finish_reason = response.usage, response.finish_reason
    if not response.usage.prompt_tokens and not response.usage.completion_tokens:
        rec.usage = Usage(estimate_prompt_tokens(ex.request), tokens_for(len(response.text())), estimated=True)


def note_local(ex: Exchange, backend: str, model: str, finish_reason: str | None) -> None:
    """An answer the proxy had itself (``proxy``: a command reply; ``cache``)."""
    rec = ex.record
    rec.backend, rec.model, rec.finish_reason = backend, model, finish_reason
    if backend == "cache":
        rec.cache_hit, rec.usage = True, Usage()  # no provider tokens spent


def finish_record(ex: Exchange, recorder: Recorder) -> None:
    """Write the record: the routing decisions and guard events are read from the exchange here."""
    rec = ex.record
    if ex.plan is not None:
        rec.rules, rec.route_rule = ex.plan.rules, ex.plan.route_rule
    if ex.outcome is not None:
        rec.attempts, rec.key_id = ex.outcome.attempts, ex.outcome.key_id
    if ex.guards is not None and ex.guards.events:
        rec.guard_events = [asdict(e) for e in ex.guards.events]
    recorder.finish(rec)
    if ex.budget_charge is not None and rec.usage is not None and rec.status < 400:
        settle_budgets(ex, recorder.cost(rec.model, rec.usage))


def record_failure(ex: Exchange, recorder: Recorder, exc: BaseException) -> None:
    """A request that ended in an error: a 4xx/5xx record, and an audit row for a rate-limit refusal."""
    rec = ex.record
    if isinstance(exc, ProxyError):
        rec.status, rec.error, rec.error_kind = exc.status, exc.message, exc.kind
    elif isinstance(exc, asyncio.CancelledError):  # the client left (router/http/hangup.py), or shutdown
        rec.status, rec.error, rec.error_kind = 499, "the client closed the connection", "client_gone"
    else:
        rec.status, rec.error = 500, "internal error"
    finish_record(ex, recorder)
    if isinstance(exc, BudgetExceeded):
        limit = exc.limit
        recorder.audit("rate_limit", ex.ctx.caller, "rejected", session=ex.ctx.session_id, rule=exc.rule,
                       limit=f"budget({limit.amount:g}, per={limit.per}, window={limit.window})", scope=exc.scope)
    if isinstance(exc, RateLimited):
        limit = exc.rejection.limit
        recorder.audit("rate_limit", ex.ctx.caller, "rejected", session=ex.ctx.session_id,
                       limit=f"{limit.kind}({limit.amount}, per={limit.per})", scope=exc.rejection.scope_value)
