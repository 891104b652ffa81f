"""The JSON extent scanner and the first-key check, on their own: extents found whatever the
split, escapes split at a chunk edge, look-alikes rejected at their first foreign key."""

from __future__ import annotations

import json

import pytest

from router.guards.json_extent import ALLOWED_KEYS, JsonScan, first_key

VALUES = [
    '{"name": "read_file", "arguments": {"path": "src/app.py"}}',
    '[{"name": "a"}, {"name": "b", "arguments": {"x": [1, {"y": 2}]}}]',
    '{"name": "run", "arguments": {"command": "echo \\"}]\\" \\\\"}}',
    '{"name": "x", "arguments": {"q": "\\u007d brace"}}',
]


@pytest.mark.parametrize("value", VALUES)
def test_extent_is_found_at_every_split_point(value: str) -> None:
    text = "  " + value + " and then text }"
    whole_end = 2 + len(value)
    assert JsonScan(2).scan(text) == whole_end
    for cut in range(3, len(text)):
        scan = JsonScan(2)
        first = scan.scan(text[:cut])
        if cut < whole_end:
            assert first is None, cut
            assert scan.scan(text) == whole_end, cut
        else:
            assert first == whole_end, cut
    json.loads(text[2:whole_end])  # the extent is exactly the value


def test_an_escape_split_at_the_buffer_end_is_looked_at_again() -> None:
    text = '{"a": "x\\"}"}'
    scan = JsonScan(0)
    assert scan.scan(text[:9]) is None  # ends with the backslash
    assert scan.scan(text) == len(text)


def test_rebase_follows_a_buffer_trimmed_at_the_front() -> None:
    scan = JsonScan(0)
    assert scan.scan('{"a": [1, ') is None
    scan.rebase(4)
    assert scan.scan(': [1, 2]} tail') == len(': [1, 2]}')


@pytest.mark.parametrize("text", [
    '{"name": "my-app", "version": "1.0.0", "dependencies": {',
    '{"users": [',
])
def test_keyed_scan_rejects_at_the_first_foreign_key_before_the_value_closes(text: str) -> None:
    assert JsonScan(0, key_depth=1).scan(text) == -1
    assert JsonScan(0).scan(text) is None  # unkeyed: just not closed yet


def test_keyed_scan_accepts_every_tool_call_key_and_ignores_nested_keys() -> None:
    body = ", ".join(f'"{k}": {{"nested_key": 1}}' for k in sorted(ALLOWED_KEYS))
    text = "{" + body + "}"
    assert JsonScan(0, key_depth=1).scan(text) == len(text)
    arr = f"[{text}]"
    assert JsonScan(0, key_depth=2).scan(arr) == len(arr)


def test_a_key_string_split_before_its_colon_is_decided_once_the_colon_arrives() -> None:
    scan = JsonScan(0, key_depth=1)
    assert scan.scan('{"version"') is None
    assert scan.scan('{"version"  ') is None
    assert scan.scan('{"version"  : 1}') == -1


@pytest.mark.parametrize("text, verdict", [
    ('{"name"', "yes"),
    ('{ "arguments": {}', "yes"),
    ('[ {"tool_call"', "yes"),
    ('{"na', "need"),
    ('{"nam\\', "need"),
    ("{", "need"),
    ("[", "need"),
    ("[ ", "need"),
    ('{"us', "other"),
    ('{"users": 1}', "other"),
    ('[{"version"', "other"),
    ("{x", "no"),
    ("[1, 2]", "no"),
    ("{}", "no"),
])
def test_first_key_verdicts(text: str, verdict: str) -> None:
    assert first_key(text, 0) == verdict
