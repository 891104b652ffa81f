"""Tool-call repair's conservative checks on their own: which parsed JSON values count as tool calls
(``normalize_calls``) and which calls the request's declared tools accept (``ToolValidator``).

The guard reaches these only after the streaming scanner has already turned most look-alikes away,
so some refusals here (an unknown key next to a call, a wrapper holding arguments twice) can only
be seen by asking the checks directly. Tables of value → expected calls (or None for "text")."""

from __future__ import annotations

from typing import Any

import pytest

from router.guards.repair import ToolValidator, normalize_calls
from router.wire.canonical import Tool

DEEP = "[" * 100_000 + "]" * 100_000  # valid JSON too deep for the parser: text, never a crash

NORMALIZED: list[tuple[str, Any, list[tuple[str, dict]] | None]] = [
    # the name keys, each alone
    ("name", {"name": "f"}, [("f", {})]),
    ("tool", {"tool": "f"}, [("f", {})]),
    ("tool_name", {"tool_name": "f"}, [("f", {})]),
    ("function_as_name", {"function": "f", "parameters": {"a": 1}}, [("f", {"a": 1})]),
    # the argument keys, each alone
    ("arguments", {"name": "f", "arguments": {"a": 1}}, [("f", {"a": 1})]),
    ("parameters", {"name": "f", "parameters": {"a": 1}}, [("f", {"a": 1})]),
    ("args", {"name": "f", "args": {"a": 1}}, [("f", {"a": 1})]),
    ("input", {"name": "f", "input": {"a": 1}}, [("f", {"a": 1})]),
    ("params", {"name": "f", "params": {"a": 1}}, [("f", {"a": 1})]),
    # arguments given as a JSON string, as OpenAI writes them
    ("string_args", {"name": "f", "arguments": '{"a": 1}'}, [("f", {"a": 1})]),
    ("empty_string_args", {"name": "f", "arguments": ""}, [("f", {})]),
    ("blank_string_args", {"name": "f", "arguments": " \n "}, [("f", {})]),
    ("string_args_not_json", {"name": "f", "arguments": "{a: 1}"}, None),
    ("string_args_not_object", {"name": "f", "arguments": "[1]"}, None),
    ("string_args_too_deep", {"name": "f", "arguments": DEEP}, None),
    ("args_not_object", {"name": "f", "arguments": [1]}, None),
    ("args_null", {"name": "f", "arguments": None}, None),
    # id and type may come along
    ("id_and_type", {"id": "c1", "type": "function", "name": "f"}, [("f", {})]),
    # the wrappers: the call is inside
    ("openai_shape", {"type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}, [("f", {"a": 1})]),
    ("function_call_wrapper", {"function_call": {"name": "f", "arguments": {}}}, [("f", {})]),
    ("tool_call_wrapper", {"tool_call": {"tool": "f", "args": {"b": 2}}}, [("f", {"b": 2})]),
    ("wrapper_and_outer_arguments", {"function": {"name": "f"}, "arguments": {}}, None),
    ("wrapper_and_outer_input", {"tool_call": {"name": "f"}, "input": {}}, None),
    ("wrapper_with_unknown_key", {"function": {"name": "f", "colour": "red"}}, None),
    ("wrapper_holding_no_name", {"function_call": {"arguments": {}}}, None),
    ("wrapped_twice", {"function": {"function": {"name": "f"}}}, None),
    # arrays: every item must be a call
    ("array_of_two", [{"name": "f"}, {"tool": "g", "args": {"x": 1}}], [("f", {}), ("g", {"x": 1})]),
    ("array_with_a_non_call", [{"name": "f"}, {"data": 1}], None),
    ("array_with_an_empty_object", [{"name": "f"}, {}], None),
    ("array_with_a_number", [{"name": "f"}, 1], None),
    ("empty_array", [], None),
    # not calls
    ("empty_object", {}, None),
    ("string", "f", None),
    ("number", 3, None),
    ("unknown_key", {"name": "f", "reason": "curious"}, None),
    ("no_name", {"arguments": {}}, None),
    ("two_names", {"name": "f", "tool": "g"}, None),
    ("name_not_string", {"name": 3}, None),
    ("two_argument_keys", {"name": "f", "arguments": {}, "input": {}}, None),
]


@pytest.mark.parametrize(("cid", "value", "calls"), NORMALIZED, ids=[c[0] for c in NORMALIZED])
def test_normalize_calls(cid: str, value: Any, calls: list | None) -> None:
    assert normalize_calls(value) == calls


TOOLS = [
    Tool("read_file", "", {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}),
    Tool("no_schema", "", None),
    Tool("empty_schema", "", {}),
    Tool("broken_schema", "", {"type": 12}),
    Tool("draft7", "", {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
                        "properties": {"n": {"type": "integer", "exclusiveMaximum": 3}}}),
]

VALID = [
    ("read_file", {"path": "a"}, True),
    ("read_file", {"path": 1}, False),
    ("read_file", {}, False),
    ("no_schema", {"anything": [1]}, True),
    ("empty_schema", {"anything": [1]}, True),
    ("broken_schema", {"anything": [1]}, True),  # an unusable schema: name and parse suffice
    ("draft7", {"n": 2}, True),
    ("draft7", {"n": 3}, False),
    ("undeclared", {}, False),
    ("READ_FILE", {"path": "a"}, False),
]


@pytest.mark.parametrize(("name", "args", "ok"), VALID, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(VALID)])
def test_tool_validator(name: str, args: dict, ok: bool) -> None:
    validator = ToolValidator(TOOLS)
    assert validator.valid(name, args) is ok
    assert validator.valid(name, args) is ok  # the second time from its cached validator


def test_a_validator_without_tools_is_false() -> None:
    assert not ToolValidator([])
    assert ToolValidator(TOOLS[:1])
