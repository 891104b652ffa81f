"""Tool-call loop detection: signatures, both modes, TTL expiry, history bounds, conversation counts."""

from __future__ import annotations

import pytest

import guards_support as gs
from dsl.ir import PostProcessor
from router.wire.canonical import (
    Message, StreamEnd, StreamStart, TextDelta, TextPart, ToolCallDelta, ToolCallPart, ToolCallStart, ToolResultPart,
)
from router.guards import ToolCallHistory
from router.guards.tool_loop import MAX_HELD_ARGUMENTS, signature

ONLY = {"tool_call_repair": False, "loop_detection": False}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def call_stream(name: str = "read_file", args: tuple[str, ...] = ('{"path":', ' "a.py"}'),
                extra: list | None = None) -> list:
    events = [StreamStart("r", "m"), TextDelta("Let me look."), ToolCallStart(0, "call_a", name)]
    events += [ToolCallDelta(0, a) for a in args]
    events += extra or []
    return events + [StreamEnd("tool_calls")]


def turn(history: ToolCallHistory, mode: str = "break", max_repeats: int = 3, events: list | None = None,
         req=None) -> list[tuple]:
    post = (PostProcessor("tool_call_loop_detection", (("max_repeats", max_repeats), ("mode", mode))),)
    ch = gs.chain(session=ONLY, post=post, history=history, req=req)
    out = gs.normalize(gs.run(ch, events or call_stream()))
    return out


def test_signature_is_canonical_json() -> None:
    assert signature("f", '{"a": 1, "b": [1, 2]}') == signature("f", '{ "b":[1,2],"a":1 }')
    assert signature("f", '{"a": 1}') != signature("g", '{"a": 1}')
    assert signature("f", "") == signature("f", "{}")
    assert signature("f", "not json") == signature("f", " not json ")


def test_break_mode_lets_max_repeats_through_then_replaces_the_call() -> None:
    history = ToolCallHistory(clock=Clock())
    for _ in range(3):
        out = turn(history)
        assert out[2][0] == "call" and out[-1] == ("end", "tool_calls")
    out = turn(history)
    assert [o[0] for o in out] == ["start", "text", "end"] and out[-1] == ("end", "stop")
    assert "tool call loop stopped — `read_file` was called 4 times" in out[1][1]
    assert out[1][1].startswith("Let me look.")


def test_other_arguments_are_another_call() -> None:
    history = ToolCallHistory(clock=Clock())
    for _ in range(3):
        turn(history)
    out = turn(history, events=call_stream(args=('{"path": "b.py"}',)))
    assert out[2][0] == "call"


def test_chance_then_block() -> None:
    history = ToolCallHistory(clock=Clock())
    for _ in range(3):
        turn(history, mode="chance_then_block")
    warned = turn(history, mode="chance_then_block")
    assert warned[-1] == ("end", "stop") and "tool call loop warning" in warned[1][1] and "Change approach" in warned[1][1]
    blocked = turn(history, mode="chance_then_block")
    assert blocked[-1] == ("end", "stop") and "tool call loop stopped" in blocked[1][1]


def test_ttl_expiry() -> None:
    clock = Clock()
    history = ToolCallHistory(clock=clock)
    for _ in range(3):
        turn(history)
        clock.now += 10
    assert turn(history)[-1] == ("end", "stop")
    clock.now += 121  # default ttl_seconds 120: everything expired
    assert turn(history)[-1] == ("end", "tool_calls")


def test_only_the_looping_call_is_removed_and_others_are_reindexed() -> None:
    history = ToolCallHistory(clock=Clock())
    for _ in range(3):
        turn(history)
    events = [StreamStart("r", "m"), ToolCallStart(0, "c0", "read_file"), ToolCallDelta(0, '{"path": "a.py"}'),
              ToolCallStart(1, "c1", "search"), ToolCallDelta(1, '{"query": "x"}'), StreamEnd("tool_calls")]
    out = turn(history, events=events)
    assert out[1] == ("call", 0, "c1", "search", '{"query": "x"}')
    assert out[2][0] == "text" and out[-1] == ("end", "tool_calls")


def test_conversation_history_counts_consecutive_identical_turns() -> None:
    """A fresh proxy (empty history) still sees the loop in the messages the client sends back."""
    call = ToolCallPart("c", "read_file", '{"path": "a.py"}')
    messages = [Message("user", [TextPart("fix the bug")])]
    for i in range(3):
        messages += [Message("assistant", [ToolCallPart(f"c{i}", call.name, call.arguments)]),
                     Message("user", [ToolResultPart(f"c{i}", [TextPart("same content")])])]
    assert turn(ToolCallHistory(), req=gs.request(messages=messages))[-1] == ("end", "stop")
    # A real user message in between breaks the run.
    messages.insert(3, Message("user", [TextPart("go on")]))
    assert turn(ToolCallHistory(), req=gs.request(messages=messages))[-1] == ("end", "tool_calls")


def test_history_is_bounded() -> None:
    history = ToolCallHistory(clock=Clock(), max_entries=8)
    for i in range(100):
        for _ in range(100):
            history.record(signature("f", f'{{"i": {i}}}'))
    assert len(history) == 8
    assert all(len(e.times) <= 64 for e in history._entries.values())


def test_huge_arguments_pass_unchecked_and_memory_stays_bounded() -> None:
    history = ToolCallHistory(clock=Clock())
    ch = gs.chain(session=ONLY, history=history)
    ch.feed(StreamStart("r", "m"))
    ch.feed(ToolCallStart(0, "big", "run_command"))
    sent = []
    for _ in range(200):
        sent += ch.feed(ToolCallDelta(0, "x" * 1000))
        assert ch.buffered()["tool_call_loop_detection"] <= MAX_HELD_ARGUMENTS + 1000
    sent += ch.feed(StreamEnd("tool_calls"))
    assert sum(len(e.arguments) for e in sent if isinstance(e, ToolCallDelta)) == 200_000


@pytest.mark.parametrize("mode", ["break", "chance_then_block"])
def test_guard_events(mode: str) -> None:
    history = ToolCallHistory(clock=Clock())
    post = (PostProcessor("tool_call_loop_detection", (("max_repeats", 2), ("mode", mode))),)
    kinds = []
    for _ in range(4):
        ch = gs.chain(session=ONLY, post=post, history=history)
        gs.run(ch, call_stream())
        kinds += [e.kind for e in ch.events]
    assert kinds == (["tool_loop_blocked"] * 2 if mode == "break" else ["tool_loop_warned", "tool_loop_blocked"])
