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


UNCLOSED = '<tool_call>{"name": "list_files"}'  # matches only at the end of the response

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
    # the cap's exact boundary: a candidate still open at exactly cap characters is given up
    ("open_tag_exactly_at_the_cap", UNCLOSED, len(UNCLOSED), UNCLOSED, []),
    ("open_tag_one_under_the_cap", UNCLOSED, len(UNCLOSED) + 1, "", [("list_files", {})]),
    # a look-alike that never closes: after cap characters calls are looked for again
    ("unclosed_lookalike_then_call", '{"users": "' + "a" * 50 + '\n<function=list_files>{}</function>', 40,
     '{"users": "' + "a" * 50, [("list_files", {})]),
    # rejected at a later key, or after a nested object: the whole value is text, calls inside it too
    ("lookalike_at_a_later_key_call_inside_stays_text", '{"name": "x", "data": "<function=list_files>{}</function>"}',
     None, '{"name": "x", "data": "<function=list_files>{}</function>"}', []),
    ("lookalike_nested_object_then_call_inside_stays_text",
     '{"data": {"a": 1}, "note": "<function=list_files>{}</function>"}', None,
     '{"data": {"a": 1}, "note": "<function=list_files>{}</function>"}', []),
    # a brace that is not JSON at all settles one character: a call on the next line is found
    ("brace_not_json_then_call", '{ not json\n<tool_call>{"name": "list_files"}</tool_call>', None, "{ not json",
     [("list_files", {})]),
    # a line start is a newline plus spaces or tabs, nothing else
    ("carriage_return_then_object", 'Done.\n\r{"name": "list_files"}', None, 'Done.\n\r{"name": "list_files"}', []),
    ("letter_then_object", 'Line\nX{"name": "list_files"}', None, 'Line\nX{"name": "list_files"}', []),
    ("letter_then_array", 'X[{"name": "list_files"}]', None, 'X[{"name": "list_files"}]', []),
    ("carriage_return_then_array", 'Done.\n\r[{"name": "list_files"}]', None, 'Done.\n\r[{"name": "list_files"}]', []),
    ("array_mid_line_before_a_newline", 'See [{"name": "list_files"}] here.\nDone.', None,
     'See [{"name": "list_files"}] here.\nDone.', []),
    ("array_after_two_lines", 'One.\nTwo.\n[{"name": "list_files"}]', None, "One.\nTwo.", [("list_files", {})]),
    # a skipped code block ends at a fence at a line start only, exactly after its backticks
    ("backticks_mid_line_in_a_code_block", '```python\nprint("```")\n```\n{"name": "list_files"}', None,
     '```python\nprint("```")\n```', [("list_files", {})]),
    ("tag_right_after_a_closing_fence", '```python\nx = 1\n```<tool_call>{"name": "list_files"}</tool_call>', None,
     '```python\nx = 1\n```', [("list_files", {})]),
    # after a call the rest of its line is not at a line start: an object there is not a call
    ("object_on_the_call_line_is_not_a_call",
     '<tool_call>{"name": "search", "arguments": {"query": "a"}}</tool_call>{"name": "list_files"}', None, "",
     [("search", {"query": "a"})]),
    # closing tags: another tag, or one cut off at the end, is not the closing tag
    ("tag_closed_by_another_tag", '<tool_call>{"name": "list_files"}</b>', None,
     '<tool_call>{"name": "list_files"}</b>', []),
    ("closing_tag_cut_at_the_end", '<tool_call>{"name": "list_files"}</tool', None,
     '<tool_call>{"name": "list_files"}</tool', []),
    ("tag_with_indented_lines", '<tool_call>\n  {"name": "list_files"}\n  </tool_call>', None, "", [("list_files", {})]),
    # forms cut off at the end of the response are text
    ("function_tag_cut_at_the_name", "Call <function=", None, "Call <function=", []),
    ("line_form_without_arguments", "TOOL CALL: search", None, "TOOL CALL: search", []),
    ("object_cut_in_its_first_key", 'Then:\n{"na', None, 'Then:\n{"na', []),
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
    # and text passes whole once repair is off, trailing whitespace included: nothing is held any more
    assert gs.normalize(ch.feed(TextDelta("end  "))) == [("text", "end  ")]
    assert ch.buffered()["tool_call_repair"] == 0


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


# Look-alikes streamed on as text across three chunks (a middle chunk with no trigger character
# still moves the look-alike's scan on), followed by a call or holding one that stays text.
THREE_CHUNKS_TEXT = [
    ("lookalike_string_then_call", '{"users": "a}", "b": 1}\n{"name": "list_files"}', '{"users": "a}", "b": 1}',
     [("list_files", {})]),
    ("lookalike_array_tag_inside", '[{"a": 1}, "<function=list_files>{}</function>"]',
     '[{"a": 1}, "<function=list_files>{}</function>"]', []),
    ("code_block_then_call", '```json\n{"users": 1}\n```\n{"name": "list_files"}', '```json\n{"users": 1}\n```',
     [("list_files", {})]),
]


@pytest.mark.parametrize(("cid", "text", "out", "calls"), THREE_CHUNKS_TEXT, ids=[c[0] for c in THREE_CHUNKS_TEXT])
def test_every_pair_of_split_points_around_lookalikes(cid: str, text: str, out: str, calls: list) -> None:
    whole = expected(out, calls)
    assert observed([text]) == whole
    for i in range(1, len(text)):
        for j in range(i + 1, len(text)):
            assert observed(gs.split(text, [i, j])) == whole, f"split at {i}, {j}"


def raw(events: list) -> list[tuple]:
    """Events as a client gets them, one by one (no merging): kind and text or call name."""
    return [(type(e).__name__, getattr(e, "text", None) or getattr(e, "name", None) or getattr(e, "finish_reason", None))
            for e in events]


def started(cap: int | None = None) -> object:
    ch = gs.repair_only(cap=cap)
    ch.feed(StreamStart("r", "m"))
    return ch


def test_one_text_event_per_chunk_however_many_decisions() -> None:
    ch = started()
    assert raw(ch.feed(TextDelta("see <b>this</b> and [that] or <t"))) == [("TextDelta", "see <b>this</b> and [that] or")]
    assert raw(ch.feed(TextDelta("ok"))) == [("TextDelta", " <tok")]


def test_nothing_held_means_no_text_event_at_the_end() -> None:
    ch = started()
    assert raw(ch.feed(TextDelta("Hello"))) == [("TextDelta", "Hello")]
    assert raw(ch.feed(StreamEnd("stop"))) == [("StreamEnd", "stop")]


# Each form, written whole in one chunk, is repaired at once: nothing waits for the end of the text.
AT_ONCE = [
    '<tool_call>\n{"name": "list_files"}\n</tool_call>',
    '<function=search>{"query": "q"}</function>',
    '[TOOL_CALLS] [{"name": "list_files"}]',
    '{"name": "list_files"}',
    '[{"name": "list_files"}]',
    '```json\n{"name": "list_files"}\n```',
    'TOOL CALL: search {"query": "q"}',
    'tool_call: {"name": "list_files"}',
]


@pytest.mark.parametrize("text", AT_ONCE)
def test_a_whole_call_in_one_chunk_is_sent_at_once(text: str) -> None:
    ch = started()
    assert [kind for kind, _ in raw(ch.feed(TextDelta(text)))] == ["ToolCallStart", "ToolCallDelta"]
    assert ch.buffered()["tool_call_repair"] == 0


@pytest.mark.parametrize("text", [
    '{"name": "my-app", "version": "1',  # a foreign key after a tool-call key
    '[{"name": "my-app", "version": "1',  # the same inside an array
    "```js, ",  # an opening fence line that is no language: a code block, streamed through
    '{"users": 1}\nthen <b>',  # what follows a closed look-alike is looked at in the same chunk
    "```python\nx\n```\nthen <b>",  # and what follows a closed code block
    '{"name": "unknown_tool"}\nthen <b>',  # and what follows a complete call to a tool not declared
])
def test_a_lookalike_is_sent_as_soon_as_it_is_decided(text: str) -> None:
    ch = started()
    assert gs.normalize(ch.feed(TextDelta(text))) == [("text", text.rstrip())]
    assert ch.buffered()["tool_call_repair"] == len(text) - len(text.rstrip())


def test_a_code_block_streams_through_holding_only_a_possible_closing_fence() -> None:
    ch = started()
    # (chunk, text sent for it, characters held afterwards)
    steps = [
        ("```python\nprint(1)", "```python\nprint(1)", 0),
        (" + 2", " + 2", 0),
        ("\nx`", "\nx`", 0),  # a backtick after other text on its line cannot start the closing fence
        ("\ny = 2\n``", "\ny = 2", 3),  # the newline (whitespace) and two backticks that may become the fence
        ("`\n", "\n```", 1),
    ]
    for chunk, text, held in steps:
        assert gs.normalize(ch.feed(TextDelta(chunk))) == ([("text", text)] if text else []), chunk
        assert ch.buffered()["tool_call_repair"] == held, chunk
    out = gs.normalize(ch.feed(TextDelta('{"name": "list_files"}')))
    assert [(r[0], r[3]) for r in out] == [("call", "list_files")]


def test_usage_is_kept_when_the_finish_becomes_tool_calls() -> None:
    from router.wire.canonical import Usage

    usage = Usage(prompt_tokens=7, completion_tokens=5)
    ch = started()
    ch.feed(TextDelta('{"name": "list_files"}'))
    end = ch.feed(StreamEnd("stop", usage))
    assert [(type(e).__name__, e.finish_reason, e.usage) for e in end] == [("StreamEnd", "tool_calls", usage)]


def test_upstream_calls_after_a_repaired_one_get_the_next_indices_in_order() -> None:
    events = [*gs.text_stream(['{"name": "list_files"}'])[:-1],
              ToolCallStart(0, "call_a", "search"), ToolCallDelta(0, '{"query":"a"}'),
              ToolCallStart(1, "call_b", "search"), ToolCallDelta(1, '{"query":"b"}'),
              ToolCallDelta(0, ""), StreamEnd("tool_calls")]
    out = gs.normalize(gs.run(gs.repair_only(), events))
    assert [(r[1], r[2], r[4]) for r in out if r[0] == "call"] == [
        (0, "call_" + "0" * 24, "{}"), (1, "call_a", '{"query":"a"}'), (2, "call_b", '{"query":"b"}')]


def test_held_text_before_an_upstream_call_is_sent_and_text_after_it_still_flows() -> None:
    events = [*gs.text_stream(["Looking.  "])[:-1], ToolCallStart(0, "call_a", "search"),
              ToolCallDelta(0, '{"query":"a"}'), TextDelta("Then more."), StreamEnd("tool_calls")]
    out = gs.normalize(gs.run(gs.repair_only(), events))
    assert out == [("start",), ("text", "Looking.  "), ("call", 0, "call_a", "search", '{"query":"a"}'),
                   ("text", "Then more."), ("end", "tool_calls")]


@pytest.mark.parametrize(("enabled", "cap", "calls"), [(True, 65536, 1), (False, 65536, 0), (True, 10, 0)])
def test_the_configured_switch_and_cap_apply(enabled: bool, cap: int, calls: int) -> None:
    from router.config import AppConfig, SessionConfig

    config = AppConfig(backends={}, default_backend="echo", session=SessionConfig(
        tool_call_repair_enabled=enabled, tool_call_repair_buffer_cap_bytes=cap))
    session = {"loop_detection": False, "tool_call_loop_detection": False}
    out = gs.normalize(gs.run(gs.chain(session=session, config=config), gs.text_stream(['{"name": "list_files"}'])))
    assert sum(r[0] == "call" for r in out) == calls


def test_without_declared_tools_nothing_is_held() -> None:
    ch = gs.repair_only(req=gs.request(tools=[]))
    ch.feed(StreamStart("r", "m"))
    assert gs.normalize(ch.feed(TextDelta('<tool_call>{"name": "list_'))) == [("text", '<tool_call>{"name": "list_')]
    assert ch.buffered()["tool_call_repair"] == 0


def test_mid_line_text_streams_with_only_its_trailing_whitespace_held() -> None:
    ch = started()
    # (chunk, events sent for it, characters held afterwards)
    steps = [("Hello", [("TextDelta", "Hello")], 0),
             (" there, ", [("TextDelta", " there,")], 1),
             ("  ", [], 3),
             ("world", [("TextDelta", "   world")], 0)]
    for chunk, events, held in steps:
        assert raw(ch.feed(TextDelta(chunk))) == events, chunk
        assert ch.buffered()["tool_call_repair"] == held, chunk


def test_an_upstream_custom_tool_call_stays_custom() -> None:
    ch = started()
    ch.feed(TextDelta('{"name": "list_files"}'))
    out = ch.feed(ToolCallStart(0, "call_c", "apply_patch", True))
    assert [(type(e).__name__, e.index, e.id, e.name, e.custom) for e in out] == [
        ("ToolCallStart", 1, "call_c", "apply_patch", True)]
