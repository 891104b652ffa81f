"""The fake provider is split per wire format: the shared engine (``core``, ``answers``) looks a
format up in ``FORMATS`` instead of branching on its name, and ``fakes.provider`` still offers
every name tests import from it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import fakes.provider as provider
from fakes.answers import FORMATS
from fakes.core import FAMILIES

FAKES = Path(provider.__file__).parent

# Everything fakes/provider.py defined before the split, public or used by tests.
PROVIDER_NAMES = (
    "FakeProvider", "RecordedRequest", "RECORD", "FAMILIES", "DEFAULT_KEYS", "DEFAULT_MODELS",
    "DEFAULT_TEXTUAL_TOOL_CALL", "Behaviour", "Reply", "Error", "Delay", "StreamChunks", "Reset", "ResetAfterChunks",
    "Loop", "StreamErrorAfter", "RawStream", "behaviour_name", "reply", "error", "delay", "stream_chunks", "reset",
    "reset_after_chunks", "textual_tool_call", "loop", "stream_error", "raw_stream", "TIERS", "CodeAssistState",
    "OAuthState", "openai_error", "anthropic_error", "google_error", "error_body",
)


def family_branches(source: str) -> list[int]:
    """Lines comparing with a family name (``family == "openai"``, ``x.family in ("openai", ...)``)."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            for side in node.comparators:
                values = [side] if isinstance(side, ast.Constant) else list(getattr(side, "elts", []))
                if any(isinstance(v, ast.Constant) and v.value in FAMILIES for v in values):
                    lines.append(node.lineno)
    return lines


def test_checker_finds_a_branch() -> None:
    assert family_branches('if ex.family == "anthropic":\n    pass\n') == [1]
    assert family_branches('ok = ex.family in ("openai", "anthropic")\n') == [1]


@pytest.mark.parametrize("name", ["core.py", "answers.py"])
def test_engine_does_not_branch_on_a_format(name: str) -> None:
    assert family_branches((FAKES / name).read_text()) == []


def test_every_family_has_a_format() -> None:
    assert set(FORMATS) == set(FAMILIES) and all(FORMATS[f].name == f for f in FAMILIES)


@pytest.mark.parametrize("name", PROVIDER_NAMES)
def test_provider_still_offers(name: str) -> None:
    assert hasattr(provider, name)
