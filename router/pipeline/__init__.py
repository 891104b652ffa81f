"""One chat request from decoded body to encoded reply, whatever the front end.

decode → commands (strip, apply to the session, maybe answer directly) → facts → plan (rules IR) →
overrides → dispatch (failover) → encode in the client's format, JSON or SSE.
"""

from __future__ import annotations

import itertools
from types import MappingProxyType
import logging
import time
import uuid
from dataclasses import asdict, dataclass, field

from cachetools import TTLCache
from typing import TYPE_CHECKING, Any, AsyncIterator, Mapping

from backends.base import BackendError
from dsl.commands import ParsedMessage, parse_message, strip_commands
from dsl.evaluate import Facts, Plan, TargetRules, clock_now, evaluate
from dsl.session import session_ruleset

from ..wire.canonical import (
    ChatRequest, ChatResponse, Message, ResponseAccumulator, StreamEvent, is_client_injected, StreamEnd, StreamError, StreamStart, TextDelta, TextPart, Usage, response_to_events,
)
from .dispatch import Outcome, RateLimited, request_settings
from ..bounds import MAX_AUDITED_COMMAND_CHARS, check_header_facts, clip
from ..errors import ProxyError
from ..cache import ResponseCache, cache_policy, request_key
from ..frontends import Frontend
from ..guards import GuardChain, ToolCallHistory, apply_to_response, build_chain
from ..record.recorder import RequestRecord
from .commands import CommandContext, apply_commands
from ..sessions import Session, new_session_id, valid_session_id
from ..wire.offload import is_large, off_loop

if TYPE_CHECKING:  # pragma: no cover (the state module imports this package through dispatch)
    from ..state import RuntimeState, StateRef

log = logging.getLogger("llm_proxy.request")



@dataclass(slots=True)
class RequestContext:
    headers: Mapping[str, str]  # lower-case names
    caller: str | None
    path: str = ""
    request_id: str = field(default_factory=lambda: next_request_id())
    session_id: str = ""
    # Keyword arguments for the front end's StreamEncoder (OpenAI: include_usage from stream_options).
    encoder_options: dict[str, Any] = field(default_factory=dict)


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


_REQUEST_PREFIX = uuid.uuid4().hex[:8]
_request_counter = itertools.count(1)


def next_request_id() -> str:
    """Unique per process start and cheap: a random prefix and a counter (not a secret)."""
    return f"{_REQUEST_PREFIX}-{next(_request_counter):x}"


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


def sent_session_id(headers: Mapping[str, str]) -> str | None:
    """``x-session-id``, else Claude Code's own session header, else None (an anonymous client)."""
    return headers.get("x-session-id") or headers.get("x-claude-code-session-id")


def session_id_from(sid: str | None) -> str:
    """The session id the client sent (:func:`sent_session_id`), checked; a new id when it sent none."""
    if sid is None:
        return new_session_id()
    if not valid_session_id(sid):
        raise ProxyError(400, "x-session-id: use 1-128 characters of letters, digits and . _ : -", "invalid_request",
                         param="x-session-id")
    return sid


_NO_SESSION_FACTS: Mapping[str, Any] = MappingProxyType({})  # for rules that read no session.* fact
_NO_CLOCK = ("00:00", "mon")  # for rules that read neither time nor weekday
_NO_TOOLS_HISTORY = ToolCallHistory()  # handed to chains that build no tool guards; never written


class Pipeline:
    def __init__(self, state_ref: "StateRef") -> None:
        self.ref = state_ref
        self._tool_histories: TTLCache[tuple[str | None, str], ToolCallHistory] = TTLCache(maxsize=10_000, ttl=3600)
        self.cache = ResponseCache()

    # ---- commands ------------------------------------------------------------------------------

    def _strip_commands(self, request: ChatRequest, state: RuntimeState) -> ParsedMessage | None:
        """Remove commands from every user message; return those of the latest one.

        Earlier user turns that held only commands are dropped together with the proxy's reply
        that followed them, so the provider sees a clean conversation.
        """
        prefix = state.config.command_prefix
        messages = request.messages
        if not any(prefix in part.text for message in messages if message.role == "user"
                   for part in message.parts if isinstance(part, TextPart)):
            return None  # no command anywhere: most requests
        known = state.backend_names
        latest_index = len(messages) - 1 if messages and messages[-1].role == "user" else -1
        latest: ParsedMessage | None = None
        kept: list[Message] = []
        skip_next_assistant = False
        for index, message in enumerate(messages):
            if skip_next_assistant and message.role == "assistant":
                skip_next_assistant = False
                continue
            skip_next_assistant = False
            if message.role != "user" or not any(isinstance(p, TextPart) and prefix in p.text for p in message.parts):
                kept.append(message)
                continue
            # Only the latest message's commands run (and are parsed); earlier ones ran when they
            # were sent and are only cut out, so a long history costs a scan, not a parse per turn.
            combined = ParsedMessage()
            had_commands = False
            parts = []
            for part in message.parts:
                if isinstance(part, TextPart) and prefix in part.text:
                    if index == latest_index:
                        parsed = parse_message(part.text, prefix, known)
                        combined.commands += parsed.commands
                        combined.errors += parsed.errors
                        text = parsed.text
                    else:
                        text, found = strip_commands(part.text, prefix)
                        had_commands = had_commands or found
                    if text:
                        parts.append(TextPart(text))
                else:
                    parts.append(part)
            if index == latest_index:
                latest = combined
                # What is left for the model decides whether the proxy answers by itself: the
                # person's remaining text; other parts (images, tool results) count as content.
                remaining = Message("user", parts)
                combined.text = "" if _only_reminders(parts) else (remaining.typed_text() or "[non-text content]")
                kept.append(remaining)
            elif parts and not _only_reminders(parts):
                kept.append(Message("user", parts))
            elif had_commands:
                skip_next_assistant = True
            else:
                kept.append(message)
        request.messages = kept
        return latest

    def _command_context(self, state: RuntimeState, plan: Plan | None) -> CommandContext:
        return CommandContext(
            backends=state.backend_names, default_backend=state.config.default_backend,
            prefix=state.config.command_prefix, file_rules=list(state.rules.rules),
            guards=lambda s: self._guards(state, s, plan),
        )

    def _guards(self, state: RuntimeState, session: Session, plan: Plan | None) -> list[str]:
        """Guards in effect for this session: config defaults < rule ``post:`` < session switches."""
        chain = build_chain(request=ChatRequest(model="", messages=[]), rule_post=plan.post if plan else (),
                            config=state.config, session_params=session.params, history=self._history(session))
        return chain.active()

    def _history(self, session: Session) -> ToolCallHistory:
        """The session's tool-call history (in process, bounded, idle ones forgotten), kept like
        the session itself under its owner and id."""
        key = (session.owner, session.id)
        history = self._tool_histories.get(key)
        if history is None:
            history = self._tool_histories[key] = ToolCallHistory()
        return history

    # ---- the request ---------------------------------------------------------------------------

    async def chat(self, frontend: Frontend, request: ChatRequest, ctx: RequestContext) -> Reply:
        """Serve one request and make sure exactly one usage record is written for it (a JSON
        reply's now; a stream's when it ends). One coroutine on purpose: a helper coroutine per
        request costs a frame to create and resume."""
        rec = RequestRecord(ctx.request_id, frontend.name, request.model, caller=ctx.caller, stream=request.stream,
                            path=ctx.path)
        try:
            state = self.ref.state
            sessions = state.sessions
            requested = request.model
            sent = sent_session_id(ctx.headers)
            ctx.session_id = rec.session_id = session_id_from(sent)
            # A client that sends no session id gets a fresh session it may adopt (the id is in the
            # reply); it is stored only once a command changes it, so anonymous traffic neither fills
            # the store nor evicts real sessions. A session belongs to its caller: the same id sent
            # with another key is another session.
            anonymous = not sent
            session = Session(id=ctx.session_id, owner=ctx.caller) if anonymous \
                else await sessions.get_or_create(ctx.session_id, ctx.caller)
            headers = {"x-session-id": session.id, "x-request-id": ctx.request_id}

            parsed = None
            if state.commands_enabled:
                parsed = (self._strip_commands(request, state) if not is_large(request.size)
                          else await off_loop(self._strip_commands, request, state))
            facts, plan = self._plan(state, request, requested, session, ctx, frontend)
            report: str | None = None
            if parsed is not None and (parsed.commands or parsed.errors):
                outcome = apply_commands(session, parsed, self._command_context(state, plan))
                if outcome.changed and not outcome.failed:
                    session = outcome.session
                    await sessions.save(session)
                    facts, plan = self._plan(state, request, requested, session, ctx, frontend)
                    self._audit_commands(parsed, ctx)
                if parsed.only_commands or outcome.failed:
                    log.info("command reply", extra={"request_id": ctx.request_id, "session": session.id})
                    rec.backend, rec.model, rec.finish_reason = "proxy", request.model, "stop"
                    return self._done(self._proxy_reply(frontend, request, outcome.text(), headers, ctx, rec), rec)
                if session.interactive:
                    report = outcome.text()

            if not request.messages:
                raise ProxyError(400, "messages: no message left to send after removing commands", "invalid_request",
                                 param="messages")
            if session.oneoff:
                session.oneoff = None
            self._apply_overrides(request, plan, session)
            rec.rules, rec.route_rule = plan.rules, plan.route_rule

            outcome_d = Outcome()
            rec.attempts = outcome_d.attempts
            # Saved before dispatch, not in the background: a client's next request may arrive as soon
            # as this reply does, and must see the one-off consumed (file sessions are re-read each time).
            # An anonymous session is never stored, so it keeps no history either.
            if not anonymous:
                session.add_history({"at": round(time.time(), 3), "model": facts.model, "frontend": frontend.name,
                                     "rules": list(plan.rules)}, state.config.session.max_history)
                await sessions.save(session)
            # File rules with limits or set govern every target tried, not only this request's facts.
            governed = TargetRules(facts, plan, state.ruleset) if state.ruleset.governs else None
            # Scope values are read only by limits (most requests have none).
            scopes = {"session": session.scope(), "caller": ctx.caller} if plan.limits or governed is not None \
                else None
            # Anonymous requests have no session to remember tool calls in: the request's own
            # history is what the tool-call loop detector counts for them. Without declared tools
            # the tool guards are not built (skip_idle), so no history is needed at all.
            if not request.tools:
                history = _NO_TOOLS_HISTORY
            else:
                history = ToolCallHistory() if anonymous else self._history(session)
            guards = build_chain(request=request, rule_post=plan.post, config=state.config,
                                 session_params=session.params, history=history, skip_idle=True)
            cache = self._cache_lookup(request, plan, session, headers, ctx.caller, governed)
            if isinstance(cache, ChatResponse):
                rec.cache_hit, rec.backend, rec.model = True, "cache", cache.model
                rec.usage, rec.finish_reason = Usage(), cache.finish_reason  # no provider tokens spent
                return self._done(self._local_reply(frontend, request, cache, headers, ctx, rec), rec)
            if request.stream:
                started = await state.dispatcher.stream(plan, request, outcome_d, scopes, governed)
                rec.ttfb = time.perf_counter() - rec.started
                rec.backend, rec.model = started.target.backend, started.target.model
                encoder = frontend.codec.StreamEncoder(**ctx.encoder_options)
                return self._done(StreamReply(self._stream_body(encoder, started, report, outcome_d, rec, guards, request, cache), headers), rec)
            response = await state.dispatcher.complete(plan, request, outcome_d, scopes, governed)
            response = (apply_to_response(guards, response) if not is_large(_text_size(response))
                        else await off_loop(apply_to_response, guards, response))
            if guards.events:
                rec.guard_events = [asdict(e) for e in guards.events]
            if cache is not None and not guards.events:
                self.cache.put(cache[0], response, cache[1])
            rec.ttfb = time.perf_counter() - rec.started
            outcome_d.release(response.usage.total_tokens)
            target = outcome_d.target
            rec.backend, rec.model = (target.backend, target.model) if target else (None, response.model)
            rec.usage, rec.finish_reason = response.usage, response.finish_reason
            if not response.usage.prompt_tokens and not response.usage.completion_tokens:
                rec.usage = Usage(estimate_prompt_tokens(request), tokens_for(len(response.text())), estimated=True)
            if report:
                response.parts.insert(0, TextPart(f"[proxy]\n{report}\n\n"))
            return self._done(JsonReply(200, frontend.codec.encode_response(response), headers), rec)
        except ProxyError as exc:
            rec.status, rec.error, rec.error_kind = exc.status, exc.message, exc.kind
            self.ref.recorder.finish(rec)
            if isinstance(exc, RateLimited):
                limit = exc.rejection.limit
                self.ref.recorder.audit("rate_limit", ctx.caller, "rejected", session=ctx.session_id,
                                        limit=f"{limit.kind}({limit.amount}, per={limit.per})",
                                        scope=exc.rejection.scope_value)
            raise
        except BaseException:
            rec.status, rec.error = 500, "internal error"
            self.ref.recorder.finish(rec)
            raise

    def _done(self, reply: Reply, rec: RequestRecord) -> Reply:
        if isinstance(reply, JsonReply):
            self.ref.recorder.finish(rec)
        return reply

    def _audit_commands(self, parsed: ParsedMessage, ctx: RequestContext) -> None:
        """Commands that change routing are security-relevant: who moved traffic where."""
        routing = [clip(c.source, MAX_AUDITED_COMMAND_CHARS) for c in parsed.commands
                   if c.name in ("backend", "model", "oneoff", "route-append", "route-prepend", "route-clear")
                   or (c.name == "set" and any(getattr(e, "field", "") in ("backend", "model") for e in c.edits))]
        if routing:
            self.ref.recorder.audit("session_command", ctx.caller, "ok", session=ctx.session_id, commands=routing)

    def _plan(self, state: RuntimeState, request: ChatRequest, requested: str, session: Session,
              ctx: RequestContext, frontend: Frontend) -> tuple[Facts, Plan]:
        model = requested
        client_backend = None
        prefix, sep, rest = model.partition(":")
        if sep and prefix in state.backends:
            client_backend, model = prefix, rest or _default_model(state, prefix)
        if session.model:
            model = session.model
        session_rules = session_ruleset(session.route_edits, session.backend if not client_backend else None,
                                        None, session.oneoff)
        # Facts no rule looks at are left at their defaults: the token estimate walks the whole
        # conversation (long for agents), the clock and the session mapping cost per request.
        reads = state.ruleset.reads
        if session_rules.reads:
            reads = reads | session_rules.reads
        if "header" in reads:
            check_header_facts(ctx.headers)
        facts = Facts(  # positional, in Facts' field order (keywords cost per request)
            model, frontend.name, client_backend or session.backend, ctx.caller,
            estimate_prompt_tokens(request) if "tokens" in reads else 0, request.stream, bool(request.tools),
            ctx.headers,
            {"project": session.project, "project_dir": session.project_dir, "backend": session.backend,
             "model": session.model, "id": session.id} if "session" in reads else _NO_SESSION_FACTS,
            *(clock_now() if "time" in reads or "weekday" in reads else _NO_CLOCK),
        )
        plan = evaluate(facts, state.ruleset, session_rules=session_rules, default_backend=state.config.default_backend)
        request.model = model
        return facts, plan

    @staticmethod
    def _apply_overrides(request: ChatRequest, plan: Plan, session: Session) -> None:
        """The operator's ``set:`` beats the session's settings, which beat what the client sent:
        a session chooses only where the operator left a value open. (Dispatch writes the settings
        of rules that match only through the target over these, see ``TargetRules``.)"""
        if session.temperature is not None or session.params:
            for key in ("temperature", "top_p", "max_tokens"):
                value = session.temperature if key == "temperature" else session.params.get(key)
                if value is not None:
                    setattr(request, key, int(value) if key == "max_tokens" else float(value))
        if plan.overrides:
            for key, value in request_settings(plan.overrides).items():
                setattr(request, key, value)

    def _cache_lookup(self, request: ChatRequest, plan: Plan, session: Session, headers: dict[str, str],
                      caller: str | None, governed: TargetRules | None) -> ChatResponse | tuple[str, int] | None:
        """A cached answer, or (key, ttl) to store this one under, or None when caching is off."""
        policy = cache_policy(plan, session.params)
        if policy is None:
            return None
        # What rules matching only through a target set is forwarded too (see ``TargetRules``).
        targets: list[Any] = []
        if governed is not None:
            for target in plan.targets():
                terms = governed.terms(target)
                if terms is not None and terms.overrides:
                    targets.append((str(target), terms.overrides))
        key = request_key(request, plan, caller, policy.shared, targets)
        cached = self.cache.get(key)
        headers["x-cache"] = "hit" if cached is not None else "miss"
        self.ref.metrics.cache.labels(headers["x-cache"]).inc()
        return cached if cached is not None else (key, policy.ttl)

    def _proxy_reply(self, frontend: Frontend, request: ChatRequest, text: str, headers: dict[str, str],
                     ctx: RequestContext, rec: RequestRecord) -> Reply:
        response = ChatResponse(id=f"proxy-{uuid.uuid4().hex[:24]}", model=request.model or "proxy",
                                parts=[TextPart(text)], usage=Usage(), created=int(time.time()))
        return self._local_reply(frontend, request, response, headers, ctx, rec)

    def _local_reply(self, frontend: Frontend, request: ChatRequest, response: ChatResponse,
                     headers: dict[str, str], ctx: RequestContext, rec: RequestRecord) -> Reply:
        """An answer the proxy has itself (a command reply, a cached answer): JSON or replayed as a stream."""
        if request.stream:
            recorder = self.ref.recorder

            async def chunks() -> AsyncIterator[bytes]:
                try:
                    encoder = frontend.codec.StreamEncoder(**ctx.encoder_options)
                    for event in response_to_events(response):
                        yield encoder.encode(event)
                finally:
                    recorder.finish(rec)
            return StreamReply(chunks(), headers)
        return JsonReply(200, frontend.codec.encode_response(response), headers)

    async def _stream_body(self, encoder: Any, started: Any, report: str | None, outcome: Outcome,
                           rec: RequestRecord, guards: GuardChain, request: ChatRequest,
                           cache: tuple[str, int] | None = None) -> AsyncIterator[bytes]:
        """Events go through the guards, then the client's encoder. When the stream ends for any
        reason (done, cut by a guard, failed, client gone): close the upstream, release the
        limits with the real usage, write the usage record."""
        events = started.events
        metrics = self.ref.metrics
        metrics.active_streams.inc()
        text_chars = 0
        rec.finish_reason = "incomplete"  # until a StreamEnd says otherwise (client went away)

        keep = ResponseAccumulator() if cache is not None else None

        def out(upstream_event: StreamEvent) -> list[bytes]:
            nonlocal text_chars
            frames = []
            for event in guards.feed(upstream_event):
                if keep is not None:
                    keep.feed(event)
                if isinstance(event, TextDelta):
                    text_chars += len(event.text)
                elif isinstance(event, StreamEnd):
                    rec.finish_reason = event.finish_reason
                    if event.usage is not None:
                        rec.usage = event.usage
                elif isinstance(event, StreamError):
                    rec.finish_reason, rec.error = "error", event.message
                frames.append(encoder.encode(event))
            return frames

        try:
            for frame in out(started.first):
                yield frame
            if report and isinstance(started.first, StreamStart):
                yield encoder.encode(TextDelta(f"[proxy]\n{report}\n\n"))
            if not guards.stop_upstream:
                async for upstream_event in events:
                    for frame in out(upstream_event):
                        yield frame
                    if guards.stop_upstream:
                        break  # a guard cut the stream: stop reading (and paying for) the rest
            for event in guards.finish():
                yield encoder.encode(event)
            if keep is not None and cache is not None and not guards.events and rec.finish_reason not in ("error", "incomplete"):
                self.cache.put(cache[0], keep.result(), cache[1])
        except BackendError as exc:
            rec.finish_reason, rec.error = "error", exc.message
            yield encoder.encode(StreamError(f"{exc.backend or 'backend'}: {exc.message}", "api_error"))
        finally:
            metrics.active_streams.dec()
            rec.guard_events = [asdict(e) for e in guards.events]
            if rec.usage is None:  # cut off, or the provider reported nothing: estimate, and say so
                rec.usage = Usage(estimate_prompt_tokens(request), tokens_for(text_chars), estimated=True)
            outcome.release(rec.usage.total_tokens)
            self.ref.recorder.finish(rec)
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()


def _text_size(response: ChatResponse) -> int:
    """Characters of text and tool arguments in a reply: what the guards' work grows with."""
    return sum(len(getattr(part, "text", None) or getattr(part, "arguments", None) or "") for part in response.parts)


def _default_model(state: RuntimeState, backend: str) -> str:
    """``backend:`` with nothing after the colon: the backend's ``default_model``, else the client must say."""
    model = state.config.backends[backend].default_model if backend in state.config.backends else None
    if not model:
        raise ProxyError(400, f"model: {backend + ':'!r} names backend {backend!r} but no model; "
                              f"write {backend}:<model> (GET /v2/models lists them)", "invalid_request", param="model")
    return model


def _only_reminders(parts: list[Any]) -> bool:
    """True when nothing but client-injected context (Claude Code, Gemini CLI) is left."""
    return all(isinstance(p, TextPart) and (not p.text.strip() or is_client_injected(p)) for p in parts)


__all__ = ["Pipeline", "RequestContext", "JsonReply", "StreamReply", "estimate_prompt_tokens",
           "session_id_from", "sent_session_id"]
