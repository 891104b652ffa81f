"""One chat request from decoded body to encoded reply, whatever the front end.

The files of this package are its stages, in order, over one :class:`~.exchange.Exchange`:
session (whose session) → commands (strip, apply to the session, maybe answer directly) → plan
(facts in, plan out) → overrides (the request as forwarded) → lookup (the response cache) →
dispatch (failover) → guard → encode (the client's format, JSON or SSE) → record (one usage row).
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Callable

from dsl.evaluate import Plan

from ..budgets import Budgets
from ..cache import ResponseCache
from ..errors import ProxyError
from ..explain import explain_request
from ..frontends import Frontend
from ..record.recorder import RequestRecord
from ..sessions import Session
from ..wire.canonical import ChatRequest
from ..wire.offload import is_large, off_loop
from .budget import BudgetGate, applies as budgets_apply
from .commands import CommandContext, apply_commands, routing_commands, strip_commands
from .dispatch import Outcome
from .encode import json_reply, local_reply, proxy_answer, stream_reply
from .exchange import Exchange, JsonReply, Reply, RequestContext, StreamReply, next_request_id
from .guard import ToolHistories, active_guards, build_guards, guard_response
from .lookup import cached_answer
from .overrides import apply_overrides
from .plan import estimate_prompt_tokens, plan_request, resolve_model, tokens_for
from .record import finish_record, note_answer, note_local, record_failure

if TYPE_CHECKING:  # pragma: no cover - annotations only: router.state imports this package
    from ..state import RuntimeState, StateRef
from .session import describe_session, remember, resolve_session, sent_session_id, session_id_from


class Pipeline:
    """The orchestrator: the stages in order. Its services (given, or made here): the response
    cache and the sessions' tool-call histories; the recorder and metrics come with ``state_ref``."""

    def __init__(self, state_ref: "StateRef", *, cache: ResponseCache | None = None,
                 histories: ToolHistories | None = None) -> None:
        self.ref = state_ref
        self.cache = cache if cache is not None else ResponseCache()
        self.histories = histories if histories is not None else ToolHistories()
        self.budgets = Budgets(state_ref.recorder.store)  # budget(...) limits, from recorded cost

    async def chat(self, frontend: Frontend, request: ChatRequest, ctx: RequestContext) -> Reply:
        """Serve one request and make sure exactly one usage record is written for it."""
        ex = Exchange(frontend, request, ctx, self.ref.state,
                      RequestRecord(ctx.request_id, frontend.name, request.model, caller=ctx.caller,
                                    stream=request.stream, path=ctx.path),
                      request.model)
        try:
            await resolve_session(ex)
            answer = await self._commands(ex)
            if answer is not None:
                return answer
            self._plan(ex)
            apply_overrides(ex)
            await remember(ex)
            await self._guards(ex)
            cached = await cached_answer(ex, self.cache, self.ref.metrics)
            if cached is not None:
                note_local(ex, "cache", cached.model, cached.finish_reason)
                return local_reply(ex, cached, self._finish(ex))
            if budgets_apply(ex):
                ex.budget_charge = BudgetGate(self.budgets, ex)
                await ex.budget_charge.admit_request()
            return await (self._stream(ex) if ex.request.stream else self._complete(ex))
        except BaseException as exc:
            if ex.outcome is not None:  # a guard or encoder failed after dispatch: free what it holds
                ex.outcome.release()
            record_failure(ex, self.ref.recorder, exc)
            raise

    def _shares_history(self, ex: Exchange) -> bool:
        """Whether this request's tool-call history lives in a shared store (loaded and kept)."""
        return self.histories.shared and bool(ex.request.tools) and not ex.anonymous

    async def _guards(self, ex: Exchange) -> None:
        if self._shares_history(ex):
            await self.histories.load(ex.session)  # type: ignore[attr-defined]
        build_guards(ex, self.histories)

    def _finish(self, ex: Exchange) -> Callable[[], None]:
        """What writes the request's one usage record once its reply has gone out."""
        recorder = self.ref.recorder
        return lambda: finish_record(ex, recorder)

    async def _stream(self, ex: Exchange) -> Reply:
        """Dispatch a streamed request: the reply starts with the first target that answers."""
        ex.outcome = Outcome()
        started = await ex.state.dispatcher.stream(ex.plan, ex.request, ex.outcome, ex.scopes, ex.governed,
                                                   ex.budget_charge)
        rec = ex.record
        rec.ttfb = time.perf_counter() - rec.started
        rec.backend, rec.model = started.target.backend, started.target.model
        finish = self._finish(ex)
        if self._shares_history(ex):
            record = finish
            finish = lambda: (record(), self._keep_history_later(ex))  # noqa: E731
        return stream_reply(ex, started, self.cache, self.ref.metrics, finish)

    async def _complete(self, ex: Exchange) -> Reply:
        """Dispatch a whole request: answer, guards, cache, then the reply and its record."""
        ex.outcome = Outcome()
        response = await ex.state.dispatcher.complete(ex.plan, ex.request, ex.outcome, ex.scopes, ex.governed,
                                                      ex.budget_charge)
        response = await guard_response(ex, response)
        if self._shares_history(ex):
            await self.histories.keep(ex.session)  # type: ignore[attr-defined]
        if ex.cache_slot is not None and not ex.guards.events:
            self.cache.put(ex.cache_slot[0], response, ex.cache_slot[1])
        note_answer(ex, response)
        ex.outcome.release(ex.record.usage.total_tokens)
        if ex.outcome.pending:
            await ex.outcome.settled()
        reply = json_reply(ex, response)
        finish_record(ex, self.ref.recorder)
        return reply

    def _plan(self, ex: Exchange) -> None:
        ex.model, ex.facts, ex.plan = plan_request(ex.state, ex.request, ex.requested, ex.session, ex.ctx.headers,
                                                   ex.ctx.caller, ex.frontend.name)

    async def _commands(self, ex: Exchange) -> Reply | None:
        """Strip the commands, apply those of the latest message; the proxy's own reply when the
        message held only commands or one failed, else None (an interactive session's report is
        kept for the answer). ``ex.request`` becomes the request without its commands (a new
        object: the client's request is not edited). A 400 when commands were all there was and
        none of them answered (a conversation of system text alone goes on: the provider decides)."""
        state, request = ex.state, ex.request
        if not state.commands_enabled:
            return None
        args = (request.messages, state.config.command_prefix, state.backend_names)
        stripped = strip_commands(*args) if not is_large(request.size) else await off_loop(strip_commands, *args)
        if stripped is None:
            return None
        messages, parsed = stripped
        ex.request = request = dataclasses.replace(request, messages=messages)
        ex.parsed = parsed
        if not (parsed.commands or parsed.errors):
            return self._nothing_left(ex)
        session = ex.session
        histories = self.histories
        context = CommandContext(
            backends=state.backend_names, default_backend=state.config.default_backend,
            prefix=state.config.command_prefix, file_rules=list(state.rules.rules),
            guards=lambda s: active_guards(state, s, self._plan_for(ex, s), histories),
            explain=lambda s: explain_request(
                state.config, state.ruleset, state.catalog, ex.requested, frontend=ex.frontend.name,
                headers=ex.ctx.headers, tokens=estimate_prompt_tokens(request), caller=ex.ctx.caller,
                stream=request.stream, tools=bool(request.tools), session=s).text())
        outcome = apply_commands(session, parsed, context)
        if outcome.changed and not outcome.failed:
            ex.session = outcome.session
            await state.sessions.save(ex.session)
            ex.anonymous = False
            outcome.lines.append(describe_session(ex))
            routing = routing_commands(parsed)
            if routing:
                self.ref.recorder.audit("session_command", ex.ctx.caller, "ok", session=ex.ctx.session_id,
                                        commands=routing)
        if parsed.only_commands or outcome.failed:
            # No log line of its own: the access line (backend=proxy) is this request's one line.
            request.model = resolve_model(state, ex.requested, ex.session)[0]
            note_local(ex, "proxy", request.model, "stop")
            return local_reply(ex, proxy_answer(ex, outcome.text()), lambda: finish_record(ex, self.ref.recorder))
        if ex.session.interactive:
            ex.report = outcome.text()
        return self._nothing_left(ex)

    @staticmethod
    def _nothing_left(ex: Exchange) -> None:
        if not ex.request.messages:
            raise ProxyError(400, "messages: no message left to send after removing commands",
                             "invalid_request", param="messages")

    @staticmethod
    def _plan_for(ex: Exchange, session: Session) -> Plan:
        return plan_request(ex.state, ex.request, ex.requested, session, ex.ctx.headers, ex.ctx.caller,
                            ex.frontend.name)[2]


__all__ = ["Pipeline", "ToolHistories", "RequestContext", "JsonReply", "StreamReply", "Exchange",
           "estimate_prompt_tokens", "tokens_for", "session_id_from", "sent_session_id", "next_request_id"]
