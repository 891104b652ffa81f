"""Carrying out a plan: walk the failover chain until a target answers.

Failover happens only before the first byte reaches the client: for streams, the first event is
pulled from the backend here, and only then does the caller start the HTTP response. Once a
stream has started, a failure ends it with an error event (see ``pipeline``), never a splice.
"""

from __future__ import annotations

import dataclasses
import random
import time
from dataclasses import dataclass, field
from typing import AsyncIterator, Mapping

from backends.base import PROXY_KIND, STATUS_FOR_KIND, Backend, BackendError
from dsl import ir
from dsl.evaluate import Plan

from .canonical import ChatRequest, ChatResponse, StreamEvent
from .errors import ProxyError


@dataclass(slots=True)
class Attempt:
    """One try of one target, for usage records and logs (never holds a key)."""

    backend: str
    model: str
    status: str  # "ok" or an error kind
    latency_ms: float
    error: str | None = None


@dataclass(slots=True)
class StreamStarted:
    first: StreamEvent
    events: AsyncIterator[StreamEvent]
    target: ir.Target


@dataclass(slots=True)
class Outcome:
    target: ir.Target | None = None
    attempts: list[Attempt] = field(default_factory=list)


def ordered_targets(plan: Plan, rng: random.Random) -> list[ir.Target]:
    """Chain order; a group is shuffled by weight (weighted sampling without replacement)."""
    out: list[ir.Target] = []
    for link in plan.chain:
        if isinstance(link, ir.Target):
            out.append(link)
            continue
        members = list(link.members)
        while members:
            weights = [m.weight if m.weight is not None else 1.0 for m in members]
            pick = rng.choices(range(len(members)), weights=weights)[0]
            out.append(members.pop(pick).target)
    return out


class Dispatcher:
    def __init__(self, backends: Mapping[str, Backend], rng: random.Random | None = None) -> None:
        self.backends = backends
        self.rng = rng or random.Random()

    def _backend(self, target: ir.Target) -> Backend:
        backend = self.backends.get(target.backend)
        if backend is None:
            raise BackendError("bad_request", f"unknown backend {target.backend!r}; configured: "
                                              + ", ".join(sorted(self.backends)), backend=target.backend)
        return backend

    async def complete(self, plan: Plan, request: ChatRequest, outcome: Outcome) -> ChatResponse:
        return await self._walk(plan, request, outcome, stream=False)  # type: ignore[return-value]

    async def stream(self, plan: Plan, request: ChatRequest, outcome: Outcome) -> StreamStarted:
        return await self._walk(plan, request, outcome, stream=True)  # type: ignore[return-value]

    async def _walk(self, plan: Plan, request: ChatRequest, outcome: Outcome, stream: bool) -> ChatResponse | StreamStarted:
        last: BackendError | None = None
        for target in ordered_targets(plan, self.rng):
            started = time.perf_counter()
            model = target.model or request.model
            try:
                backend = self._backend(target)
                attempt_request = dataclasses.replace(request, model=model)
                if stream:
                    events = backend.stream(attempt_request).__aiter__()
                    try:
                        first = await events.__anext__()
                    except StopAsyncIteration:
                        raise BackendError("server", "the backend closed the stream without a reply") from None
                    result: ChatResponse | StreamStarted = StreamStarted(first, events, target)
                else:
                    result = await backend.complete(attempt_request)
            except BackendError as exc:
                exc.backend = exc.backend or target.backend
                outcome.attempts.append(Attempt(target.backend, model, exc.kind, _ms(started), exc.message))
                last = exc
                if not exc.retryable:
                    break
                continue
            outcome.attempts.append(Attempt(target.backend, model, "ok", _ms(started)))
            outcome.target = target
            return result
        raise to_proxy_error(last, len(outcome.attempts))


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def to_proxy_error(exc: BackendError | None, attempts: int) -> ProxyError:
    if exc is None:
        return ProxyError(502, "no backend target to try", "api_error")
    tried = f" (after {attempts} attempt{'s' if attempts != 1 else ''})" if attempts > 1 else ""
    status = exc.status if exc.kind in ("bad_request", "not_found") and exc.status else STATUS_FOR_KIND[exc.kind]
    headers = {"Retry-After": str(max(1, int(exc.retry_after + 0.999)))} if exc.retry_after else {}
    prefix = f"{exc.backend}: " if exc.backend else ""
    return ProxyError(status, f"{prefix}{exc.message}{tried}", PROXY_KIND[exc.kind], headers=headers)
