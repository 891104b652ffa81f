"""Carrying out a plan: rate limits, then the failover chain until a target answers.

Failover happens only before the first byte reaches the client: for streams, the first event is
pulled from the backend here, and only then does the caller start the HTTP response. Once a
stream has started, a failure ends it with an error event (see ``pipeline``), never a splice.

Per target, transient failures (connection, 5xx, overloaded) are retried a bounded number of times
with exponential backoff and jitter; rate limits, auth failures and timeouts move on to the next
target at once. The whole walk shares one deadline (``proxy_timeout``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, AsyncIterator, Awaitable, Mapping, Protocol

from backends.base import PROXY_KIND, STATUS_FOR_KIND, Backend, BackendError, ErrorKind
from backends.keys import KeyChoice
from dsl import ir
from dsl.evaluate import Plan, TargetRules

from ..wire.codec import CodecError
from ..wire.canonical import ChatRequest, ChatResponse, StreamError, StreamEvent
from ..wire.custom_tools import StreamRestorer, custom_names, restore_response
from ..errors import ProxyError
from ..budgets import BudgetExceeded
from ..limits import InProcessLimiter, Limiter, Rejection, Reservation
from ..routing_stats import InProcessRoutingStats, RoutingStats
from .strategies import order_group
from ..record.attempt import Attempt

class HealthLike(Protocol):
    """The circuit breaker (``router.http.health.HealthMonitor``), per backend and model."""

    def allow(self, backend: str, model: str = "") -> bool: ...
    def record(self, backend: str, ok: bool, kind: str | None = None, model: str = "") -> None: ...


class KeyGateLike(Protocol):
    """Per-key budgets of one call (``router.pipeline.budget.KeyGate``): asked about each key."""

    refused: BudgetExceeded | None

    def __call__(self, key_label: str) -> Awaitable[bool]: ...


class BudgetGateLike(Protocol):
    """One request's budgets (``router.pipeline.budget.BudgetGate``), asked about each target."""

    async def admit_target(self, target: ir.Target, through: tuple[tuple[ir.Limit, str], ...]
                           ) -> BudgetExceeded | None: ...
    def key_gate(self, target: ir.Target, through: tuple[tuple[ir.Limit, str], ...]) -> KeyGateLike | None: ...


_NO_SCOPES: Mapping[str, str | None] = MappingProxyType({})  # a request no limit applies to needs none

RETRY_KINDS = frozenset({"connection", "server", "overloaded"})
# StreamError.kind (the wire codecs' error kinds) -> BackendError kind
STREAM_ERROR_KIND: dict[str, ErrorKind] = {
    "overloaded": "overloaded", "rate_limit": "rate_limited", "timeout": "timeout", "invalid_request": "bad_request",
    "request_too_large": "bad_request", "not_found": "not_found", "authentication": "auth", "permission": "auth",
}


@dataclass(slots=True)
class StreamStarted:
    first: StreamEvent
    events: AsyncIterator[StreamEvent]
    target: ir.Target


@dataclass(slots=True)
class Outcome:
    """What happened to one request; the pipeline releases ``reservations`` when the reply ends."""

    target: ir.Target | None = None
    attempts: list[Attempt] = field(default_factory=list)
    reservations: list[Reservation] = field(default_factory=list)
    # Releases a shared limiter (Redis) is still writing: awaited with ``settled`` before a reply
    # ends, so the client's next request finds its concurrency slot free.
    pending: list[Awaitable[object]] = field(default_factory=list)
    picks: dict[ir.Target, str] = field(default_factory=dict)  # target -> strategy that picked it
    on_error: str | None = None  # the ``on:`` class that fired, if one did
    key_id: str | None = None  # label of the provider key of the answer (usage rows, per-key budgets)
    # The target whose reply is in flight, counted in the routing stats until the reply ends.
    flight: tuple[RoutingStats, str] | None = None
    # A shared store's session check and write (``state_store/step.py``): sent with the first
    # limit check, or alone before the first backend call; None once sent (and with memory state).
    rider: Any = None

    def release(self, tokens: int = 0) -> None:
        for reservation in self.reservations:
            reservation.release(tokens)
            writing = getattr(reservation, "pending", None)
            if writing is not None:
                self.pending.append(writing)
        self.reservations.clear()
        if self.flight is not None:
            stats, key = self.flight
            self.flight = None
            stats.finished(key)

    async def settled(self) -> None:
        pending, self.pending = self.pending, []
        for writing in pending:
            await writing


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    retries: int = 1  # extra tries of the same target for transient errors
    base_delay: float = 0.1
    max_delay: float = 2.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Exponential backoff with full jitter."""
        return rng.uniform(0, min(self.max_delay, self.base_delay * (2 ** attempt)))


@dataclass(slots=True)
class Picker:
    """What the group strategies read for one request: the routing stats, prices and the
    request's size; ``picks`` collects which strategy put which target first."""

    stats: RoutingStats
    prices: Mapping[str, Mapping[str, float]]
    request: ChatRequest
    picks: dict[ir.Target, str]
    _tokens: int | None = None

    def order(self, group: ir.Group, rng: random.Random) -> list[ir.Target]:
        tokens = 0
        if group.strategy == "cheapest":  # only cheapest(...) reads the request's size: estimated once
            if self._tokens is None:
                from .plan import estimate_prompt_tokens

                self._tokens = estimate_prompt_tokens(self.request)
            tokens = self._tokens
        members, explored = order_group(group, self.stats, self.prices, tokens, self.request.max_tokens or 0, rng)
        self.picks[members[0]] = f"{group.strategy}:explore" if explored else str(group.strategy)
        return members


def ordered_targets(plan: Plan | tuple[ir.Link, ...], rng: random.Random, picker: Picker | None = None
                    ) -> list[ir.Target]:
    """Chain order; a group is shuffled by weight (weighted sampling without replacement), a
    strategy group is ordered by its strategy (``picker``; without one, like an equal group)."""
    out: list[ir.Target] = []
    for link in plan.chain if isinstance(plan, Plan) else plan:
        if isinstance(link, ir.Target):
            out.append(link)
            continue
        if link.strategy is not None and picker is not None:
            out.extend(picker.order(link, rng))
            continue
        members = list(link.members)
        while members:
            weights = [m.weight if m.weight is not None else 1.0 for m in members]
            pick = rng.choices(range(len(members)), weights=weights)[0]
            out.append(members.pop(pick).target)
    return out


class Dispatcher:
    def __init__(self, backends: Mapping[str, Backend], *, limiter: Limiter | None = None,
                 retry: RetryPolicy = RetryPolicy(), deadline: float = 120.0, rng: random.Random | None = None) -> None:
        self.backends = backends
        self.limiter: Limiter = limiter or InProcessLimiter()
        self.retry = retry
        self.deadline = deadline
        self.rng = rng or random.Random()
        self.health: HealthLike | None = None  # the circuit breaker, set by the app
        self.stats: RoutingStats = InProcessRoutingStats()  # what the group strategies observe
        self.prices: Mapping[str, Mapping[str, float]] = {}  # config ``prices``, for cheapest(...)

    # ``governed`` (None when no file rule has limits or set) gives each target's own terms.
    # ``budget`` (None when no budget may apply) checks each target and key against spend.
    async def complete(self, plan: Plan, request: ChatRequest, outcome: Outcome,
                       scopes: Mapping[str, str | None] | None = None,
                       governed: TargetRules | None = None, budget: BudgetGateLike | None = None) -> ChatResponse:
        return await self._walk(plan, request, outcome, False,  # type: ignore[return-value]
                                _NO_SCOPES if scopes is None else scopes, governed, budget)

    async def stream(self, plan: Plan, request: ChatRequest, outcome: Outcome,
                     scopes: Mapping[str, str | None] | None = None,
                     governed: TargetRules | None = None, budget: BudgetGateLike | None = None) -> StreamStarted:
        return await self._walk(plan, request, outcome, True,  # type: ignore[return-value]
                                _NO_SCOPES if scopes is None else scopes, governed, budget)

    # ---- limits ----------------------------------------------------------------------------------

    async def _acquire(self, limits: list[tuple[ir.Limit, str]], outcome: Outcome) -> Rejection | None:
        if not limits:
            return None
        rider = outcome.rider
        if rider is None:
            result = self.limiter.acquire(limits)
        else:  # the session check rides along: one round trip for both
            outcome.rider = None
            result = self.limiter.acquire(limits, rider)  # type: ignore[call-arg]
        if not isinstance(result, (Reservation, Rejection)):  # a shared limiter (Redis) is awaited
            result = await result
        if isinstance(result, Rejection):
            return result
        outcome.reservations.append(result)
        return None

    def _key_gate(self, limits: list[ir.Limit], outcome: Outcome,  # type: ignore[no-untyped-def]
                  budget: KeyGateLike | None = None):
        if not limits:
            return budget

        async def gate(key_label: str) -> bool:
            if budget is not None and not await budget(key_label):  # spend first: it reserves nothing
                return False
            return await self._acquire([(lim, key_label) for lim in limits], outcome) is None

        return gate

    # ---- the walk --------------------------------------------------------------------------------

    async def _walk(self, plan: Plan, request: ChatRequest, outcome: Outcome, stream: bool,
                    scopes: Mapping[str, str | None], governed: TargetRules | None,
                    budget: BudgetGateLike | None = None) -> ChatResponse | StreamStarted:
        """The caller releases ``outcome`` when a reply ends; on any failure it is released here
        (deadline, cancellation by a client that hung up, an unexpected connector exception)."""
        try:
            per_backend: list[ir.Limit] = []
            per_key: list[ir.Limit] = []
            # The session and caller limits are acquired together with the first target's own (one
            # round trip to a shared store); a refusal of one of them refuses the request.
            shared: list[tuple[ir.Limit, str]] = []
            if plan.limits:  # most plans have none
                shared = [(lim, scopes.get(lim.per) or "-") for lim in plan.limits
                          if lim.per in ("session", "caller") and lim.kind != "budget"]
                per_backend = [lim for lim in plan.limits if lim.per == "backend" and lim.kind != "budget"]
                per_key = [lim for lim in plan.limits if lim.per == "key" and lim.kind != "budget"]
            deadline = time.monotonic() + self.deadline
            walk = _Walk(request, outcome, stream, scopes, governed, per_backend, per_key, deadline, shared=shared,
                         budget=budget)
            result = await self._chain(plan.chain, walk)
            if result is not None:
                return result
            if plan.on and walk.last is not None:
                # The chain failed before the first byte: the class of the last failure picks the
                # rule's ``on:`` fallback, tried once (its own failure is the client's answer).
                error_class = walk.last.error_class
                fallback = next((links for name, links, _rule in plan.on if name == error_class), None)
                if fallback is not None:
                    outcome.on_error = walk.on_error = error_class
                    walk.last, walk.local_rejection, walk.budget_refusal = None, None, None
                    result = await self._chain(fallback, walk)
                    if result is not None:
                        return result
            if walk.last is None and walk.local_rejection is not None:
                raise _limited(walk.local_rejection)
            if walk.last is None and walk.budget_refusal is not None:
                raise walk.budget_refusal  # every target was over a budget
            raise to_proxy_error(walk.last, len(outcome.attempts))
        except BaseException:
            outcome.release()
            raise

    async def _chain(self, chain: tuple[ir.Link, ...], walk: "_Walk") -> ChatResponse | StreamStarted | None:
        """Try the targets of ``chain`` in order; the reply, or None with ``walk.last`` set."""
        request, outcome = walk.request, walk.outcome
        picker = None
        for link in chain:  # (a loop, not any() over a generator: this runs per request)
            if isinstance(link, ir.Group) and link.strategy is not None:
                picker = Picker(self.stats, self.prices, request, outcome.picks)
                break
        targets = ordered_targets(chain, self.rng, picker)
        health = self.health
        if health is not None:
            # Skip backends whose circuit is open; if that leaves nothing, try them anyway
            # (better a likely failure than a certain one).
            allowed = [t for t in targets if health.allow(t.backend, t.model or request.model)]
            if len(allowed) < len(targets):
                for skipped in (t for t in targets if t not in allowed):
                    outcome.attempts.append(Attempt(skipped.backend, skipped.model or request.model, "circuit_open",
                                                    0.0, error="backend or model is failing; skipped until it recovers",
                                                    on_error=walk.on_error))
                targets = allowed or targets
        governed, scopes = walk.governed, walk.scopes
        for target in targets:
            held = len(outcome.reservations)
            terms = governed.terms(target) if governed is not None else None
            key_budget = None
            if walk.budget is not None:  # budgets first: they reserve nothing the next target would need
                through = terms.budgets if terms is not None else ()
                refusal = await walk.budget.admit_target(target, through)
                if refusal is not None:
                    walk.budget_refusal = refusal
                    outcome.attempts.append(Attempt(target.backend, target.model or request.model, "rate_limited",
                                                    0.0, error=refusal.message, picked_by=outcome.picks.get(target),
                                                    on_error=walk.on_error))
                    continue
                key_budget = walk.budget.key_gate(target, through)
            key_limits, settings = walk.per_key, ()
            if terms is None:
                wanted = [(lim, target.backend) for lim in walk.per_backend] if walk.per_backend else []
                rejection = await self._acquire(walk.shared + wanted, outcome) if walk.shared or wanted else None
            else:
                # Limits of rules that match only through this target, in every scope, all or
                # nothing together with the plan's backend-scoped ones.
                extra = [lim for lim in terms.limits if lim.kind != "budget"]
                wanted = [(lim, target.backend) for lim in walk.per_backend]
                wanted += [(lim, target.backend if lim.per == "backend" else scopes.get(lim.per) or "-")
                           for lim in extra if lim.per != "key"]
                key_limits = walk.per_key + [lim for lim in extra if lim.per == "key"]
                settings = terms.overrides
                rejection = await self._acquire(walk.shared + wanted, outcome)
            if rejection is not None and any(rejection.limit is lim for lim, _value in walk.shared):
                raise _limited(rejection)  # a session or caller limit refuses the request itself
            if walk.shared and rejection is None:
                held += 1  # the session and caller limits stay held across targets, not released on failover
                walk.shared = []
            if outcome.rider is not None:  # no limit check carried the session check: send it now
                rider, outcome.rider = outcome.rider, None
                await rider.send()
            if rejection is not None:
                walk.local_rejection = rejection
                outcome.attempts.append(Attempt(target.backend, target.model or request.model, "rate_limited", 0.0,
                                                error=rejection.describe(), picked_by=outcome.picks.get(target),
                                                on_error=walk.on_error))
                continue
            for attempt in range(self.retry.retries + 1):
                remaining = walk.deadline - time.monotonic()
                if remaining <= 0:
                    raise ProxyError(504, f"no backend answered within proxy_timeout ({self.deadline:g}s)", "timeout")
                try:
                    # Each attempt is bounded by the connector's connect/first-byte/idle timeouts;
                    # the deadline bounds the walk, checked between attempts (no timer per request).
                    result = await self._try(target, request, walk.stream, key_limits, outcome, settings, walk.on_error,
                                             key_budget)
                    outcome.target = target
                    return result
                except BudgetExceeded as refusal:  # every key of the target is over a per-key budget
                    walk.budget_refusal = refusal
                    break
                except BackendError as exc:
                    walk.last = exc
                    if not exc.retryable:
                        return None  # the client's error (a 400): no other target of this chain
                    if exc.kind not in RETRY_KINDS or not exc.repeatable or attempt == self.retry.retries:
                        break
                    await asyncio.sleep(min(self.retry.delay(attempt, self.rng),
                                            max(0.0, walk.deadline - time.monotonic())))
            # This target failed: its backend and key slots are not held while the next one answers.
            for reservation in outcome.reservations[held:]:
                reservation.release(0)
            del outcome.reservations[held:]
        return None

    async def _try(self, target: ir.Target, request: ChatRequest, stream: bool, per_key: list[ir.Limit],
                   outcome: Outcome, settings: tuple[tuple[str, ir.Scalar], ...] = (),
                   on_error: str | None = None, key_budget: KeyGateLike | None = None) -> ChatResponse | StreamStarted:
        started = time.perf_counter()
        model = target.model or request.model
        backend = self.backends.get(target.backend)
        if backend is None:
            error = BackendError("bad_request", f"unknown backend {target.backend!r}; configured: "
                                 + ", ".join(sorted(self.backends)), backend=target.backend)
            self._record(outcome, target, request, error, started, None, on_error)
            raise error
        stats, key = self.stats, f"{target.backend}:{model}"
        stats.started(key)
        # Per-key limits go to the connector's key loop with the call; the key it used comes back.
        keys = KeyChoice(self._key_gate(per_key, outcome, key_budget) if per_key or key_budget else None)
        try:
            # the connectors encode ``stream`` from the request: it must match the call made
            same = request.model == model and request.stream == stream and not settings
            attempt_request = request if same else dataclasses.replace(request, model=model, stream=stream,
                                                                       **request_settings(settings))
            if stream:
                events = backend.stream(attempt_request, keys).__aiter__()
                try:
                    first = await events.__anext__()
                except StopAsyncIteration:
                    raise BackendError("server", "the backend closed the stream without a reply") from None
                if isinstance(first, StreamError):  # nothing reached the client yet: fail over
                    await events.aclose()  # type: ignore[attr-defined]
                    raise BackendError(STREAM_ERROR_KIND.get(first.kind, "server"), first.message)
                result: ChatResponse | StreamStarted = StreamStarted(first, events, target)
            else:
                result = await backend.complete(attempt_request, keys)
            if request.tools:
                result = _restore_custom_calls(result, custom_names(request.tools))
        except BaseException as exc:
            stats.finished(key)
            if isinstance(exc, CodecError):
                # The request holds something this backend's format cannot carry (a connector encodes
                # before it calls): the client's 400, naming the field and the backend.
                error = BackendError("bad_request", f"{exc.param}: {exc.message} (backend {target.backend!r})",
                                     status=400, backend=target.backend)
                self._record(outcome, target, request, error, started, keys.used, on_error)
                raise error from None
            if isinstance(exc, BackendError) and key_budget is not None and key_budget.refused is not None \
                    and keys.used is None:
                # No key was sent with: the per-key budgets held them back (not the backend's failure).
                refused = key_budget.refused
                self._record(outcome, target, request, BackendError("rate_limited", refused.message), 0.0, None,
                             on_error)
                raise refused from None
            if isinstance(exc, BackendError):
                exc.backend = exc.backend or target.backend
                self._record(outcome, target, request, exc, started, keys.used, on_error)
                if self.health is not None:
                    self.health.record(target.backend, False, exc.kind, model)
            raise
        # The first byte (a stream's first event, a whole reply) is here: what fastest(...) ranks by.
        elapsed = time.perf_counter() - started
        stats.observe_ttfb(key, elapsed)
        outcome.flight = (stats, key)  # in flight until the reply ends (Outcome.release)
        outcome.key_id = keys.used
        outcome.attempts.append(Attempt(target.backend, model, "ok", round(elapsed * 1000, 3), keys.used,
                                        picked_by=outcome.picks.get(target) if outcome.picks else None,
                                        on_error=on_error))
        if self.health is not None:
            self.health.record(target.backend, True, None, model)
        return result

    @staticmethod
    def _record(outcome: Outcome, target: ir.Target, request: ChatRequest, exc: BackendError, started: float,
                key_id: str | None, on_error: str | None = None) -> None:
        outcome.attempts.append(Attempt(target.backend, target.model or request.model, exc.kind,
                                        _ms(started) if started else 0.0, key_id, exc.message,
                                        outcome.picks.get(target) if outcome.picks else None, on_error))


def _restore_custom_calls(result: ChatResponse | StreamStarted, names: frozenset[str]) -> ChatResponse | StreamStarted:
    """Calls of the client's freeform tools made custom again when the provider could only call
    them as functions (``router/wire/custom_tools.py``); nothing to do without such tools."""
    if not names:
        return result
    if isinstance(result, ChatResponse):
        return restore_response(result, names)
    restorer = StreamRestorer(names)
    first = restorer.feed(result.first)
    return StreamStarted(first[0] if first else result.first, _restored(result.events, restorer), result.target)


async def _restored(events: AsyncIterator[StreamEvent], restorer: StreamRestorer) -> AsyncIterator[StreamEvent]:
    try:
        async for event in events:
            for out in restorer.feed(event):
                yield out
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()


def request_settings(overrides: tuple[tuple[str, ir.Scalar], ...]) -> dict[str, int | float]:
    """A rule's ``set:`` values as :class:`ChatRequest` fields (``max_tokens`` an int, the others floats)."""
    return {key: int(value) if key == "max_tokens" else float(value) for key, value in overrides}


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


@dataclass(slots=True)
class _Walk:
    """One request's walk over its chain (and its ``on:`` fallback): what every target shares."""

    request: ChatRequest
    outcome: Outcome
    stream: bool
    scopes: Mapping[str, str | None]
    governed: TargetRules | None
    per_backend: list[ir.Limit]
    per_key: list[ir.Limit]
    deadline: float
    last: BackendError | None = None
    local_rejection: Rejection | None = None
    on_error: str | None = None
    # The session and caller limits, acquired with the first target's own (one round trip to a
    # shared store), then held across the walk.
    shared: list[tuple[ir.Limit, str]] = field(default_factory=list)
    budget: "BudgetGateLike | None" = None  # the request's budgets (router/pipeline/budget.py)
    budget_refusal: BudgetExceeded | None = None  # the last target a budget refused


class RateLimited(ProxyError):
    """One of the plan's own limits refused the request (not a provider's 429)."""

    def __init__(self, rejection: Rejection) -> None:
        seconds = max(1, int(rejection.retry_after + 0.999))
        super().__init__(429, f"{rejection.describe()}; retry in {seconds}s", "rate_limit",
                         headers={"Retry-After": str(seconds)})
        self.rejection = rejection


def _limited(rejection: Rejection) -> ProxyError:
    return RateLimited(rejection)


def to_proxy_error(exc: BackendError | None, attempts: int) -> ProxyError:
    if exc is None:
        return ProxyError(502, "no backend target to try", "api_error")
    tried = f" (after {attempts} attempts)" if attempts > 1 else ""
    status = exc.status if exc.kind in ("bad_request", "not_found") and exc.status else STATUS_FOR_KIND[exc.kind]
    headers = {"Retry-After": str(max(1, int(exc.retry_after + 0.999)))} if exc.retry_after else {}
    prefix = f"{exc.backend}: " if exc.backend else ""
    return ProxyError(status, f"{prefix}{exc.message}{tried}", PROXY_KIND[exc.kind], headers=headers)
