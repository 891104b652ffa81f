"""Tool-call repair: a table of textual tool calls (and look-alikes that must stay text), checked
whole, at every split point, and at random multi-splits; plus the cap and the edge cases."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import guards_support as gs
from router.wire.canonical import (
    ChatResponse, StreamEnd, StreamStart, TextDelta, TextPart, ToolCallDelta, ToolCallPart, ToolCallStart, ToolChoice,
)
from router.guards import apply_to_response

RF = {"path": "src/app.py"}

# (id, text, expected calls [(name, args)], expected text)
REPAIRED = [
    ("bare_json", '{"name": "read_file", "arguments": {"path": "src/app.py"}}', [("read_file", RF)], ""),
    ("bare_json_preamble", 'I will read the file.\n\n{"name": "read_file", "arguments": {"path": "src/app.py"}}',
     [("read_file", RF)], "I will read the file."),
    ("bare_json_trailing_text_dropped", '{"name":"read_file","arguments":{"path":"src/app.py"}}\nThe file has 3 lines.',
     [("read_file", RF)], ""),
    ("function_parameters", '{"function": "run_command", "parameters": {"command": "ls -la"}}',
     [("run_command", {"command": "ls -la"})], ""),
    ("openai_shape_string_args",
     '{"type": "function", "function": {"name": "search", "arguments": "{\\"query\\": \\"foo\\"}"}}',
     [("search", {"query": "foo"})], ""),
    ("tool_args", '{"tool": "search", "args": {"query": "x"}}', [("search", {"query": "x"})], ""),
    ("fenced_json", 'Let me check.\n```json\n{"name": "list_files", "arguments": {}}\n```', [("list_files", {})],
     "Let me check."),
    ("fenced_no_lang", '```\n{"name": "read_file", "arguments": {"path": "src/app.py"}}\n```\n', [("read_file", RF)], ""),
    ("tool_call_line", 'TOOL CALL: run_command {"command": "pytest -q"}', [("run_command", {"command": "pytest -q"})], ""),
    ("tool_call_line_underscore_lower", 'Reading it.\ntool_call: read_file {"path": "src/app.py"}',
     [("read_file", RF)], "Reading it."),
    ("tool_call_line_json", 'TOOL CALL: {"name": "search", "arguments": {"query": "a b"}}',
     [("search", {"query": "a b"})], ""),
    ("tool_call_tag", '<tool_call>\n{"name": "read_file", "arguments": {"path": "src/app.py"}}\n</tool_call>',
     [("read_file", RF)], ""),
    ("tool_call_tags_two", '<tool_call>{"name": "list_files", "arguments": {}}</tool_call>\n'
                           '<tool_call>{"name": "search", "arguments": {"query": "q"}}</tool_call>',
     [("list_files", {}), ("search", {"query": "q"})], ""),
    ("tool_call_tag_unclosed_at_end", 'On it. <tool_call>{"name": "list_files", "arguments": {}}',
     [("list_files", {})], "On it."),
    ("mistral_two_calls", '[TOOL_CALLS] [{"name": "read_file", "arguments": {"path": "src/app.py"}}, '
                          '{"name": "search", "arguments": {"query": "q"}}]',
     [("read_file", RF), ("search", {"query": "q"})], ""),
    ("mistral_after_text", 'Sure [TOOL_CALLS] [{"name":"list_files","arguments":{}}]', [("list_files", {})], "Sure"),
    ("function_tag", '<function=search>{"query": "needle"}</function>', [("search", {"query": "needle"})], ""),
    ("escapes_in_strings", '{"name": "run_command", "arguments": {"command": "echo \\"}\\" \\\\ done \\u00e9"}}',
     [("run_command", {"command": 'echo "}" \\ done é'})], ""),
    ("unicode_args", '{"name":"search","arguments":{"query":"héllo → 世界 🎉"}}', [("search", {"query": "héllo → 世界 🎉"})], ""),
    ("indented_no_arguments", 'Listing:\n  {"name": "list_files"}', [("list_files", {})], "Listing:"),
    ("bare_array", '[{"name": "list_files", "arguments": {}}]', [("list_files", {})], ""),
    ("pretty_printed", '{\n  "name": "run_command",\n  "arguments": {\n    "command": "make",\n    "timeout": 30\n  }\n}',
     [("run_command", {"command": "make", "timeout": 30})], ""),
    ("after_json_lookalike", '```json\n{"users": [1, 2]}\n```\nNow the call:\n{"name": "list_files", "arguments": {}}',
     [("list_files", {})], '```json\n{"users": [1, 2]}\n```\nNow the call:'),
]

UNCHANGED = [
    ("unknown_tool", '{"name": "delete_everything", "arguments": {}}'),
    ("schema_invalid_type", '{"name": "read_file", "arguments": {"path": 42}}'),
    ("schema_missing_required", '{"name": "read_file", "arguments": {}}'),
    ("schema_extra_property", '{"name": "read_file", "arguments": {"path": "a", "mode": "rb"}}'),
    ("unknown_key", '{"name": "read_file", "arguments": {"path": "a"}, "reason": "curious"}'),
    ("two_argument_keys", '{"name": "list_files", "arguments": {}, "parameters": {}}'),
    ("malformed_unclosed", '{"name": "read_file", "arguments": {"path": "a"}'),
    ("malformed_trailing_comma", '{"name": "list_files", "arguments": {},}'),
    ("mid_line_json", 'Call it like {"name": "read_file", "arguments": {"path": "a"}} in your code.'),
    ("python_fence", '```python\nprint(1)\n{"name": "read_file", "arguments": {"path": "x"}}\n```\nDone.'),
    ("json_fence_data", '```json\n{"users": [{"name": "read_file", "arguments": {"path": "a"}}]}\n```'),
    ("json_fence_unclosed", '```json\n{"name": "read_file", "arguments": {"path": "a"}}'),
    ("html", '<b>bold</b> and <tool>x</tool> and <function>f</function> <tool_call>not json</tool_call>'),
    ("markdown_links", '[link](http://x) [TOOL] [TOOL_CALL] [TOOL_CALLS] nothing\n[x]: http://y'),
    ("tool_call_line_unknown", 'TOOL CALL: rm_rf {"path": "/"}'),
    ("tool_call_words", 'Tool call: this is how it works.\nTOOLS are nice.\nThe end.'),
    ("js_code", 'function f() {\n  return 1;\n}\n{\n  a: 1\n}\n'),
    ("package_json", '{\n  "name": "my-app",\n  "version": "1.0.0"\n}\n'),
    ("array_of_numbers", '[1, 2, 3]\n[{"x": 1}]\n'),
    ("lone_brace_then_text", '{ not json at all\nand then <tool_call> text'),
    ("whitespace_only", '  \n\n  '),
    ("backslashes", 'C:\\path\\to\\file and "quoted \\" text" {\\"x\\"}'),
    ("inline_code", '`x` and ``y`` and ```z``` done'),
]

CASES = [(cid, text, calls, out) for cid, text, calls, out in REPAIRED] + [(cid, text, [], text) for cid, text in UNCHANGED]
IDS = [c[0] for c in CASES]


def expected(calls: list[tuple[str, dict]], text: str) -> list[tuple]:
    out: list[tuple] = [("start",)]
    if text:
        out.append(("text", text))
    for i, (name, args) in enumerate(calls):
        out.append(("call", i, f"call_{i:024x}", name, args))
    out.append(("end", "tool_calls" if calls else "stop"))
    return out


def observed(pieces: list[str]) -> list[tuple]:
    result = gs.normalize(gs.run(gs.repair_only(), gs.text_stream(pieces)))
    return [r[:4] + (json.loads(r[4]),) if r[0] == "call" else r for r in result]


@pytest.mark.parametrize("cid,text,calls,out", CASES, ids=IDS)
def test_whole_text(cid: str, text: str, calls: list, out: str) -> None:
    assert observed([text]) == expected(calls, out)


@pytest.mark.parametrize("cid,text,calls,out", CASES, ids=IDS)
def test_every_single_split_point(cid: str, text: str, calls: list, out: str) -> None:
    whole = expected(calls, out)
    for i in range(1, len(text)):
        assert observed(gs.split(text, [i])) == whole, f"split at {i}: {text[:i]!r} | {text[i:]!r}"


@pytest.mark.parametrize("cid,text,calls,out", CASES, ids=IDS)
def test_one_character_chunks(cid: str, text: str, calls: list, out: str) -> None:
    assert observed(list(text)) == expected(calls, out)


@settings(max_examples=300, deadline=None)
@given(case=st.sampled_from(CASES), data=st.data())
def test_random_multi_splits(case: tuple, data: st.DataObject) -> None:
    cid, text, calls, out = case
    cuts = data.draw(st.lists(st.integers(min_value=1, max_value=max(1, len(text) - 1)), max_size=12))
    assert observed(gs.split(text, cuts)) == expected(calls, out)


@settings(max_examples=200, deadline=None)
@given(prefix=st.text(max_size=40), case=st.sampled_from(REPAIRED), data=st.data())
def test_arbitrary_prefix_text_is_split_invariant(prefix: str, case: tuple, data: st.DataObject) -> None:
    """Random text before a call: whatever it does, every split gives what the whole text gives."""
    text = prefix + "\n" + case[1]
    whole = observed([text])
    cuts = data.draw(st.lists(st.integers(min_value=1, max_value=len(text) - 1), max_size=10))
    assert observed(gs.split(text, cuts)) == whole


def test_text_streams_out_before_the_end() -> None:
    """Text that cannot be a call is not held back."""
    ch = gs.repair_only()
    ch.feed(StreamStart("r", "m"))
    assert gs.normalize(ch.feed(TextDelta("Hello there, "))) == [("text", "Hello there,")]  # trailing space held
    assert gs.normalize(ch.feed(TextDelta("see <b>this</b> and [that]"))) == [("text", " see <b>this</b> and [that]")]
    assert ch.feed(TextDelta("\n<tool_c")) == []  # may become a tag: held
    assert gs.normalize(ch.feed(TextDelta("ar>"))) == [("text", "\n<tool_car>")]


def test_json_lookalike_streams_on_after_its_first_key() -> None:
    ch = gs.repair_only()
    ch.feed(StreamStart("r", "m"))
    assert ch.feed(TextDelta('{"na')) == []  # may become "name"
    assert gs.normalize(ch.feed(TextDelta('v": [1, {"name": '))) == [("text", '{"nav": [1, {"name":')]
    ch = gs.repair_only()
    ch.feed(StreamStart("r", "m"))
    assert gs.normalize(ch.feed(TextDelta('{"us'))) == [("text", '{"us')]  # no tool-call key starts with "us"


def test_no_tools_declared_is_a_pass_through() -> None:
    text = '{"name": "read_file", "arguments": {"path": "a"}}'
    ch = gs.repair_only(req=gs.request(tools=[]))
    assert gs.normalize(gs.run(ch, gs.text_stream([text]))) == [("start",), ("text", text), ("end", "stop")]


def test_tool_choice_none_disables_repair() -> None:
    req = gs.request()
    req.tool_choice = ToolChoice("none")
    text = '{"name": "list_files", "arguments": {}}'
    assert gs.normalize(gs.run(gs.repair_only(req=req), gs.text_stream([text])))[1] == ("text", text)


def test_cap_gives_up_and_stops_trying() -> None:
    long_arg = "x" * 400
    text = f'{{"name": "search", "arguments": {{"query": "{long_arg}"}}}}\n{{"name": "list_files"}}'
    out = gs.normalize(gs.run(gs.repair_only(cap=256), gs.text_stream([text[i:i + 7] for i in range(0, len(text), 7)])))
    assert out == [("start",), ("text", text), ("end", "stop")]
    small = '{"name": "list_files"}'
    out = gs.normalize(gs.run(gs.repair_only(cap=256), gs.text_stream([small])))
    assert out[1][3] == "list_files"


def test_cap_decision_is_split_invariant() -> None:
    long_arg = "y" * 300
    text = f'<tool_call>{{"name": "search", "arguments": {{"query": "{long_arg}"}}}}</tool_call>'
    whole = gs.normalize(gs.run(gs.repair_only(cap=256), gs.text_stream([text])))
    for i in range(1, len(text), 13):
        assert gs.normalize(gs.run(gs.repair_only(cap=256), gs.text_stream(gs.split(text, [i, i + 200])))) == whole
    assert whole[1] == ("text", text)


def test_upstream_tool_calls_are_reindexed_after_repaired_ones() -> None:
    events = [StreamStart("r", "m"), TextDelta('{"name": "list_files"}'), ToolCallStart(0, "call_up", "search"),
              ToolCallDelta(0, '{"query":'), ToolCallDelta(0, '"z"}'), StreamEnd("tool_calls")]
    out = gs.normalize(gs.run(gs.repair_only(), events))
    assert out == [("start",), ("call", 0, "call_" + "0" * 24, "list_files", "{}"),
                   ("call", 1, "call_up", "search", '{"query":"z"}'), ("end", "tool_calls")]


def test_length_finish_becomes_tool_calls_only_when_a_call_was_repaired() -> None:
    out = gs.normalize(gs.run(gs.repair_only(), gs.text_stream(['{"name": "list_files"}'], finish="length")))
    assert out[-1] == ("end", "tool_calls")
    out = gs.normalize(gs.run(gs.repair_only(), gs.text_stream(["plain"], finish="length")))
    assert out[-1] == ("end", "length")


def test_non_streaming_response_is_repaired_in_place() -> None:
    resp = ChatResponse(id="r1", model="m", parts=[TextPart('Reading.\n<tool_call>{"name": "read_file", '
                                                            '"arguments": {"path": "a"}}</tool_call>')], created=5)
    result = apply_to_response(gs.repair_only(), resp)
    assert result.id == "r1" and result.created == 5 and result.finish_reason == "tool_calls"
    assert isinstance(result.parts[0], TextPart) and result.parts[0].text == "Reading."
    call = result.parts[1]
    assert isinstance(call, ToolCallPart) and call.name == "read_file" and json.loads(call.arguments) == {"path": "a"}
    assert call.id.startswith("call_") and len(call.id) == 5 + 24


def test_guard_event_recorded() -> None:
    ch = gs.repair_only()
    gs.run(ch, gs.text_stream(['{"name": "list_files"}']))
    assert [(e.kind, e.detail) for e in ch.events] == [("tool_call_repaired", "list_files (from text)")]


def test_broken_schema_falls_back_to_name_and_parse() -> None:
    from router.wire.canonical import Tool
    req = gs.request(tools=[Tool("odd", "", {"type": 12})])
    out = gs.normalize(gs.run(gs.repair_only(req=req), gs.text_stream(['{"name": "odd", "arguments": {"a": 1}}'])))
    assert out[1][3] == "odd"
