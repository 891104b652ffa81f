"""The circuit breaker in dispatch: a failing backend is skipped, probed again later, and used
anyway when every target of the chain is open."""

from __future__ import annotations

from typing import AsyncIterator

import pytest

from backends.base import Backend, BackendError
from backends.echo import EchoBackend
from backends.keys import KeyChoice
from dsl import ir
from dsl.evaluate import Plan
from router.wire.canonical import ChatRequest, ChatResponse, Message, StreamEvent, TextPart
from router.errors import ProxyError
from router.pipeline.dispatch import Dispatcher, Outcome
from router.http.health import HealthMonitor


class Flaky(Backend):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.calls = 0
        self.failing = True

    async def complete(self, request: ChatRequest, keys: KeyChoice | None = None) -> ChatResponse:
        self.calls += 1
        if self.failing:
            raise BackendError("connection", "refused", backend=self.name)
        return ChatResponse(id="x", model=request.model, parts=[TextPart("flaky ok")])

    async def stream(self, request: ChatRequest,
                     keys: KeyChoice | None = None) -> AsyncIterator[StreamEvent]:  # pragma: no cover
        raise BackendError("connection", "refused")
        yield


def request() -> ChatRequest:
    return ChatRequest(model="m", messages=[Message("user", [TextPart("hi")])])


async def test_open_circuit_skips_then_half_open_probe_closes_it() -> None:
    now = [0.0]
    flaky = Flaky("flaky")
    dispatcher = Dispatcher({"flaky": flaky, "echo": EchoBackend("echo")})
    dispatcher.retry = type(dispatcher.retry)(retries=0)
    monitor = HealthMonitor(ref=None, metrics=None, failure_threshold=2, open_seconds=30, clock=lambda: now[0])  # type: ignore[arg-type]
    dispatcher.health = monitor
    plan = Plan(chain=(ir.Target("flaky", "m"), ir.Target("echo", "m")))

    for _ in range(2):  # two failures, each failing over to echo
        outcome = Outcome()
        reply = await dispatcher.complete(plan, request(), outcome)
        assert reply.text() == "hi" and [a.status for a in outcome.attempts] == ["connection", "ok"]
    assert flaky.calls == 2
    outcome = Outcome()  # circuit open: flaky is not even called
    await dispatcher.complete(plan, request(), outcome)
    assert [a.status for a in outcome.attempts] == ["circuit_open", "ok"] and flaky.calls == 2

    now[0] = 31.0  # half-open: one probe goes through, succeeds, the circuit closes
    flaky.failing = False
    outcome = Outcome()
    assert (await dispatcher.complete(plan, request(), outcome)).text() == "flaky ok"
    assert monitor.circuits.get("flaky", "") is None and monitor.circuits.get("flaky", "m") is None


async def test_all_targets_open_are_tried_anyway() -> None:
    now = [0.0]
    flaky = Flaky("flaky")
    dispatcher = Dispatcher({"flaky": flaky})
    dispatcher.retry = type(dispatcher.retry)(retries=0)
    monitor = HealthMonitor(ref=None, metrics=None, failure_threshold=1, open_seconds=30, clock=lambda: now[0])  # type: ignore[arg-type]
    dispatcher.health = monitor
    plan = Plan(chain=(ir.Target("flaky", "m"),))
    # the first failure opens the circuit; the second call notes it open and tries the target anyway
    for expected_calls, attempts in ((1, ["connection"]), (2, ["circuit_open", "connection"])):
        outcome = Outcome()
        with pytest.raises(ProxyError) as info:
            await dispatcher.complete(plan, request(), outcome)
        assert info.value.status == 502 and "refused" in info.value.message
        assert [a.status for a in outcome.attempts] == attempts
        assert flaky.calls == expected_calls  # open, but the only target: still tried
