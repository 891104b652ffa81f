"""Golden cases: input, ``---``, expected canonical text + IR, or the exact error text.

Each ``cases/*.txt`` file holds cases separated by lines of ``=====``; the first line of a case is
``start: <entry point>`` (command, chain, condition, calls, arglist, message or rules). Run with
``UPDATE_GOLDENS=1`` to rewrite the expected parts after an intended change, then review the diff.
"""

from __future__ import annotations

import os
import pathlib

import pytest

from dsl import ir, load_rules_text, parse_message
from dsl.compile import Context, compile_command, compile_limits, compile_overrides, compile_post, check_chain, check_condition
from dsl.errors import RulesError
from dsl.parser import parse
from dsl.printer import print_chain, print_condition, print_limit, print_overrides, print_post, print_rules

CASES = pathlib.Path(__file__).parent / "cases"
BACKENDS = ("openai", "anthropic", "gemini", "openrouter", "azure", "ollama", "echo")
SEPARATOR = "\n=====\n"


def render(start: str, text: str) -> str:
    """What a case produces: canonical print and IR, or the rendered error."""
    ctx = Context(text, "<input>", BACKENDS)
    try:
        if start == "rules":
            loaded = load_rules_text(text, "rules.yaml", BACKENDS)
            loaded.raise_for_errors()
            warnings = "".join(w.render() + "\n" for w in loaded.warnings)
            return warnings + print_rules(loaded.rules) + "\n" + "\n".join(map(repr, loaded.rules))
        if start == "message":
            parsed = parse_message(text, known_backends=BACKENDS)
            lines = [f"text: {parsed.text!r}", f"only_commands: {parsed.only_commands}"]
            lines += [f"command {c.name}: {c.edits!r}" for c in parsed.commands]
            lines += [e.render() for e in parsed.errors]
            return "\n".join(lines)
        node = parse(text, start.split(":")[0])  # type: ignore[arg-type]
        if start == "condition":
            return print_condition(check_condition(node, ctx)) + "\n" + repr(node)
        if start == "chain":
            return print_chain(check_chain(node, ctx)) + "\n" + repr(node)
        if start == "command":
            return repr(compile_command(node, ctx))
        if start == "calls:limits":
            return ", ".join(map(print_limit, compile_limits(node, ctx)))
        if start == "calls:post":
            return ", ".join(map(print_post, compile_post(node, ctx)))
        if start == "arglist":
            return print_overrides(compile_overrides(node, ctx))
        raise AssertionError(f"unknown start {start}")
    except RulesError as exc:
        return "ERROR\n" + exc.render()


def load_cases() -> list[tuple[str, int, str, str, str]]:
    out = []
    for path in sorted(CASES.glob("*.txt")):
        for i, case in enumerate(path.read_text().split(SEPARATOR)):
            head, _, rest = case.partition("\n")
            source, _, expected = rest.partition("\n---\n")
            out.append((path.name, i, head.removeprefix("start: ").strip(), source, expected.rstrip("\n")))
    return out


CASE_LIST = load_cases()


@pytest.mark.parametrize(("file", "index", "start", "source", "expected"), CASE_LIST,
                         ids=[f"{c[0]}#{c[1]}" for c in CASE_LIST])
def test_golden(file: str, index: int, start: str, source: str, expected: str) -> None:
    actual = render(start, source)
    if os.environ.get("UPDATE_GOLDENS"):
        path = CASES / file
        cases = path.read_text().split(SEPARATOR)
        head, _, rest = cases[index].partition("\n")
        src, _, _ = rest.partition("\n---\n")
        cases[index] = f"{head}\n{src}\n---\n{actual}"
        path.write_text(SEPARATOR.join(cases).rstrip("\n") + "\n")
        return
    assert actual == expected


def test_every_case_has_an_expectation() -> None:
    assert CASE_LIST and all(c[4] for c in CASE_LIST), "run with UPDATE_GOLDENS=1 to fill expectations"
