"""Tool-call repair at its rarer edges: held text when repair gives up mid-stream, JSON look-alikes
split across chunks while they are streamed on as text, and markers written in another case.
Each case is checked whole and at every split point."""

from __future__ import annotations

import json
import re

import pytest

import guards_support as gs
from router.wire.canonical import StreamEnd, StreamStart, TextDelta, ToolCallDelta, ToolCallStart


def observed(pieces: list[str], cap: int | None = None) -> list[tuple]:
    result = gs.normalize(gs.run(gs.repair_only(cap=cap), gs.text_stream(pieces)))
    return [r[:4] + (json.loads(r[4]),) if r[0] == "call" else r for r in result]


def expected(text: str, calls: list[tuple[str, dict]]) -> list[tuple]:
    out: list[tuple] = [("start",)]
    if text:
        out.append(("text", text))
    out += [("call", i, f"call_{i:024x}", name, args) for i, (name, args) in enumerate(calls)]
    return out + [("end", "tool_calls" if calls else "stop")]


# (id, text, cap or None for the default, expected text, expected calls)
CASES = [
    # markers in another case: the line forms ignore case, the tags and fences' brackets do not
    ("line_title_case", 'Tool Call: list_files {}', None, "", [("list_files", {})]),
    ("line_mixed_case_underscore", 'Reading.\nTOOL_call: read_file {"path": "a"}', None, "Reading.",
     [("read_file", {"path": "a"})]),
    ("line_json_lower", 'tool call: {"name": "list_files"}', None, "", [("list_files", {})]),
    ("fence_language_upper", '```JSON\n{"name": "list_files"}\n```', None, "", [("list_files", {})]),
    ("tag_upper_is_text", '<TOOL_CALL>{"name": "list_files"}</TOOL_CALL>', None,
     '<TOOL_CALL>{"name": "list_files"}</TOOL_CALL>', []),
    ("mistral_lower_is_text", '[tool_calls] [{"name": "list_files"}]', None, '[tool_calls] [{"name": "list_files"}]', []),
    ("function_tag_upper_is_text", '<FUNCTION=list_files>{}</FUNCTION>', None, '<FUNCTION=list_files>{}</FUNCTION>', []),
    # inline code at a line start is not a fence: what follows it is still looked at
    ("inline_code_then_call", '``ls`` lists them.\n{"name": "list_files"}', None, "``ls`` lists them.",
     [("list_files", {})]),
    # a JSON look-alike is streamed on as text up to its end, then calls are looked for again
    ("lookalike_then_call", '{"users": [1, {"name": "x", "v": "}{"}]}\n{"name": "list_files"}', None,
     '{"users": [1, {"name": "x", "v": "}{"}]}', [("list_files", {})]),
    ("lookalike_array_call_inside_stays_text", '[{"a": 1}, "<function=list_files>{}</function>"]\nDone.', None,
     '[{"a": 1}, "<function=list_files>{}</function>"]\nDone.', []),
    ("fence_lookalike_then_call_on_the_next_line", '```json\n{"users": 1}\n```\n{"name": "list_files"}', None,
     '```json\n{"users": 1}\n```', [("list_files", {})]),
    ("lookalike_nested_call_stays_text", '{"data": {"name": "list_files"}}\nDone.', None,
     '{"data": {"name": "list_files"}}\nDone.', []),
    ("lookalike_array_then_call", '[1, 2, "[TOOL_CALLS]"]\n<tool_call>{"name": "list_files"}</tool_call>', None,
     '[1, 2, "[TOOL_CALLS]"]', [("list_files", {})]),
    # a look-alike longer than the cap: after cap characters calls are looked for again
    ("long_lookalike_then_call", '{"users": "' + "a" * 60 + '"}\n{"name": "list_files"}', 40,
     '{"users": "' + "a" * 60 + '"}', [("list_files", {})]),
    # a call longer than the cap is text, and so is everything after it
    ("call_over_the_cap", '<tool_call>{"name": "search", "arguments": {"query": "' + "q" * 40 + '"}}</tool_call>  \n'
     '{"name": "list_files"}', 40,
     '<tool_call>{"name": "search", "arguments": {"query": "' + "q" * 40 + '"}}</tool_call>  \n{"name": "list_files"}', []),
]


@pytest.mark.parametrize(("cid", "text", "cap", "out", "calls"), CASES, ids=[c[0] for c in CASES])
def test_whole_and_every_split(cid: str, text: str, cap: int | None, out: str, calls: list) -> None:
    whole = expected(out, calls)
    assert observed([text], cap) == whole
    for i in range(1, len(text)):
        assert observed(gs.split(text, [i]), cap) == whole, f"split at {i}: {text[:i]!r} | {text[i:]!r}"


def test_held_whitespace_is_sent_with_the_next_text_after_repair_gives_up() -> None:
    ch = gs.repair_only(cap=40)
    ch.feed(StreamStart("r", "m"))
    head = '<tool_call>{"name": "search", "arguments": {"query": "' + "q" * 30 + '   '
    assert len(head) > 40
    # over the cap: the candidate is text; its trailing spaces wait (a call could still follow them)
    assert gs.normalize(ch.feed(TextDelta(head))) == [("text", head.rstrip())]
    assert ch.buffered()["tool_call_repair"] == 3
    # repair is off now: the held spaces go out in front of the next text, nothing is lost
    assert gs.normalize(ch.feed(TextDelta('more"}}</tool_call>'))) == [("text", '   more"}}</tool_call>')]
    assert ch.buffered()["tool_call_repair"] == 0
    assert gs.normalize(ch.feed(TextDelta('\n{"name": "list_files"}'))) == [("text", '\n{"name": "list_files"}')]


def test_whitespace_held_at_the_end_is_sent_at_the_end() -> None:
    ch = gs.repair_only()
    ch.feed(StreamStart("r", "m"))
    assert gs.normalize(ch.feed(TextDelta("Hello  "))) == [("text", "Hello")]
    assert ch.feed(TextDelta(" \n ")) == []
    assert ch.buffered()["tool_call_repair"] == 5
    assert gs.normalize(ch.finish()) == [("text", "   \n ")]


def test_three_calls_get_indices_0_1_2_and_an_upstream_call_the_next() -> None:
    text = ('<tool_call>{"name": "list_files"}</tool_call>\n<tool_call>{"name": "search", "arguments": {"query": "a"}}'
            '</tool_call>\n<tool_call>{"name": "read_file", "arguments": {"path": "b"}}</tool_call>')
    events = [*gs.text_stream([text])[:-1], ToolCallStart(0, "call_up", "list_files"), ToolCallDelta(0, "{}"),
              StreamEnd("tool_calls")]
    out = gs.normalize(gs.run(gs.repair_only(), events))
    assert [(r[1], r[3]) for r in out if r[0] == "call"] == [
        (0, "list_files"), (1, "search"), (2, "read_file"), (3, "list_files")]


def test_repaired_arguments_are_compact_json_with_text_as_written() -> None:
    """What the client receives as the call's arguments: no spaces, non-ASCII not escaped."""
    out = gs.normalize(gs.run(gs.repair_only(), gs.text_stream(
        ['{"name": "run_command", "arguments": {"command": "echo héllo → 世界", "timeout": 5}}'])))
    assert out[1] == ("call", 0, "call_" + "0" * 24, "run_command", '{"command":"echo héllo → 世界","timeout":5}')


def test_nothing_is_held_after_a_repaired_call() -> None:
    ch = gs.repair_only()
    ch.feed(StreamStart("r", "m"))
    assert gs.normalize(ch.feed(TextDelta("Listing.  \n"))) == [("text", "Listing.")]
    assert ch.buffered()["tool_call_repair"] == 3  # the whitespace waits: dropped if a call follows
    out = gs.normalize(ch.feed(TextDelta('{"name": "list_files"}  \n')))
    assert [r[0] for r in out] == ["call"]
    assert ch.buffered()["tool_call_repair"] == 0
    assert gs.normalize(ch.feed(TextDelta(" trailing words "))) == []  # text after a call is dropped
    assert ch.buffered()["tool_call_repair"] == 0
    assert gs.normalize(ch.finish()) == []


def test_generated_call_ids() -> None:
    from router.guards.repair import new_call_id

    ids = {new_call_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(re.fullmatch(r"call_[0-9a-f]{24}", i) for i in ids)


# Texts whose decisions span three chunks: a key closing at the end of one chunk, a nested string
# or an escape left open at the end of another. Any two cut points give the whole text's output.
THREE_CHUNKS = [
    ("wrapper_then_id", '{"function": {"name": "list_files"}, "id": "c1"}', [("list_files", {})]),
    ("escaped_quote", '{"name": "search", "arguments": {"query": "a\\"b"}}', [("search", {"query": 'a"b'})]),
    ("lookalike_nested", '{"name": "my-app", "version": {"id": "x"}}', []),
]


@pytest.mark.parametrize(("cid", "text", "calls"), THREE_CHUNKS, ids=[c[0] for c in THREE_CHUNKS])
def test_every_pair_of_split_points(cid: str, text: str, calls: list) -> None:
    whole = expected("" if calls else text, calls)
    assert observed([text]) == whole
    for i in range(1, len(text)):
        for j in range(i + 1, len(text)):
            assert observed(gs.split(text, [i, j])) == whole, f"split at {i}, {j}"
