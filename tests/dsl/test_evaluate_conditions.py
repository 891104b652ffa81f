"""What each kind of condition decides, as a table of facts → expected result, with exact
boundaries; and the real clock behind ``time`` and ``weekday`` when no time is given."""

from __future__ import annotations

from datetime import datetime

import importlib

import pytest

from dsl import Facts
from dsl.evaluate import clock_now, compile_condition
from dsl.parser import parse

evaluate_module = importlib.import_module("dsl.evaluate")  # ``dsl.evaluate`` the name is the function
NOON_MONDAY = datetime(2026, 11, 23, 12, 0)


def decide(text: str, **facts: object) -> bool:
    facts.setdefault("model", "gpt-4o")
    return compile_condition(parse(text, "condition"))(Facts.build(now=NOON_MONDAY, **facts))  # type: ignore[arg-type]


TABLE = [
    # (condition, facts, expected)
    ('model in ["a", "b"]', dict(model="a"), True),
    ('model in ["a", "b"]', dict(model="c"), False),
    ('model not in ["a", "b"]', dict(model="a"), False),
    ('model not in ["a", "b"]', dict(model="c"), True),
    ('model not in []', dict(model="c"), True),
    ('caller not in ["k"]', dict(), True),  # a missing caller is not in any list
    # =~ searches anywhere in the value (not anchored), case-sensitive
    ('model =~ "^gpt-4"', dict(model="gpt-4o"), True),
    ('model =~ "^gpt-4"', dict(model="my-gpt-4"), False),
    ('model =~ "4o"', dict(model="gpt-4o-mini"), True),
    ('model =~ "GPT"', dict(model="gpt-4o"), False),
    ('model =~ "mini$"', dict(model="gpt-4o-mini"), True),
    ('header("x-team") =~ "^re"', dict(headers={"x-team": "red"}), True),
    ('header("x-team") =~ "^re"', dict(headers={}), False),  # a missing header matches no pattern
    ('caller =~ ".*"', dict(), False),  # not even one that matches the empty string
    # ~ is a whole-value glob
    ('model ~ "gpt-4*"', dict(model="gpt-4o"), True),
    ('model ~ "gpt-4"', dict(model="gpt-4o"), False),
    ('caller ~ "*"', dict(), False),
    # session.x facts that are set
    ('session.project == "p"', dict(session={"project": "p"}), True),
    ('session.project == "p"', dict(session={"project": "q"}), False),
    ('session.project', dict(session={"project": "p"}), True),
    ('session.project', dict(session={"project": ""}), False),
    ('not session.project', dict(session={"project": "p"}), False),
    ('session.project in ["p", "q"]', dict(session={"project": "q"}), True),
    ('session.project != "p"', dict(session={"other": "p"}), True),
    ('session.depth >= 3', dict(session={"depth": 3}), True),
    ('session.depth > 3', dict(session={"depth": 3}), False),
    # ordered comparisons: exact boundaries
    ('tokens > 100', dict(tokens=100), False),
    ('tokens > 100', dict(tokens=101), True),
    ('tokens >= 100', dict(tokens=100), True),
    ('tokens >= 100', dict(tokens=99), False),
    ('tokens < 100', dict(tokens=100), False),
    ('tokens < 100', dict(tokens=99), True),
    ('tokens <= 100', dict(tokens=100), True),
    ('tokens <= 100', dict(tokens=101), False),
    ('tokens > 1k', dict(tokens=1000), False),
    ('tokens > 1k', dict(tokens=1001), True),
    ('tokens == 0', dict(), True),
    ('tokens != 0', dict(tokens=1), True),
    # a missing fact or a type mismatch makes an ordered comparison false, never an error
    ('caller < "z"', dict(), False),
    ('caller >= "a"', dict(caller="b"), True),
    ('model > 3', dict(model="x"), False),
    ('session.flag > 0', dict(session={"flag": True}), False),  # booleans are not numbers here
    ('stream == true', dict(stream=True), True),
    ('stream == true', dict(stream=False), False),
    # and / or / not
    ('stream and tools', dict(stream=True, tools=False), False),
    ('stream and tools', dict(stream=True, tools=True), True),
    ('stream or tools', dict(stream=False, tools=True), True),
    ('stream or tools', dict(stream=False, tools=False), False),
    ('not stream', dict(stream=True), False),
    ('true', dict(), True),
    ('false', dict(), False),
    ('not (stream or tools)', dict(), True),
    # a number fact against another, scaled: each operator at its exact boundary
    ('tokens > context_window * 0.8', dict(tokens=800, context_window=1000), False),
    ('tokens > context_window * 0.8', dict(tokens=801, context_window=1000), True),
    ('tokens >= context_window * 0.8', dict(tokens=800, context_window=1000), True),
    ('tokens >= context_window * 0.8', dict(tokens=799, context_window=1000), False),
    ('tokens < context_window * 0.8', dict(tokens=799, context_window=1000), True),
    ('tokens < context_window * 0.8', dict(tokens=800, context_window=1000), False),
    ('tokens <= context_window * 0.8', dict(tokens=800, context_window=1000), True),
    ('tokens <= context_window * 0.8', dict(tokens=801, context_window=1000), False),
    ('tokens == context_window * 0.5', dict(tokens=500, context_window=1000), True),
    ('tokens == context_window * 0.5', dict(tokens=501, context_window=1000), False),
    ('tokens != context_window * 0.5', dict(tokens=501, context_window=1000), True),
    ('tokens != context_window * 0.5', dict(tokens=500, context_window=1000), False),
    ('tokens < context_window * 2', dict(tokens=1500, context_window=1000), True),  # scaled up, not down
    ('tokens > context_window', dict(tokens=1001, context_window=1000), True),
    ('tokens > context_window', dict(tokens=1000, context_window=1000), False),
    ('context_window > tokens * 4', dict(tokens=100, context_window=401), True),  # either side may lead
    ('context_window > tokens * 4', dict(tokens=100, context_window=400), False),
    # an unknown context window (a model the catalogue lacks) makes every such comparison false
    ('tokens > context_window * 0.8', dict(tokens=10**9), False),
    ('tokens <= context_window * 0.8', dict(tokens=0), False),
    ('tokens != context_window', dict(tokens=5), False),
    ('not (tokens < context_window)', dict(tokens=5), True),
    # time and weekday are strings compared as such
    ('time >= "12:00"', dict(), True),
    ('time > "12:00"', dict(), False),
    ('weekday == "mon"', dict(), True),
    ('weekday in ["sat", "sun"]', dict(), False),
]


@pytest.mark.parametrize(("text", "facts", "expected"), TABLE, ids=[f"{t}|{f}" for t, f, _ in TABLE])
def test_condition_table(text: str, facts: dict, expected: bool) -> None:
    assert decide(text, **facts) is expected


@pytest.mark.parametrize(("now", "clock", "weekday"), [
    (datetime(2026, 11, 23, 0, 0), "00:00", "mon"),
    (datetime(2026, 11, 24, 9, 5), "09:05", "tue"),
    (datetime(2026, 11, 29, 23, 59), "23:59", "sun"),
])
def test_build_formats_the_given_time(now: datetime, clock: str, weekday: str) -> None:
    facts = Facts.build("m", now=now)
    assert (facts.time, facts.weekday) == (clock, weekday)


@pytest.mark.parametrize(("now", "clock", "weekday"), [
    (datetime(2026, 11, 27, 17, 45, 30), "17:45", "fri"),
    (datetime(2026, 11, 28, 8, 1, 59), "08:01", "sat"),
])
def test_without_a_time_the_local_clock_decides(monkeypatch: pytest.MonkeyPatch, now: datetime,
                                                clock: str, weekday: str) -> None:
    monkeypatch.setattr(evaluate_module, "_clock_cache", (-1, "00:00", "mon"))
    monkeypatch.setattr(evaluate_module._time, "time", lambda: now.timestamp())
    facts = Facts.build("m")
    assert (facts.time, facts.weekday) == (clock, weekday)
    assert compile_condition(parse(f'weekday == "{weekday}" and time == "{clock}"', "condition"))(facts)


def test_the_clock_is_read_again_when_the_second_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evaluate_module, "_clock_cache", (-1, "00:00", "mon"))
    now = [datetime(2026, 11, 23, 9, 59, 59).timestamp()]
    monkeypatch.setattr(evaluate_module._time, "time", lambda: now[0])
    assert clock_now() == ("09:59", "mon")
    now[0] += 1
    assert clock_now() == ("10:00", "mon")
    now[0] = datetime(2026, 11, 24, 0, 0).timestamp()
    assert clock_now() == ("00:00", "tue")


def test_the_clock_is_formatted_once_per_second(monkeypatch: pytest.MonkeyPatch) -> None:
    """``clock_now`` is on every request's path: within one second it formats nothing again."""
    monkeypatch.setattr(evaluate_module, "_clock_cache", (-1, "00:00", "mon"))
    now = [datetime(2026, 11, 23, 9, 59, 59).timestamp()]
    monkeypatch.setattr(evaluate_module._time, "time", lambda: now[0])
    formatted = []

    class CountingDatetime(datetime):
        @classmethod
        def fromtimestamp(cls, t: float, tz: object = None) -> datetime:  # type: ignore[override]
            formatted.append(t)
            return datetime.fromtimestamp(t)

    monkeypatch.setattr(evaluate_module, "datetime", CountingDatetime)
    assert [clock_now() for _ in range(3)] == [("09:59", "mon")] * 3
    now[0] += 0.5  # the same second
    assert clock_now() == ("09:59", "mon") and len(formatted) == 1
    now[0] += 0.5
    assert clock_now() == ("10:00", "mon") and len(formatted) == 2
