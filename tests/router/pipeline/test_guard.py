"""router/pipeline/guard.py: where the sessions' tool-call histories live."""

from __future__ import annotations

from router.pipeline.guard import ToolHistories
from router.sessions import Session


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


def test_a_history_in_use_outlives_its_ttl_and_an_idle_one_is_forgotten() -> None:
    clock = Clock()
    histories = ToolHistories(ttl=3600, clock=clock)
    session = Session(id="agent-1", owner="key-a")
    history = histories.of(session)
    for _ in range(5):  # a request every 50 minutes: four hours in use
        clock.now += 3000
        assert histories.of(session) is history
    clock.now += 3600  # an hour without a request
    assert histories.of(session) is not history


def test_histories_are_kept_per_owner_and_session() -> None:
    histories = ToolHistories(clock=Clock())
    mine = histories.of(Session(id="s", owner="key-a"))
    assert histories.of(Session(id="s", owner="key-a")) is mine
    assert histories.of(Session(id="s", owner="key-b")) is not mine
    assert histories.of(Session(id="t", owner="key-a")) is not mine


def test_the_least_recently_used_history_goes_when_full() -> None:
    histories = ToolHistories(maxsize=2, clock=Clock())
    a, b = Session(id="a"), Session(id="b")
    first_a = histories.of(a)
    histories.of(b)
    assert histories.of(a) is first_a  # "b" is now the least recently used
    histories.of(Session(id="c"))
    assert histories.of(a) is first_a
    assert len(histories._histories) == 2
