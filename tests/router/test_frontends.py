"""The HTTP edge is generic: what differs between wire formats is asked of the front end (or its
codec), so no resource under ``router/http/`` branches on which front end it serves."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import router.http
from router.frontends import ANTHROPIC, FRONTENDS, GEMINI, OPENAI, is_google_client, models_frontend

HTTP = Path(router.http.__file__).parent
NAMES = {"OPENAI", "ANTHROPIC", "GEMINI"}


def frontend_branches(source: str) -> list[int]:
    """Lines comparing something with a front-end constant (``x is OPENAI``, ``x == GEMINI``,
    ``frontend.name == "openai"``): a codec-specific branch in generic code."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Compare):
            continue
        for side in (node.left, *node.comparators):
            named = isinstance(side, ast.Name) and side.id in NAMES
            by_name = isinstance(side, ast.Constant) and side.value in FRONTENDS and any(
                isinstance(s, ast.Attribute) and s.attr == "name" for s in (node.left, *node.comparators))
            if named or by_name:
                lines.append(node.lineno)
    return lines


def test_checker_finds_a_branch() -> None:
    assert frontend_branches("if self.frontend is OPENAI:\n    pass\n") == [1]
    assert frontend_branches("ok = frontend.name == 'gemini'\n") == [1]
    assert frontend_branches("codec = self.frontend.codec\n") == []


@pytest.mark.parametrize("path", sorted(HTTP.glob("*.py")), ids=lambda p: p.name)
def test_no_frontend_branches_in_http_edge(path: Path) -> None:
    assert frontend_branches(path.read_text()) == [], f"{path.name}: ask the front end or its codec instead"


@pytest.mark.parametrize(("path", "headers", "params", "expected"), [
    ("/v1/models", {}, {}, OPENAI),
    ("/v2/models", {}, {}, OPENAI),
    ("/v2/models/list", {}, {}, GEMINI),
    ("/v1beta/models", {}, {}, GEMINI),
    ("/v1beta/models/echo:m", {}, {}, GEMINI),
    ("/v1/models", {"x-goog-api-key": "k"}, {}, GEMINI),
    ("/v1/models", {"x-goog-api-client": "genai-py"}, {}, GEMINI),
    ("/v1/models", {}, {"key": "k"}, GEMINI),
    ("/v1/models/echo:m", {"authorization": "Bearer k"}, {}, OPENAI),
])
def test_models_frontend(path: str, headers: dict[str, str], params: dict[str, str], expected: object) -> None:
    assert models_frontend(path, headers, params) is expected


def test_is_google_client_ignores_empty_values() -> None:
    assert not is_google_client({"x-goog-api-key": ""}, {"key": ""})


def test_model_shapes() -> None:
    ids = [("a", "m1"), ("b", "m2")]
    assert OPENAI.list_models(ids, 7) == {"object": "list", "data": [
        {"id": "a:m1", "object": "model", "created": 7, "owned_by": "a"},
        {"id": "b:m2", "object": "model", "created": 7, "owned_by": "b"}],
        "endpoints": {"chat.completions": "/v2/chat/completions", "responses": "/v2/responses",
                      "messages": "/v2/messages"}}
    assert GEMINI.list_models(ids, 7) == {"models": [
        {"name": "models/a:m1", "displayName": "m1 (a)",
         "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens"]},
        {"name": "models/b:m2", "displayName": "m2 (b)",
         "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens"]}]}
    assert OPENAI.describe_model("a", "m1", 0) == {"id": "a:m1", "object": "model", "created": 0, "owned_by": "a"}
    assert GEMINI.describe_model("a", "m1", 0)["name"] == "models/a:m1"
    assert ANTHROPIC.list_models(ids, 7) == OPENAI.list_models(ids, 7)  # Anthropic clients list the OpenAI way
