"""Group strategies and ``on:`` fallbacks by error class, walked by the dispatcher against real
connectors and the local fake provider.

- ``fastest``: the fake answers one member slower; after each member is measured, requests go to
  the faster one, apart from at most 5% exploration.
- ``least_busy``: a member with a reply in flight is not picked while an idle one exists.
- ``cheapest``: by ``prices`` for the request's estimated tokens; an unpriced member goes last.
- ``on:``: each error class in each provider's own error shape (OpenAI, Anthropic, Gemini) picks
  its fallback; without an ``on:`` entry the chain's usual rules apply (a context-window 400 is
  the client's 400).
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from dsl import ir
from dsl.evaluate import Plan
from fakes.provider import FakeProvider, delay, error, reply
from router.errors import ProxyError
from router.pipeline.dispatch import Dispatcher, Outcome, RetryPolicy

from .conftest import backend_settings, chat, collect, fold


@pytest.fixture
async def backends(build, fake: FakeProvider) -> dict[str, Any]:
    return await build(oa=backend_settings("openai", fake), an=backend_settings("anthropic", fake),
                       ge=backend_settings("gemini", fake), fb=backend_settings("openai", fake))


def dispatcher(backends: dict[str, Any], seed: int = 3) -> Dispatcher:
    return Dispatcher(backends, retry=RetryPolicy(retries=0), rng=random.Random(seed))


def group(strategy: str, *targets: ir.Target) -> ir.Group:
    return ir.Group(tuple(ir.Member(t) for t in targets), strategy=strategy)


async def send(d: Dispatcher, plan: Plan, *, stream: bool = False, text: str = "hello") -> tuple[str, Outcome]:
    outcome = Outcome()
    if stream:
        started = await d.stream(plan, chat(text, stream=True), outcome)
        result = fold([started.first] + await collect(started.events))
    else:
        result = await d.complete(plan, chat(text), outcome)
    outcome.release()
    return result.text(), outcome


FAST, SLOW = ir.Target("oa", "fast-model"), ir.Target("an", "slow-model")


async def test_fastest_goes_to_the_target_with_the_lower_time_to_first_byte(backends, fake: FakeProvider) -> None:
    fake.on_model("slow-model", delay(0.15))
    d = dispatcher(backends)
    plan = Plan(chain=(group("fastest", SLOW, FAST),))
    for _ in range(2):  # unmeasured members go first: both get measured
        await send(d, plan)
    assert d.stats.ttfb("an:slow-model") > d.stats.ttfb("oa:fast-model")
    firsts = []
    for _ in range(40):
        _text, outcome = await send(d, plan)
        firsts.append(outcome.target)
        assert outcome.attempts[0].picked_by in ("fastest", "fastest:explore")
    assert firsts.count(FAST) >= 36  # exploration sends at most a few (5%) to the slow one


async def test_fastest_notices_a_target_that_recovered(backends, fake: FakeProvider) -> None:
    fake.on_model("slow-model", delay(0.2))
    d = dispatcher(backends, seed=1)
    plan = Plan(chain=(group("fastest", SLOW, FAST),))
    for _ in range(2):
        await send(d, plan)
    fake.on_model("slow-model", None)  # recovered
    fake.on_model("fast-model", delay(0.2))  # and the other slowed down
    for _ in range(150):  # the slowed one is measured on every request it gets; exploration finds the other
        await send(d, plan)
        if d.stats.ttfb("an:slow-model") < d.stats.ttfb("oa:fast-model"):
            break
    assert d.stats.ttfb("an:slow-model") < d.stats.ttfb("oa:fast-model")
    targets = [(await send(d, plan))[1].target for _ in range(10)]
    assert targets.count(SLOW) >= 8


async def test_least_busy_avoids_a_target_with_a_reply_in_flight(backends, fake: FakeProvider) -> None:
    d = dispatcher(backends)
    a, b = ir.Target("oa", "model-a"), ir.Target("fb", "model-b")
    plan = Plan(chain=(group("least_busy", a, b),))
    held = Outcome()
    started = await d.stream(plan, chat("long", stream=True), held)  # reply not finished: in flight
    busy = held.target
    for _ in range(5):
        _text, outcome = await send(d, plan)
        assert outcome.target != busy
        assert outcome.attempts[0].picked_by == "least_busy"
    await collect(started.events)
    held.release()
    assert d.stats.in_flight(f"{busy.backend}:{busy.model}") == 0


async def test_cheapest_orders_by_price_and_puts_unpriced_members_last(backends, fake: FakeProvider) -> None:
    d = dispatcher(backends)
    d.prices = {"dear": {"input": 10.0, "output": 30.0}, "cheap": {"input": 0.15, "output": 0.6}}
    dear, cheap, unpriced = ir.Target("oa", "dear"), ir.Target("an", "cheap"), ir.Target("ge", "unpriced")
    plan = Plan(chain=(group("cheapest", unpriced, dear, cheap),))
    for _ in range(5):
        _text, outcome = await send(d, plan)
        assert outcome.target == cheap
    fake.on_model("cheap", error(500))
    fake.on_model("dear", error(500))
    _text, outcome = await send(d, plan)  # the others are fallbacks, in price order
    assert [(a.model, a.status) for a in outcome.attempts] == \
        [("cheap", "server"), ("dear", "server"), ("unpriced", "ok")]
    assert outcome.attempts[0].picked_by == "cheapest"


# ---- on: by error class, each in its provider's own shape --------------------------------------

OPENAI_TOO_LONG = {"error": {"message": "This model's maximum context length is 128000 tokens. However, your "
                             "messages resulted in 130000 tokens.", "type": "invalid_request_error",
                             "param": "messages", "code": "context_length_exceeded"}}
OPENAI_POLICY = {"error": {"message": "Your request was rejected as a result of our safety system.",
                           "type": "invalid_request_error", "param": None, "code": "content_policy_violation"}}
ANTHROPIC_TOO_LONG = {"type": "error", "error": {"type": "invalid_request_error",
                                                 "message": "prompt is too long: 210000 tokens > 200000 maximum"}}
ANTHROPIC_POLICY = {"type": "error", "error": {"type": "invalid_request_error",
                                               "message": "Output blocked by content filtering policy"}}
GEMINI_TOO_LONG = {"error": {"code": 400, "status": "INVALID_ARGUMENT",
                             "message": "The input token count (1200000) exceeds the maximum number of tokens "
                                        "allowed (1048576)."}}
GEMINI_BLOCKED = {"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []},
                  "usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5}}

# (backend, behaviour, error class, the attempt's status) — each provider's own way of saying it
CASES = {
    "openai-context_window": ("oa", error(400, OPENAI_TOO_LONG), "context_window", "bad_request"),
    "openai-content_policy": ("oa", error(400, OPENAI_POLICY), "content_policy", "bad_request"),
    "anthropic-context_window": ("an", error(400, ANTHROPIC_TOO_LONG), "context_window", "bad_request"),
    "anthropic-content_policy": ("an", error(400, ANTHROPIC_POLICY), "content_policy", "bad_request"),
    "gemini-context_window": ("ge", error(400, GEMINI_TOO_LONG), "context_window", "bad_request"),
    "openai-rate_limit": ("oa", error(429, message="Rate limit reached"), "rate_limit", "rate_limited"),
    "anthropic-server_error": ("an", error(500, message="Internal server error"), "server_error", "server"),
    "gemini-auth": ("ge", error(401, message="API key not valid"), "auth", "auth"),
    "anthropic-rate_limit": ("an", error(429, message="Number of request tokens has exceeded your rate limit"),
                             "rate_limit", "rate_limited"),
    "gemini-server_error": ("ge", error(503, message="The model is overloaded"), "server_error", "overloaded"),
}

ON_ALL = tuple((name, (ir.Target("fb", f"for-{name}"),), "rule") for name in
               ("context_window", "content_policy", "rate_limit", "timeout", "server_error", "auth"))


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("case", list(CASES))
async def test_on_picks_the_fallback_of_the_error_class(backends, fake: FakeProvider, case: str, stream: bool) -> None:
    backend, behaviour, error_class, status = CASES[case]
    fake.on_model("failing", behaviour)
    d = dispatcher(backends)
    plan = Plan(chain=(ir.Target(backend, "failing"),), on=ON_ALL)
    text, outcome = await send(d, plan, stream=stream, text="over to you")
    assert text == "over to you"
    assert outcome.target == ir.Target("fb", f"for-{error_class}")
    assert outcome.on_error == error_class
    assert [(a.backend, a.status, a.on_error) for a in outcome.attempts] == \
        [(backend, status, None), ("fb", "ok", error_class)]


async def test_timeout_class(build, fake: FakeProvider) -> None:
    fake.on_model("sleepy", delay(2))
    backends = await build(slow=backend_settings("openai", fake, timeout={"connect": 1, "first_byte": 0.2, "idle": 0.2}),
                           fb=backend_settings("openai", fake))
    d = dispatcher(backends)
    _text, outcome = await send(d, Plan(chain=(ir.Target("slow", "sleepy"),), on=ON_ALL))
    assert outcome.on_error == "timeout" and outcome.target == ir.Target("fb", "for-timeout")


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_gemini_prompt_blocked_inside_a_200(backends, fake: FakeProvider, stream: bool) -> None:
    body: Any = GEMINI_BLOCKED
    if stream:
        body = f"data: {json.dumps(GEMINI_BLOCKED)}\r\n\r\n"
    fake.on_model("blocked", error(200, body, content_type="text/event-stream"))
    d = dispatcher(backends)
    text, outcome = await send(d, Plan(chain=(ir.Target("ge", "blocked"),), on=ON_ALL), stream=stream, text="hi")
    assert outcome.on_error == "content_policy" and outcome.target == ir.Target("fb", "for-content_policy")
    assert "blockReason: SAFETY" in (outcome.attempts[0].error or "")
    # without on: the client hears it as the provider's refusal, a 400
    with pytest.raises(ProxyError) as info:
        await send(d, Plan(chain=(ir.Target("ge", "blocked"),)), stream=stream)
    assert info.value.status == 400 and "SAFETY" in info.value.message


async def test_anthropic_refusal_reply_is_a_content_policy_failure(backends, fake: FakeProvider) -> None:
    fake.on_model("refuses", reply("", finish_reason="content_filter"))
    d = dispatcher(backends)
    _text, outcome = await send(d, Plan(chain=(ir.Target("an", "refuses"),), on=ON_ALL))
    assert outcome.on_error == "content_policy" and outcome.target == ir.Target("fb", "for-content_policy")


async def test_without_an_on_entry_a_context_window_400_is_the_clients(backends, fake: FakeProvider) -> None:
    fake.on_model("failing", error(400, OPENAI_TOO_LONG))
    d = dispatcher(backends)
    plan = Plan(chain=(ir.Target("oa", "failing"), ir.Target("fb", "next")),
                on=(("rate_limit", (ir.Target("fb", "for-rate_limit"),), "rule"),))
    with pytest.raises(ProxyError) as info:
        await send(d, plan)
    assert info.value.status == 400 and "maximum context length" in info.value.message
    assert [c.model for c in fake.generations] == ["failing"]  # nothing else was tried


async def test_the_class_of_the_last_failure_decides(backends, fake: FakeProvider) -> None:
    fake.on_model("limited", error(429, message="slow down"))
    fake.on_model("broken", error(500, message="boom"))
    d = dispatcher(backends)
    plan = Plan(chain=(ir.Target("oa", "limited"), ir.Target("an", "broken")), on=ON_ALL)
    _text, outcome = await send(d, plan)
    assert outcome.on_error == "server_error" and outcome.target == ir.Target("fb", "for-server_error")


async def test_a_failing_fallback_is_the_answer(backends, fake: FakeProvider) -> None:
    fake.on_model("failing", error(429, message="slow down"))
    fake.on_model("for-rate_limit", error(500, message="fallback down too"))
    d = dispatcher(backends)
    with pytest.raises(ProxyError) as info:
        await send(d, Plan(chain=(ir.Target("oa", "failing"),), on=ON_ALL))
    assert info.value.status == 502 and "fallback down too" in info.value.message


async def test_cheapest_after_another_strategy_still_reads_the_prompt(backends, fake: FakeProvider) -> None:
    """The prompt's size is estimated for cheapest(...) even when an earlier group had no use for it."""
    d = dispatcher(backends)
    # Cheap input, dear output vs the reverse: with the prompt counted, long prompts favour cheap input.
    d.prices = {"in-cheap": {"input": 0.1, "output": 50.0}, "out-cheap": {"input": 20.0, "output": 0.1}}
    first = group("fastest", ir.Target("oa", "f1"), ir.Target("fb", "f2"))
    cheap = group("cheapest", ir.Target("an", "out-cheap"), ir.Target("ge", "in-cheap"))
    fake.on_model("f1", error(500))
    fake.on_model("f2", error(500))
    outcome = Outcome()
    request = chat("word " * 4000)
    request.max_tokens = 10
    await d.complete(Plan(chain=(first, cheap)), request, outcome)
    outcome.release()
    assert outcome.target == ir.Target("ge", "in-cheap")
    assert outcome.attempts[-1].picked_by == "cheapest"
