"""Loop detection at its exact boundaries: the shortest and longest unit, the shortest looping
text, the short-unit rule's three distinct characters, the number of copies reported, and how
much text the guard holds. The detector checks at every character here (``interval=1``), so the
offset of a cut is exact."""

from __future__ import annotations

import pytest

import guards_support as gs
from dsl.ir import PostProcessor
from router.guards.loop import RepetitionDetector
from router.wire.canonical import (
    ChatResponse, StreamEnd, StreamStart, TextDelta, TextPart, ThinkingDelta, ToolCallPart,
)


def cut_at(text: str, min_len: int, max_len: int, reps: int) -> tuple[int, int, int] | None:
    """(offset of the cut, unit length, copies) when ``text`` fed in one piece loops, else None."""
    hit = RepetitionDetector(min_len, max_len, reps, interval=1).feed(text)
    return None if hit is None else (hit.keep, hit.period, hit.repetitions)


def cut_at_char_by_char(text: str, min_len: int, max_len: int, reps: int) -> int | None:
    detector = RepetitionDetector(min_len, max_len, reps, interval=1)
    for i, char in enumerate(text):
        if detector.feed(char) is not None:
            return i + 1
    return None


PREFIX = "".join(f"{i:05d} " for i in range(400))  # 2400 characters without a loop

CASES = [
    # (text, min_len, max_len, reps, expected (cut offset, unit, copies) or None)
    # a unit exactly min_len long; the text exactly min_len * reps long
    ("abcd" * 3, 4, 10, 3, (12, 4, 3)),
    ("abcd" * 3 + "xyz", 4, 10, 3, (12, 4, 3)),
    ("abcd" * 2 + "abc", 4, 10, 3, None),  # one character short of the third copy
    # min_pattern_length 1: one character repeated is a unit of exactly the minimum length
    ("a" * 4, 1, 10, 4, (4, 1, 4)),
    ("a" * 3, 1, 10, 4, None),
    ("Z" + "abcd" * 3, 4, 10, 3, (13, 4, 3)),
    # a unit exactly max_len long is found; one character longer is not
    ("abcdefghij" * 3, 4, 10, 3, (30, 10, 3)),
    ("abcdefghijk" * 3, 4, 10, 3, None),
    ("abcdefghijk" * 3, 4, 11, 3, (33, 11, 3)),
    # a unit one shorter than min_len needs the long span of the short-unit rule
    ("abc" * 4, 4, 10, 3, None),
    # a unit ending in a run ("====") longer than min_len: the last anchors (min_len characters
    # each) repeat inside the run, so earlier ones are tried, up to three: here the third one
    (("abcdefgh" + "=" * 10) * 3, 4, 30, 3, (54, 18, 3)),
    # four anchors inside the run: not seen at the third copy's end, but one character later
    (("abcdefgh" + "=" * 18) * 3, 4, 30, 3, None),
    (("abcdefgh" + "=" * 18) * 3 + "a", 4, 30, 3, (79, 26, 3)),
    # the anchor also occurs closer than the unit's length: further occurrences are verified too
    (("abcdefghijklmnop" + "!" + "abcdefghijklmnop") * 3, 4, 40, 3, (99, 33, 3)),
    ("abcdef12abcdef" * 3, 4, 30, 3, (42, 14, 3)),
    # at most four occurrences of the anchor are verified: the last four characters ("====")
    # occur three times in a run of six "=" inside the unit, the fourth is the unit's length...
    ("Z======abQ====" * 3, 4, 30, 3, (42, 14, 3)),
    # ...in a run of seven, four times: the check gives up at the third copy's end, and the
    # next check (a new anchor, "===Z") finds the loop one character later
    ("Z=======abQ====" * 3, 4, 30, 3, None),
    ("Z=======abQ====" * 3 + "Z", 4, 30, 3, (46, 15, 3)),
    # a loop that starts long after the detector's window was first trimmed
    (PREFIX + "abcd" * 3, 4, 10, 3, (len(PREFIX) + 12, 4, 3)),
    (PREFIX + "abcd" * 2 + "abc", 4, 10, 3, None),
    # reps copies, not reps - 1
    ("abcde" * 2, 5, 10, 2, (10, 5, 2)),
    ("abcde" * 2, 5, 10, 3, None),
]


@pytest.mark.parametrize(("text", "min_len", "max_len", "reps", "expected"), CASES,
                         ids=[f"{len(c[0])}ch-min{c[1]}-max{c[2]}-x{c[3]}" for c in CASES])
def test_where_a_loop_is_cut(text: str, min_len: int, max_len: int, reps: int, expected: tuple | None) -> None:
    assert cut_at(text, min_len, max_len, reps) == expected
    assert cut_at_char_by_char(text, min_len, max_len, reps) == (expected[0] if expected else None)


@pytest.mark.parametrize(("unit", "cut"), [
    ("abc", True),     # three different letters
    ("ab1", True),     # letters and digits both count
    ("aB-", False),    # two letters and a sign: a rule, not a sentence
    ("ab ", False),
    ("aab", False),    # three characters, two different
    ("0, ", False),    # "0, 0, 0, ..."
    ("--+", False),
])
def test_a_short_unit_needs_three_different_letters_or_digits(unit: str, cut: bool) -> None:
    # min_len 5, 2 copies: a unit below 5 characters must fill 4 * 2 * 5 = 40 characters
    found = cut_at(unit * 30, 5, 10, 2)
    assert (found is not None) is cut
    if cut:
        assert found[:2] == (40, 3)


def test_a_short_unit_is_cut_once_it_fills_exactly_the_long_span() -> None:
    # "Z" + "abc" * n: the 40 characters before offset 41 are the first that all repeat
    assert cut_at_char_by_char("Z" + "abc" * 20, 5, 10, 2) == 41
    assert cut_at("abc" * 13, 5, 10, 2) is None  # 39 characters
    assert cut_at("abc" * 13 + "a", 5, 10, 2) == (40, 3, 13)


@pytest.mark.parametrize(("prefix", "copies"), [("", 5), ("Zy", 5), ("cd", 5), ("bcd", 5), ("wxyz", 5), ("Zwxyz", 5), ("abcd", 6), ("Zabcd", 6)])
def test_the_reported_count_is_every_copy_before_the_cut(prefix: str, copies: int) -> None:
    text = prefix + "abcd" * 5
    # one check, at the very end: every copy is already there
    hit = RepetitionDetector(4, 10, 3, interval=len(text)).feed(text)
    assert hit is not None and (hit.period, hit.repetitions) == (4, copies)


def test_the_note_says_how_many_copies() -> None:
    unit = "The same sentence once more, 32."
    assert len(unit) == 32
    out = gs.normalize(gs.run(gs.chain(session={"tool_call_repair": False, "tool_call_loop_detection": False}),
                              gs.text_stream([unit * 5])))
    assert out[-1] == ("end", "loop")
    assert "repeated the same text 5 times" in "".join(e[1] for e in out if e[0] == "text")


def test_buffered_is_what_the_detector_holds_up_to_its_window() -> None:
    d = RepetitionDetector(4, 10, 3, interval=16)
    assert d.window == max(10 * 3, 4 * 3 * 4) + 4 == 52
    assert d.buffered == 0
    d.feed("")
    assert d.buffered == 0
    d.feed("abcdefg")  # before the first check point: held as it came
    assert d.buffered == 7
    d.feed("hijklmnopq")  # past it: kept as the tail
    assert d.buffered == 17
    for _ in range(20):
        d.feed("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"[_ % 30:] + "!")
    assert d.buffered <= d.window + 16


def test_the_guard_reports_what_its_channels_hold() -> None:
    post = (PostProcessor("loop_detection", (("min_pattern_length", 20), ("min_repetitions", 3))),)
    [guard] = gs.chain(post=post, session={"tool_call_repair": False, "tool_call_loop_detection": False}).guards
    assert guard.buffered == 0
    guard.feed(StreamStart("r", "m"))
    guard.feed(TextDelta("hello"))
    assert guard.buffered == 5
    guard.feed(ThinkingDelta("thinking"))
    assert guard.buffered == 13
    guard.feed(StreamEnd("stop"))
    assert guard.buffered == 13


@pytest.mark.parametrize(("chars", "skips"), [(59, True), (60, False)])
def test_replies_shorter_than_the_shortest_loop_skip_the_guard(chars: int, skips: bool) -> None:
    post = (PostProcessor("loop_detection", (("min_pattern_length", 20), ("min_repetitions", 3))),)
    [guard] = gs.chain(post=post, session={"tool_call_repair": False, "tool_call_loop_detection": False}).guards
    half = chars // 2
    parts = [TextPart("a" * half), TextPart("b" * (chars - half))]
    assert guard.leaves_unchanged(ChatResponse(id="r", model="m", parts=parts)) is skips


def test_the_cut_is_recorded_with_its_unit_and_copies() -> None:
    unit = "The same sentence once more, 32."
    ch = gs.chain(session={"tool_call_repair": False, "tool_call_loop_detection": False})
    gs.run(ch, gs.text_stream([unit * 5]))
    assert [(e.kind, e.detail) for e in ch.events] == [("loop_cut", "text: a 32-character pattern repeated 5 times")]
    ch = gs.chain(session={"tool_call_repair": False, "tool_call_loop_detection": False})
    gs.run(ch, [StreamStart("r", "m"), ThinkingDelta(unit * 5), StreamEnd("stop")])
    assert [(e.kind, e.detail) for e in ch.events] == [("loop_cut", "thinking: a 32-character pattern repeated 5 times")]


def test_parts_without_text_count_for_nothing() -> None:
    post = (PostProcessor("loop_detection", (("min_pattern_length", 20), ("min_repetitions", 3))),)
    [guard] = gs.chain(post=post, session={"tool_call_repair": False, "tool_call_loop_detection": False}).guards
    parts = [TextPart("a" * 59), ToolCallPart("call_1", "read_file", '{"path": "' + "x" * 100 + '"}')]
    assert guard.leaves_unchanged(ChatResponse(id="r", model="m", parts=parts))


def test_thinking_keeps_what_came_before_the_cut_like_text_does() -> None:
    unit = "The same sentence once more, 32."
    session = {"tool_call_repair": False, "tool_call_loop_detection": False}
    text_out = gs.normalize(gs.run(gs.chain(session=session), gs.text_stream([unit * 6])))
    thinking_out = gs.normalize(gs.run(gs.chain(session=session),
                                       [StreamStart("r", "m"), ThinkingDelta(unit * 6), StreamEnd("stop")]))
    # the cut falls at the first check point after the fifth copy: 5 * 32 = 160 characters
    assert text_out[1] == ("text", unit * 5 + text_out[1][1][160:])
    kept = text_out[1][1].split("\n\n")[0]
    assert len(kept) == 160
    assert thinking_out[1] == ("thinking", kept)
    assert thinking_out[-1] == ("end", "loop")


@pytest.mark.parametrize("before", [0, 40, 47, 50, 100, 333])
def test_a_loop_across_chunks_is_found_whatever_came_before(before: int) -> None:
    detector = RepetitionDetector(4, 10, 3, interval=1)
    assert detector.feed(PREFIX[:before] + "abcd" * 2) is None
    hit = detector.feed("abcd" + "tail")
    assert hit is not None and (hit.keep, hit.period, hit.repetitions) == (4, 4, 3)
