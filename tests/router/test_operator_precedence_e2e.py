"""An operator's ``limits`` and ``set:`` govern the backend and model actually called, whatever
led there (file rule, session route, ``!/oneoff``, ``backend:model`` in the model field,
``!/model``, ``!/backend``), and operator ``set:`` beats a session's own values.

Backends are echo backends that also record every request they are handed, so the test sees
the ``max_tokens`` and ``temperature`` that reached the upstream.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Callable

import falcon.testing
import pytest

from backends.echo import EchoBackend
from backends.keys import KeyChoice
from proxy_support import chat, reply_model, write_config
from router.app import create_app
from router.wire.canonical import ChatRequest, ChatResponse

KEYS = {"a": "key-a-0123456789", "b": "key-b-0123456789"}


class RecordingEcho(EchoBackend):
    """The echo backend, keeping each request it was asked to answer."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.seen: list[ChatRequest] = []

    async def complete(self, request: ChatRequest, keys: KeyChoice | None = None) -> ChatResponse:
        self.seen.append(request)
        return await super().complete(request, keys)

    def stream(self, request: ChatRequest, keys: KeyChoice | None = None) -> Any:
        self.seen.append(request)
        return super().stream(request, keys)


def build(tmp_path: Path, rules: str) -> tuple[falcon.testing.TestClient, dict[str, RecordingEcho]]:
    routes = tmp_path / "routes.d"
    routes.mkdir()
    (routes / "10.yaml").write_text(rules)
    config = write_config(tmp_path, routes_dir=str(routes), backends={"echo": {"type": "echo"}, "up": {"type": "echo"}},
                          auth={"api_keys": list(KEYS.values())})
    backends = {"echo": RecordingEcho("echo"), "up": RecordingEcho("up")}
    return falcon.testing.TestClient(create_app(config, backends=backends)), backends


def auth(who: str = "a") -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[who]}"}


MODEL_RULES = """
rules:
  - name: gpt4-budget
    when: model ~ "gpt-4*"
    limits: rpm(2, per=caller)
    set: max_tokens=100
  - name: alias
    when: model == "alias"
    route: up:gpt-4
"""

BACKEND_RULES = """
rules:
  - name: up-budget
    when: backend == "up"
    limits: rpm(2, per=caller)
    set: max_tokens=100
  - name: alias
    when: model == "alias"
    route: up:cheap
"""

# Each path into a target: (commands sent first in the session, the prompt's prefix, the model asked for).
# A prefix rides along with every prompt (a one-off lasts one request).
PATHS: dict[str, tuple[list[str], str, str]] = {
    "file-route": ([], "", "alias"),
    "session-route": (["!/route-prepend(zzz, up:gpt-4)"], "", "zzz"),
    "oneoff": ([], "!/oneoff(up:gpt-4) ", "zzz"),
    "model-field": ([], "", "up:gpt-4"),
    "model-command": (["!/model(up:gpt-4)"], "", "zzz"),
    "backend-command": (["!/backend(up)"], "", "gpt-4"),
}

BACKEND_PATHS: dict[str, tuple[list[str], str, str]] = {
    "file-route": ([], "", "alias"),
    "session-route": (["!/route-prepend(zzz, up:cheap)"], "", "zzz"),
    "oneoff": ([], "!/oneoff(up:cheap) ", "zzz"),
    "model-field": ([], "", "up:cheap"),
    "model-command": (["!/model(up:cheap)"], "", "zzz"),
    "backend-command": (["!/backend(up)"], "", "cheap"),
}


def run_path(client: falcon.testing.TestClient, path: tuple[list[str], str, str], frontend: str,
             stream: bool = False, requests: int = 3) -> list[Any]:
    commands, prefix, model = path
    session = "s-" + uuid.uuid4().hex[:10]
    for command in commands:
        assert chat(client, frontend, command, session=session, headers=auth(), model=model).status_code == 200
    extra: dict[str, Any] = {} if frontend == "gemini" else {"max_tokens": 5000}
    return [chat(client, frontend, f"{prefix}hello", session=session, headers=auth(), model=model, stream=stream,
                 **extra) for _ in range(requests)]


@pytest.mark.parametrize("rules,paths", [(MODEL_RULES, PATHS), (BACKEND_RULES, BACKEND_PATHS)], ids=["by-model", "by-backend"])
@pytest.mark.parametrize("name", list(PATHS))
@pytest.mark.parametrize("frontend", ["openai", "anthropic"])
def test_operator_limits_and_set_follow_every_path_into_a_target(tmp_path: Path, rules: str,
                                                                 paths: dict[str, Any], name: str,
                                                                 frontend: str) -> None:
    client, backends = build(tmp_path, rules)
    results = run_path(client, paths[name], frontend)
    assert [r.status_code for r in results] == [200, 200, 429], [r.text for r in results]
    assert "rpm(2)" in str(results[2].json)
    up = backends["up"].seen
    assert len(up) == 2 and not backends["echo"].seen
    assert [r.max_tokens for r in up] == [100, 100]
    # Another caller has a budget of its own.
    other = chat(client, frontend, "hello", headers=auth("b"), model="alias")
    assert other.status_code == 200


@pytest.mark.parametrize("name", ["session-route", "oneoff", "file-route"])
def test_streams_are_governed_too(tmp_path: Path, name: str) -> None:
    client, backends = build(tmp_path, MODEL_RULES)
    results = run_path(client, PATHS[name], "openai", stream=True)
    assert [r.status_code for r in results] == [200, 200, 429]
    assert [r.max_tokens for r in backends["up"].seen] == [100, 100]


def test_rule_matching_request_and_target_counts_once(tmp_path: Path) -> None:
    """The same rule matching through the request and through the target charges its limit once."""
    client, backends = build(tmp_path, MODEL_RULES + "  - name: route-gpt4\n    when: model == \"gpt-4\"\n"
                                                  "    route: up:gpt-4\n")
    results = [chat(client, "openai", "hi", headers=auth(), model="gpt-4") for _ in range(3)]
    assert [r.status_code for r in results] == [200, 200, 429]
    assert len(backends["up"].seen) == 2


def test_a_target_over_its_limit_falls_over_to_the_next(tmp_path: Path) -> None:
    """A limit that applies through a target refuses that target; the chain goes on to the next."""
    client, backends = build(tmp_path, MODEL_RULES)
    session = "s-" + uuid.uuid4().hex[:10]
    assert chat(client, "openai", "!/route-prepend(zzz, up:gpt-4 -> echo:small)", session=session,
                headers=auth(), model="zzz").status_code == 200
    models = [reply_model("openai", chat(client, "openai", "hi", session=session, headers=auth(), model="zzz"))
              for _ in range(3)]
    assert models == ["gpt-4", "gpt-4", "small"]
    assert len(backends["up"].seen) == 2 and [r.max_tokens for r in backends["echo"].seen] == [None]


# ---- operator set: beats the session ---------------------------------------------------------------

SET_RULES = """
rules:
  - name: cap
    set: max_tokens=100
"""


@pytest.mark.parametrize("frontend", ["openai", "anthropic"])
def test_operator_set_beats_session_set(tmp_path: Path, frontend: str) -> None:
    client, backends = build(tmp_path, SET_RULES)
    session = "s-" + uuid.uuid4().hex[:10]
    assert chat(client, frontend, "!/set(max_tokens=999999)", session=session, headers=auth()).status_code == 200
    assert chat(client, frontend, "hi", session=session, headers=auth(), max_tokens=5000).status_code == 200
    assert backends["echo"].seen[-1].max_tokens == 100


def test_session_chooses_where_the_operator_left_the_value_open(tmp_path: Path) -> None:
    client, backends = build(tmp_path, SET_RULES)
    session = "s-" + uuid.uuid4().hex[:10]
    assert chat(client, "openai", "!/set(top_p=0.5) !/temperature(1.5)", session=session,
                headers=auth()).status_code == 200
    assert chat(client, "openai", "hi", session=session, headers=auth(), temperature=0.1, top_p=0.9).status_code == 200
    sent = backends["echo"].seen[-1]
    assert (sent.temperature, sent.top_p, sent.max_tokens) == (1.5, 0.5, 100)


def test_operator_set_through_a_target_beats_session_and_client(tmp_path: Path) -> None:
    client, backends = build(tmp_path, MODEL_RULES)
    session = "s-" + uuid.uuid4().hex[:10]
    assert chat(client, "openai", "!/set(max_tokens=999999) !/route-prepend(zzz, up:gpt-4)", session=session,
                headers=auth(), model="zzz").status_code == 200
    assert chat(client, "openai", "hi", session=session, headers=auth(), model="zzz").status_code == 200
    assert backends["up"].seen[-1].max_tokens == 100


def test_requests_the_rules_do_not_govern_keep_their_values(tmp_path: Path) -> None:
    client, backends = build(tmp_path, MODEL_RULES)
    session = "s-" + uuid.uuid4().hex[:10]
    assert chat(client, "openai", "!/set(max_tokens=777)", session=session, headers=auth(), model="x").status_code == 200
    for _ in range(3):
        assert chat(client, "openai", "hi", session=session, headers=auth(), model="small").status_code == 200
    assert [r.max_tokens for r in backends["echo"].seen] == [777, 777, 777]
