"""Dispatch walking a plan's failover chain against real connectors and the fake provider.

Matrix: error class (connection, timeout, 429, 500, 503, 401, 400) x position in the chain (first
of two, last) x stream / non-stream. Retryable errors fail over, client errors do not; after the
first stream event nothing is retried; transient errors get bounded retries with backoff; every
attempt is recorded with a key id, never the key.
"""

from __future__ import annotations

import asyncio
import random
import socket
from typing import Any

import pytest

from backends.base import BackendError
from backends.keys import key_label
from dsl import ir
from dsl.evaluate import Plan
from fakes.provider import FakeProvider, delay, error, reply, reset_after_chunks, stream_error
from router.wire.canonical import StreamEnd, StreamError, StreamStart
from router.pipeline.dispatch import Dispatcher, Outcome, RetryPolicy, ordered_targets
from router.errors import ProxyError

from fakes.connectors import OPENAI_KEY, backend_settings, chat, collect, fold


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def backends(build, fake: FakeProvider) -> dict[str, Any]:
    dead = backend_settings("openai", fake)
    dead["base_url"] = f"http://127.0.0.1:{free_port()}/v1"
    slow = backend_settings("openai", fake, timeout={"connect": 1, "first_byte": 0.3, "idle": 0.3})
    fake.on_model("m-slow", delay(3))
    return await build(good=backend_settings("openai", fake), dead=dead, slow=slow,
                       other=backend_settings("anthropic", fake), gem=backend_settings("gemini", fake))


class RecordingRandom(random.Random):
    def __init__(self) -> None:
        super().__init__(7)
        self.bounds: list[float] = []

    def uniform(self, a: float, b: float) -> float:
        self.bounds.append(b)
        return super().uniform(a, b) * 0.01  # keep the test fast; the bound is what we check


def dispatcher(backends: dict[str, Any], retries: int = 1, **kwargs: Any) -> Dispatcher:
    return Dispatcher(backends, retry=RetryPolicy(retries=retries, base_delay=0.01, max_delay=0.05),
                      rng=kwargs.pop("rng", None) or RecordingRandom(), **kwargs)


def plan(*targets: ir.Target, limits: tuple[ir.Limit, ...] = ()) -> Plan:
    return Plan(chain=tuple(targets), limits=limits)


async def run(d: Dispatcher, p: Plan, stream: bool, text: str = "hello", outcome: Outcome | None = None,
              scopes: dict[str, str] | None = None) -> tuple[Any, Outcome]:
    """The reply text (stream: folded events) and the outcome; ProxyError propagates."""
    outcome = outcome or Outcome()
    if stream:
        started = await d.stream(p, chat(text, stream=True), outcome, scopes)
        events = [started.first] + await collect(started.events)
        return fold(events), outcome
    return await d.complete(p, chat(text), outcome, scopes), outcome


# error class -> (failing target, proxy status, attempts made on it with retries=1, attempt status)
ERRORS: dict[str, tuple[ir.Target, int, int, str]] = {
    "connection": (ir.Target("dead", "fake-model"), 502, 2, "connection"),
    "timeout": (ir.Target("slow", "m-slow"), 504, 1, "timeout"),
    "429": (ir.Target("good", "fail-429"), 429, 1, "rate_limited"),
    "500": (ir.Target("good", "fail-500"), 502, 2, "server"),
    "503": (ir.Target("good", "fail-503"), 503, 2, "overloaded"),
    "401": (ir.Target("good", "fail-401"), 502, 1, "auth"),
    "400": (ir.Target("good", "fail-400"), 400, 1, "bad_request"),
}
FALLBACK = ir.Target("other", "fake-model")  # a different connector (Anthropic) as the next link


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("error_class", list(ERRORS))
async def test_failure_first_of_two(backends, fake: FakeProvider, error_class: str, stream: bool) -> None:
    failing, status, tries, kind = ERRORS[error_class]
    d = dispatcher(backends)
    outcome = Outcome()
    if error_class == "400":
        with pytest.raises(ProxyError) as info:
            await run(d, plan(failing, FALLBACK), stream, outcome=outcome)
        assert info.value.status == 400
        assert fake.calls(family="anthropic") == []  # a client error is not tried elsewhere
        assert [a.status for a in outcome.attempts] == ["bad_request"]
        return
    result, outcome = await run(d, plan(failing, FALLBACK), stream, "fail over please", outcome)
    assert result.text() == "fail over please"
    assert outcome.target == FALLBACK
    assert [(a.backend, a.model, a.status) for a in outcome.attempts] == \
        [(failing.backend, failing.model, kind)] * tries + [("other", "fake-model", "ok")]
    assert len(fake.calls(family="anthropic")) == 1


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("error_class", list(ERRORS))
async def test_failure_last_in_chain(backends, fake: FakeProvider, error_class: str, stream: bool) -> None:
    failing, status, tries, kind = ERRORS[error_class]
    d = dispatcher(backends, retries=0)
    first = ir.Target("good", "fail-502")
    outcome = Outcome()
    with pytest.raises(ProxyError) as info:
        await run(d, plan(first, failing), stream, outcome=outcome)
    exc = info.value
    assert exc.status == status
    assert exc.message.startswith(f"{failing.backend}: ")
    assert [a.status for a in outcome.attempts] == ["server", kind]
    assert "(after 2 attempts)" in exc.message
    if error_class == "429":
        assert exc.kind == "rate_limit"
    if error_class == "timeout":
        assert exc.kind == "timeout"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_429_retry_after_reaches_the_client(backends, fake: FakeProvider, stream: bool) -> None:
    fake.enqueue(error(429, retry_after=12), model="fake-model")
    with pytest.raises(ProxyError) as info:
        await run(dispatcher(backends), plan(ir.Target("good", "fake-model")), stream)
    assert info.value.status == 429 and info.value.headers["Retry-After"] == "12"


async def test_provider_message_passes_through_redacted(backends, fake: FakeProvider) -> None:
    fake.enqueue(error(400, message=f"context too long for key {OPENAI_KEY}"), model="fake-model")
    with pytest.raises(ProxyError) as info:
        await run(dispatcher(backends), plan(ir.Target("good", "fake-model")), False)
    assert info.value.status == 400 and info.value.kind == "invalid_request"
    assert "context too long" in info.value.message and OPENAI_KEY not in info.value.message


@pytest.mark.parametrize("n", [1, 3])
async def test_after_first_event_nothing_is_retried(backends, fake: FakeProvider, n: int) -> None:
    fake.enqueue(reset_after_chunks(n), model="fake-model")
    d = dispatcher(backends, retries=2)
    outcome = Outcome()
    started = await d.stream(plan(ir.Target("good", "fake-model"), FALLBACK), chat(stream=True), outcome)
    assert isinstance(started.first, StreamStart)
    assert started.target == ir.Target("good", "fake-model")
    with pytest.raises(BackendError) as info:
        await asyncio.wait_for(collect(started.events), 5)
    assert info.value.kind == "connection"
    assert fake.calls(family="anthropic") == []  # never spliced onto another backend
    assert len(fake.generations) == 1  # never retried
    assert [a.status for a in outcome.attempts] == ["ok"]


async def test_in_stream_error_event_is_not_retried(backends, fake: FakeProvider) -> None:
    fake.enqueue(stream_error(after_chunks=2, message="Overloaded"), model="fake-model")
    outcome = Outcome()
    started = await dispatcher(backends).stream(plan(ir.Target("good", "fake-model"), FALLBACK), chat(stream=True),
                                                outcome)
    events = await collect(started.events)
    assert isinstance(events[-1], StreamError)
    assert len(fake.generations) == 1


@pytest.mark.parametrize("error_kind,attempt_status,tries", [("overloaded", "overloaded", 2),
                                                             ("rate_limit", "rate_limited", 1)])
async def test_stream_error_as_first_event_fails_over(backends, fake: FakeProvider, error_kind: str,
                                                      attempt_status: str, tries: int) -> None:
    """Gemini can answer 200 and then an error frame before any content: nothing reached the
    client yet, so this is a failure of the target like any other."""
    fake.on_model("fake-model", stream_error(after_chunks=0, message="busy", kind=error_kind))
    outcome = Outcome()
    started = await dispatcher(backends).stream(plan(ir.Target("gem", "fake-model"), FALLBACK), chat(stream=True),
                                                outcome)
    assert started.target == FALLBACK
    assert [a.status for a in outcome.attempts] == [attempt_status] * tries + ["ok"]
    assert outcome.attempts[0].error == "busy"
    await collect(started.events)


async def test_stream_error_as_first_event_last_target(backends, fake: FakeProvider) -> None:
    fake.on_model("fake-model", stream_error(after_chunks=0, message="model is overloaded", kind="overloaded"))
    with pytest.raises(ProxyError) as info:
        await dispatcher(backends, retries=0).stream(plan(ir.Target("gem", "fake-model")), chat(stream=True), Outcome())
    assert info.value.status == 503 and "model is overloaded" in info.value.message
    rec = await fake.last.wait()  # the exchange ended: the proxy did not keep the connection
    # Asked once (no retries), and it failed before any content. Whether the fake finished writing
    # or saw the proxy hang up first is a race between the two sides' closes, so neither is asserted.
    assert len(fake.generations) == 1 and rec.behaviour == "stream_error" and rec.chunks_sent == 0


async def test_stream_request_flag_follows_the_call(backends, fake: FakeProvider) -> None:
    """``stream()`` streams and ``complete()`` does not, whatever the request's own flag says."""
    d = dispatcher(backends)
    started = await d.stream(plan(ir.Target("good", "fake-model")), chat("s", stream=False), Outcome())
    events = [started.first] + await collect(started.events)
    assert isinstance(events[-1], StreamEnd) and fold(events).text() == "s"
    assert fake.last.body.get("stream") is True
    response = await d.complete(plan(ir.Target("good", "fake-model")), chat("c", stream=True), Outcome())
    assert response.text() == "c" and "stream" not in fake.last.body


async def test_bounded_retries_with_backoff(backends, fake: FakeProvider) -> None:
    rng = RecordingRandom()
    d = dispatcher(backends, retries=3, rng=rng)
    outcome = Outcome()
    with pytest.raises(ProxyError) as info:
        await run(d, plan(ir.Target("good", "fail-500")), False, outcome=outcome)
    assert info.value.status == 502 and "(after 4 attempts)" in info.value.message
    assert len(fake.generations) == 4
    assert rng.bounds == [0.01, 0.02, 0.04]  # exponential, full jitter below the bound


async def test_backoff_is_capped(backends, fake: FakeProvider) -> None:
    rng = RecordingRandom()
    d = Dispatcher(backends, retry=RetryPolicy(retries=4, base_delay=0.01, max_delay=0.03), rng=rng)
    with pytest.raises(ProxyError):
        await run(d, plan(ir.Target("good", "fail-503")), False)
    assert rng.bounds == [0.01, 0.02, 0.03, 0.03]


async def test_transient_error_then_success_on_same_target(backends, fake: FakeProvider) -> None:
    fake.enqueue(error(500), model="fake-model")
    result, outcome = await run(dispatcher(backends), plan(ir.Target("good", "fake-model"), FALLBACK), False, "again")
    assert result.text() == "again"
    assert [(a.backend, a.status) for a in outcome.attempts] == [("good", "server"), ("good", "ok")]


@pytest.mark.parametrize("error_class", ["429", "401", "timeout"])
async def test_no_same_target_retry_for_non_transient(backends, fake: FakeProvider, error_class: str) -> None:
    failing = ERRORS[error_class][0]
    _, outcome = await run(dispatcher(backends, retries=3), plan(failing, FALLBACK), False)
    assert [a.status for a in outcome.attempts][:-1] == [ERRORS[error_class][3]]


async def test_overall_deadline(backends, fake: FakeProvider) -> None:
    d = dispatcher(backends, deadline=0.4)
    slow2 = ir.Target("slow", "m-slow")
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ProxyError) as info:
        await run(d, plan(slow2, slow2, slow2, FALLBACK), False)
    assert info.value.status == 504 and "proxy_timeout" in info.value.message
    assert loop.time() - started < 1.2
    assert fake.calls(family="anthropic") == []


async def test_attempts_record_key_id_never_key(backends, fake: FakeProvider) -> None:
    fake.enqueue(error(503), error(503), model="fake-model")
    _, outcome = await run(dispatcher(backends), plan(ir.Target("good", "fake-model"), ir.Target("other")), False)
    assert [(a.backend, a.model, a.status) for a in outcome.attempts] == [
        ("good", "fake-model", "overloaded"), ("good", "fake-model", "overloaded"), ("other", "fake-model", "ok")]
    assert outcome.attempts[0].key_id == key_label(OPENAI_KEY)
    assert outcome.attempts[2].key_id == key_label("sk-ant-fake")
    assert all(a.latency_ms >= 0 for a in outcome.attempts)
    assert "503" in (outcome.attempts[0].error or "")
    for attempt in outcome.attempts:
        assert OPENAI_KEY not in repr(attempt) and "sk-ant-fake" not in repr(attempt)


async def test_target_without_model_uses_requested_model(backends, fake: FakeProvider) -> None:
    result, outcome = await run(dispatcher(backends), plan(ir.Target("good")), False, "plain")
    assert fake.last.model == "fake-model" and outcome.attempts[0].model == "fake-model"


async def test_unknown_backend_in_chain(backends, fake: FakeProvider) -> None:
    outcome = Outcome()
    with pytest.raises(ProxyError) as info:
        await run(dispatcher(backends), plan(ir.Target("nope", "x")), False, outcome=outcome)
    assert info.value.status == 400 and "nope" in info.value.message and "good" in info.value.message
    assert outcome.attempts[0].status == "bad_request"


async def test_empty_chain(backends) -> None:
    with pytest.raises(ProxyError) as info:
        await run(dispatcher(backends), Plan(chain=()), False)
    assert info.value.status == 502


async def test_group_order_is_weighted_and_complete(backends, fake: FakeProvider) -> None:
    group = ir.Group((ir.Member(ir.Target("good", "a"), 1.0), ir.Member(ir.Target("good", "b"), 1000.0),
                      ir.Member(ir.Target("good", "c"))))
    p = Plan(chain=(group, ir.Target("other")))
    rng = random.Random(1)
    firsts = [ordered_targets(p, rng)[0].model for _ in range(200)]
    assert firsts.count("b") > 190
    order = ordered_targets(p, rng)
    assert sorted(t.model or "" for t in order[:3]) == ["a", "b", "c"] and order[3] == ir.Target("other")
    fake.on_model("b", reply("from b"))
    result, _ = await run(dispatcher(backends, rng=random.Random(3)), p, False)
    assert result.text() in ("hello", "from b")
