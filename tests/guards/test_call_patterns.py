"""The tool-call pattern table and its matcher, on their own: each form matches its example,
decisions do not depend on where the text was split, look-alikes are rejected early, and the
trigger regex lists exactly the characters the tables start patterns with."""

from __future__ import annotations

import pytest

from router.guards.call_patterns import (
    ANYWHERE, LINE_START, MATCH, NEED, PATTERNS, REJECT, TRIGGER, Matcher, MatchStep,
)

EXAMPLES = {
    "tool_call_tag": '<tool_call>\n{"name": "list_files", "arguments": {}}\n</tool_call>',
    "function_tag": '<function=search>{"query": "q"}</function>',
    "mistral": '[TOOL_CALLS] [{"name": "list_files"}]',
    "bare_object": '{"name": "list_files", "arguments": {}}',
    "bare_array": '[{"name": "list_files"}]',
    "fence": '```json\n{"name": "list_files"}\n```',
    "tool_call_line": 'TOOL CALL: search {"query": "q"}',
    "tool_call_line_json": 'tool call: {"name": "search"}',
    "tool_call_line_us": 'TOOL_CALL: search {"query": "q"}',
    "tool_call_line_us_json": 'Tool_Call: {"name": "search"}',
}


def feed(name: str, pieces: list[str], final: bool = True) -> tuple[list[int], MatchStep, Matcher]:
    matcher = Matcher(PATTERNS[name])
    buf, statuses = "", []
    step = MatchStep(NEED)
    for i, piece in enumerate(pieces):
        buf += piece
        step = matcher.step(buf, final and i == len(pieces) - 1)
        statuses.append(step.status)
    return statuses, step, matcher


def test_every_pattern_has_an_example() -> None:
    assert set(EXAMPLES) == set(PATTERNS)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_each_form_matches_its_example_whole_and_at_every_split(name: str) -> None:
    text = EXAMPLES[name] + "\nafter"
    _, whole, matcher = feed(name, [text])
    assert whole.status == MATCH
    assert whole.end == len(EXAMPLES[name])
    named = PATTERNS[name].named
    assert matcher.name == ("search" if named else "")
    assert matcher.json_text(text).startswith(("{", "["))
    for cut in range(1, len(text)):
        statuses, step, _ = feed(name, [text[:cut], text[cut:]])
        assert step == whole, cut
        assert statuses[0] in (NEED, MATCH), cut


def test_unclosed_tag_matches_at_the_end_of_the_response_only() -> None:
    text = '<tool_call>{"name": "list_files"}'
    assert feed("tool_call_tag", [text], final=False)[1].status == NEED
    assert feed("tool_call_tag", [text], final=True)[1] == MatchStep(MATCH, len(text))


@pytest.mark.parametrize("name, text, end, skip", [
    ("tool_call_tag", "<b>bold</b>", 1, None),
    ("bare_object", '{"version": "1.0"}', 0, "json"),  # foreign first key: stream the value as text
    ("bare_object", '{"name": "x", "version": 1}', 0, "json"),  # foreign later key
    ("fence", "```python\nprint(1)\n```", 3, "fence"),  # opened: a code block is streamed through
    ("fence", '```json\n{"users": []}\n```', 8, "fence"),  # opened: the whole block is text
    ("fence", "``x``", 1, None),  # never opened (two backticks): only the first character is settled
    ("tool_call_line", "The answer is 42.", 1, None),
])
def test_look_alikes_are_rejected_with_the_text_they_settle(name: str, text: str, end: int, skip: str | None) -> None:
    assert feed(name, [text])[1] == MatchStep(REJECT, end, skip)


def test_rejection_is_early_and_sticky() -> None:
    matcher = Matcher(PATTERNS["tool_call_tag"])
    assert matcher.step("<t", False).status == NEED
    rejected = matcher.step("<b", False)
    assert rejected.status == REJECT
    assert matcher.step("<tool_call>", False) is rejected


def test_trigger_regex_lists_exactly_the_table_characters() -> None:
    for c in ANYWHERE:
        assert TRIGGER.search("x" + c) is not None
    for c in LINE_START:
        assert TRIGGER.search("\n  " + c) is not None
    for c in map(chr, range(32, 127)):
        if c not in ANYWHERE:
            assert TRIGGER.search("x" + c) is None, c
        if c not in ANYWHERE and c not in LINE_START:
            assert TRIGGER.search("\n  " + c) is None, c
