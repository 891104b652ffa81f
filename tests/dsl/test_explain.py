"""Golden cases for ``explain``: each ``explain/*.case`` holds a JSON request line, a rules file,
``---``, then the expected text and, after another ``---``, the expected ``--json`` object.
Run with ``UPDATE_GOLDENS=1`` to rewrite the expectations after an intended change; review the diff.

The request's clock is fixed (10:00 on a Monday) so time and weekday rules are stable.
"""

from __future__ import annotations

import json
import os
import pathlib

import pytest

from dsl import RuleSet, load_rules_text
from dsl.evaluate import Facts
from dsl.explain import explain, why
from dsl.parser import parse
from dsl.session import session_ruleset

CASES = pathlib.Path(__file__).parent / "explain"
BACKENDS = ("openai", "anthropic", "gemini", "openrouter", "azure", "echo")


def render(source: str) -> str:
    head, _, rules_text = source.partition("\n")
    request = json.loads(head)
    session = request.pop("session_routes", None)
    loaded = load_rules_text(rules_text, "routes.d/10.yaml", BACKENDS)
    loaded.raise_for_errors()
    facts = Facts(request.pop("model"), time="10:00", weekday="mon",
                  headers={k.lower(): v for k, v in request.pop("headers", {}).items()}, **request)
    session_rules = session_ruleset(session) if session else None
    result = explain(facts, RuleSet(loaded.rules), session_rules=session_rules, default_backend="echo")
    return result.text() + "\n---\n" + json.dumps(result.as_json(), indent=2)


CASE_FILES = sorted(CASES.glob("*.case"))


@pytest.mark.parametrize("path", CASE_FILES, ids=[p.stem for p in CASE_FILES])
def test_explain_golden(path: pathlib.Path) -> None:
    source, _, expected = path.read_text().partition("\n---\n")
    actual = render(source)
    if os.environ.get("UPDATE_GOLDENS"):
        path.write_text(f"{source}\n---\n{actual}\n")
        return
    assert actual == expected.rstrip("\n")


def test_there_are_cases() -> None:
    assert len(CASE_FILES) >= 3


def test_why_agrees_with_evaluation() -> None:
    """The explanation's verdict is the evaluator's, for conditions of every shape."""
    from dsl.evaluate import compile_condition

    facts = Facts("gpt-4o", tokens=900, stream=True, headers={"x-team": "blue"}, context_window=1000)
    for text in ('model ~ "gpt-4*"', 'model == "x" or tokens > 100', "not stream", "tokens > context_window * 0.8",
                 'header("x-team") in ["red", "blue"] and not tools', "tokens > context_window",
                 'header("x-missing") == "1"', "weekday == \"sun\" or (time >= \"09:00\" and stream)"):
        cond = parse(text, "condition")
        assert why(cond, facts)[0] == compile_condition(cond)(facts), text
