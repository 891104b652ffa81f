"""Rate limits from the plan, enforced by dispatch with the in-process limiter and a fake clock:
rpm / tpm / concurrency scoped per backend, session, caller and key. Exceeding a limit is a 429 with
Retry-After when there is no next target, and a failover when the chain has one (backend scope)."""

from __future__ import annotations

from typing import Any

import pytest

from dsl import ir
from dsl.evaluate import Plan
from fakes.provider import FakeProvider, stream_chunks
from router.pipeline.dispatch import Dispatcher, Outcome, RetryPolicy
from router.errors import ProxyError
from router.limits import InProcessLimiter

from .conftest import backend_settings, chat, collect


class Clock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


GOOD = ir.Target("good", "fake-model")
OTHER = ir.Target("other", "fake-model")


@pytest.fixture
async def backends(build, fake: FakeProvider) -> dict[str, Any]:
    keyed = backend_settings("openai", fake, api_keys=["sk-limit-key-one-111", "sk-limit-key-two-222"])
    keyed.pop("api_key")
    fake.keys["openai"] |= {"sk-limit-key-one-111", "sk-limit-key-two-222"}
    return await build(good=backend_settings("openai", fake), other=backend_settings("anthropic", fake), keyed=keyed)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def d(backends: dict[str, Any], clock: Clock) -> Dispatcher:
    return Dispatcher(backends, limiter=InProcessLimiter(clock), retry=RetryPolicy(retries=0))


def limit(kind: str, amount: int, per: str = "backend") -> ir.Limit:
    return ir.Limit(kind, amount, per)  # type: ignore[arg-type]


async def call(d: Dispatcher, *targets: ir.Target, limits: tuple[ir.Limit, ...], tokens: int = 0,
               scopes: dict[str, str] | None = None, release: bool = True) -> Outcome:
    outcome = Outcome()
    await d.complete(Plan(chain=targets, limits=limits), chat(), outcome, scopes)
    if release:
        outcome.release(tokens)
    return outcome


async def rejected(d: Dispatcher, *targets: ir.Target, limits: tuple[ir.Limit, ...],
                   scopes: dict[str, str] | None = None) -> ProxyError:
    outcome = Outcome()
    with pytest.raises(ProxyError) as info:
        await d.complete(Plan(chain=targets, limits=limits), chat(), outcome, scopes)
    assert outcome.reservations == []  # nothing left held after a failure
    return info.value


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_rpm_backend_exceeded_gives_429_with_retry_after(d: Dispatcher, fake: FakeProvider, clock: Clock,
                                                               stream: bool) -> None:
    limits = (limit("rpm", 2),)
    await call(d, GOOD, limits=limits)
    await call(d, GOOD, limits=limits)
    outcome = Outcome()
    with pytest.raises(ProxyError) as info:
        if stream:
            await d.stream(Plan(chain=(GOOD,), limits=limits), chat(stream=True), outcome)
        else:
            await d.complete(Plan(chain=(GOOD,), limits=limits), chat(), outcome)
    exc = info.value
    assert exc.status == 429 and exc.kind == "rate_limit"
    assert exc.headers["Retry-After"] == "30"  # one request of two per minute refills in 30 s
    assert "rpm(2)" in exc.message and "good" in exc.message
    assert len(fake.generations) == 2  # the provider was not asked
    assert [a.status for a in outcome.attempts] == ["rate_limited"]
    clock.now += 30
    await call(d, GOOD, limits=limits)
    assert len(fake.generations) == 3


async def test_rpm_backend_fails_over_to_next_target(d: Dispatcher, fake: FakeProvider) -> None:
    limits = (limit("rpm", 1),)
    await call(d, GOOD, OTHER, limits=limits)
    outcome = await call(d, GOOD, OTHER, limits=limits)
    assert [(a.backend, a.status) for a in outcome.attempts] == [("good", "rate_limited"), ("other", "ok")]
    assert outcome.target == OTHER
    # both backends are now at their limit: 429 for the chain
    exc = await rejected(d, GOOD, OTHER, limits=limits)
    assert exc.status == 429 and "Retry-After" in exc.headers


async def test_rpm_amounts_are_separate_buckets(d: Dispatcher) -> None:
    await call(d, GOOD, limits=(limit("rpm", 1), limit("rpm", 5)))
    exc = await rejected(d, GOOD, limits=(limit("rpm", 1), limit("rpm", 5)))
    assert "rpm(1)" in exc.message
    await call(d, GOOD, limits=(limit("rpm", 5),))  # the rpm(5) bucket was not drained by the rejection


async def test_tpm_debited_from_real_usage_on_release(d: Dispatcher, clock: Clock) -> None:
    limits = (limit("tpm", 100),)
    outcome = await call(d, GOOD, limits=limits, release=False)
    # while the reply is running, the bucket is still full: a second request may start
    await call(d, GOOD, limits=limits, tokens=0)
    outcome.release(150)  # the real usage when the response ended
    exc = await rejected(d, GOOD, limits=limits)
    assert exc.status == 429 and "tpm(100)" in exc.message
    assert exc.headers["Retry-After"] == "31"  # 51 tokens short at 100 per minute = 30.6 s
    clock.now += 31
    await call(d, GOOD, limits=limits)


async def test_tpm_fails_over_when_chain_has_next(d: Dispatcher) -> None:
    limits = (limit("tpm", 10),)
    await call(d, GOOD, limits=limits, tokens=50)
    outcome = await call(d, GOOD, OTHER, limits=limits)
    assert outcome.target == OTHER


async def test_concurrency_held_until_stream_ends(d: Dispatcher, fake: FakeProvider) -> None:
    limits = (limit("concurrency", 1),)
    fake.enqueue(stream_chunks(["a", "b", "c"]), model="fake-model")
    outcome = Outcome()
    started = await d.stream(Plan(chain=(GOOD,), limits=limits), chat(stream=True), outcome)
    exc = await rejected(d, GOOD, limits=limits)
    assert exc.status == 429 and "concurrency(1)" in exc.message and exc.headers["Retry-After"] == "1"
    await collect(started.events)
    outcome.release(10)  # what the pipeline does when the stream ends
    await call(d, GOOD, limits=limits)


async def test_concurrency_fails_over_while_busy(d: Dispatcher) -> None:
    limits = (limit("concurrency", 1),)
    busy = await call(d, GOOD, limits=limits, release=False)
    outcome = await call(d, GOOD, OTHER, limits=limits)
    assert outcome.target == OTHER
    busy.release()
    assert (await call(d, GOOD, OTHER, limits=limits)).target == GOOD


async def test_failed_target_releases_its_concurrency(d: Dispatcher, fake: FakeProvider) -> None:
    """A target that failed and was left behind must not keep its slot while the next one answers."""
    limits = (limit("concurrency", 1),)
    failing = ir.Target("good", "fail-500")
    held = await call(d, failing, OTHER, limits=limits, release=False)
    assert held.target == OTHER
    outcome = await call(d, GOOD, limits=limits)  # 'good' has nothing in flight any more
    assert outcome.target == GOOD
    held.release()


async def test_error_releases_everything(d: Dispatcher) -> None:
    limits = (limit("concurrency", 1), limit("concurrency", 1, "session"))
    scopes = {"session": "s1"}
    await rejected(d, ir.Target("good", "fail-400"), limits=limits, scopes=scopes)
    await call(d, GOOD, limits=limits, scopes=scopes)


@pytest.mark.parametrize("per", ["session", "caller"])
async def test_shared_scope_limits(d: Dispatcher, fake: FakeProvider, per: str, clock: Clock) -> None:
    limits = (limit("rpm", 1, per),)
    await call(d, GOOD, OTHER, limits=limits, scopes={per: "alice"})
    # a session/caller limit is not a backend's: failing over would not help
    exc = await rejected(d, GOOD, OTHER, limits=limits, scopes={per: "alice"})
    assert exc.status == 429 and exc.headers["Retry-After"] == "60" and f"per {per}" in exc.message
    await call(d, GOOD, limits=limits, scopes={per: "bob"})  # someone else is unaffected
    assert len(fake.generations) == 2
    clock.now += 60
    await call(d, GOOD, limits=limits, scopes={per: "alice"})


async def test_shared_scope_rejection_does_not_charge_other_limits(d: Dispatcher) -> None:
    limits = (limit("rpm", 1, "session"), limit("rpm", 1, "backend"))
    await call(d, GOOD, limits=limits, scopes={"session": "a"})
    await rejected(d, GOOD, limits=limits, scopes={"session": "a"})
    exc = await rejected(d, GOOD, limits=limits, scopes={"session": "b"})
    assert "per backend" in exc.message  # the backend limit: one request made, one rejected uncharged


async def test_per_key_limit_rotates_keys_then_rejects(d: Dispatcher, fake: FakeProvider) -> None:
    keyed = ir.Target("keyed", "fake-model")
    limits = (limit("rpm", 1, "key"),)
    o1 = await call(d, keyed, limits=limits)
    o2 = await call(d, keyed, limits=limits)
    assert {r.api_key for r in fake.generations} == {"sk-limit-key-one-111", "sk-limit-key-two-222"}
    assert o1.attempts[0].key_id != o2.attempts[0].key_id
    exc = await rejected(d, keyed, limits=limits)
    assert exc.status == 429 and "per-key rate limits" in exc.message and "Retry-After" in exc.headers
    assert len(fake.generations) == 2
    o3 = await call(d, keyed, OTHER, limits=limits)  # fails over when there is a next target
    assert o3.target == OTHER


def test_limiter_all_or_nothing(clock: Clock) -> None:
    limiter = InProcessLimiter(clock)
    a, b = limit("rpm", 1), limit("concurrency", 1, "session")
    held = limiter.acquire([(b, "s")])
    result = limiter.acquire([(a, "x"), (b, "s")])
    assert not hasattr(result, "release")  # a Rejection
    held.release()  # type: ignore[union-attr]
    ok = limiter.acquire([(a, "x"), (b, "s")])
    assert hasattr(ok, "release")  # the rpm bucket was not charged by the rejected try


def test_limiter_release_is_idempotent(clock: Clock) -> None:
    limiter = InProcessLimiter(clock)
    lim = limit("concurrency", 2)
    r1, r2 = limiter.acquire([(lim, "x")]), limiter.acquire([(lim, "x")])
    r1.release()  # type: ignore[union-attr]
    r1.release()  # type: ignore[union-attr]
    assert hasattr(limiter.acquire([(lim, "x")]), "release")
    assert not hasattr(limiter.acquire([(lim, "x")]), "release")
    r2.release()  # type: ignore[union-attr]


async def test_deadline_releases_limits(backends, fake: FakeProvider, build, clock: Clock) -> None:
    from fakes.provider import delay

    slow = (await build(slow=backend_settings("openai", fake, timeout={"first_byte": 0.2})))["slow"]
    d = Dispatcher({**backends, "slow": slow}, limiter=InProcessLimiter(clock), retry=RetryPolicy(retries=0),
                   deadline=0.1)
    fake.on_model("m-slow", delay(2))
    limits = (limit("concurrency", 1, "session"),)
    outcome = Outcome()
    with pytest.raises(ProxyError) as info:
        await d.complete(Plan(chain=(ir.Target("slow", "m-slow"), GOOD), limits=limits), chat(), outcome,
                         {"session": "s"})
    assert info.value.status == 504
    assert outcome.reservations == []
    await call(d, GOOD, limits=limits, scopes={"session": "s"})


async def test_cancelled_request_releases_limits(d: Dispatcher, fake: FakeProvider) -> None:
    import asyncio

    from fakes.provider import delay

    fake.enqueue(delay(2), model="fake-model")
    limits = (limit("concurrency", 1),)
    task = asyncio.create_task(d.complete(Plan(chain=(GOOD,), limits=limits), chat(), Outcome()))
    while not fake.generations:
        await asyncio.sleep(0.01)
    task.cancel()  # the client hung up while we waited for the provider
    with pytest.raises(asyncio.CancelledError):
        await task
    await call(d, GOOD, limits=limits)


# ---- limits of rules that match only through the target (README "How rules combine", 6) ----------


def governed(rules_text: str, model: str = "asked") -> tuple[Plan, Any]:
    """A plan for a request for ``model`` with no matching rule, and the rules that govern its targets."""
    from dsl import load_rules_text
    from dsl.evaluate import Facts, RuleSet, TargetRules, evaluate

    rules = RuleSet(load_rules_text(rules_text, "r.yaml", ("good", "other", "keyed")).rules)
    facts = Facts.build(model)
    plan = evaluate(facts, rules)
    assert plan.limits == () and plan.governing == ()
    return plan, TargetRules(facts, plan, rules)


async def test_a_targets_key_limit_rotates_keys_then_fails_over(d: Dispatcher, fake: FakeProvider) -> None:
    keyed = ir.Target("keyed", "fake-model")
    plan, rules = governed('rules:\n  - name: k\n    when: backend == "keyed"\n    limits: rpm(1, per=key)\n')
    plan = Plan(chain=(keyed, OTHER))
    targets = []
    for _ in range(3):
        outcome = Outcome()
        await d.complete(plan, chat(), outcome, {}, rules)
        outcome.release()
        targets.append(outcome.target)
    assert targets == [keyed, keyed, OTHER]
    assert {r.api_key for r in fake.generations[:2]} == {"sk-limit-key-one-111", "sk-limit-key-two-222"}


async def test_a_targets_concurrency_is_held_until_the_reply_ends(d: Dispatcher) -> None:
    plan, rules = governed('rules:\n  - name: c\n    when: model == "fake-model"\n'
                           '    limits: concurrency(1, per=caller)\n')
    plan = Plan(chain=(GOOD,))
    busy = Outcome()
    await d.complete(plan, chat(), busy, {"caller": "alice"}, rules)
    with pytest.raises(ProxyError) as info:
        await d.complete(plan, chat(), Outcome(), {"caller": "alice"}, rules)
    assert info.value.status == 429 and "concurrency(1)" in info.value.message
    other_caller = Outcome()
    await d.complete(plan, chat(), other_caller, {"caller": "bob"}, rules)
    busy.release()
    other_caller.release()
    again = Outcome()
    await d.complete(plan, chat(), again, {"caller": "alice"}, rules)
    again.release()


async def test_a_targets_settings_reach_only_that_target(d: Dispatcher, fake: FakeProvider) -> None:
    plan, rules = governed('rules:\n  - name: s\n    when: backend == "good"\n    set: max_tokens=7, temperature=0.1\n')
    plan = Plan(chain=(ir.Target("good", "fail-500"), OTHER))
    request = chat()
    request.max_tokens = 900
    outcome = Outcome()
    await d.complete(plan, request, outcome, {}, rules)
    assert [a.status for a in outcome.attempts][-1] == "ok" and outcome.target == OTHER
    to_good, to_other = fake.generations[0].body, fake.generations[-1].body
    assert (to_good["max_tokens"], to_good["temperature"]) == (7, 0.1)
    assert to_other["max_tokens"] == 900 and "temperature" not in to_other
    assert request.max_tokens == 900  # the client's request itself is left as it was
