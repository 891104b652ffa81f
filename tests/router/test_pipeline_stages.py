"""The pipeline's stages keep to their contracts: planning reads and never writes, a request is
planned once, commands are cut out by the commands stage alone."""

from __future__ import annotations

import copy
from typing import Any, Callable

import falcon.testing
import pytest

from proxy_support import chat
from router.app import ProxyApp
from router.pipeline import plan as plan_stage
from router.pipeline.commands import strip_commands
from router.sessions import Session
from router.wire.canonical import ChatRequest, Message, TextPart


def test_planning_changes_nothing(make_app: Callable[..., ProxyApp]) -> None:
    """Facts in, plan out: the request and the session are as they were (the overrides stage is
    what sets the planned model on the request)."""
    state = make_app(disable_auth=True).state_ref.state
    request = ChatRequest(model="echo:other-model", messages=[Message("user", [TextPart("hello")])])
    session = Session(id="s1", owner=None, oneoff="echo:once")
    before_request, before_session = copy.deepcopy(request), session.to_json()
    model, facts, _plan = plan_stage.plan_request(state, request, request.model, session, {}, None, "openai")
    assert model == "other-model"
    assert facts.backend == "echo" and facts.model == "other-model"
    assert request == before_request
    assert session.to_json() == before_session


@pytest.mark.parametrize("text", ["hello", "!/set(project=alpha) hello", "!/set(temperature=0.5) hello"])
def test_a_request_is_planned_once(make_app: Callable[..., ProxyApp], monkeypatch: pytest.MonkeyPatch,
                                   text: str) -> None:
    """Also when a command changed the session: the plan is made after the commands ran (only
    ``!/hello``, which shows the guards a plan switches on, plans once more for its reply)."""
    calls: list[Any] = []
    evaluate = plan_stage.evaluate
    monkeypatch.setattr(plan_stage, "evaluate", lambda *a, **k: calls.append(a) or evaluate(*a, **k))
    client = falcon.testing.TestClient(make_app(disable_auth=True))
    result = chat(client, "openai", text, session="plan-once")
    assert result.status_code == 200
    assert len(calls) == 1


async def test_commands_leave_the_clients_request_as_it_was(make_app: Callable[..., ProxyApp]) -> None:
    """The commands stage hands on a new request without the commands; the decoded request the
    front end gave the pipeline is not edited (so no later stage sees it change under it)."""
    from router.frontends import OPENAI
    from router.pipeline import Pipeline, RequestContext

    app = make_app(disable_auth=True)
    pipeline = Pipeline(app.state_ref)
    request = ChatRequest(model="echo:m", messages=[Message("user", [TextPart("!/set(project=alpha) hello")])])
    before = copy.deepcopy(request)
    reply = await pipeline.chat(OPENAI, request, RequestContext(headers={}, caller=None, session_id="s-edit"))
    assert reply.status == 200
    assert request == before
    assert "hello" in str(reply.body)


def test_strip_commands_leaves_a_command_free_conversation_alone() -> None:
    messages = [Message("user", [TextPart("no commands here")])]
    assert strip_commands(messages, "!/", ("echo",)) is None


def test_strip_commands_returns_the_rest_and_the_latest_commands() -> None:
    messages = [Message("user", [TextPart("!/set(project=a)")]), Message("assistant", [TextPart("project set")]),
                Message("user", [TextPart("!/hello and then this")])]
    kept, parsed = strip_commands(messages, "!/", ("echo",))
    assert [m.role for m in kept] == ["user"]  # the earlier command-only turn and its reply are gone
    assert [c.name for c in parsed.commands] == ["hello"]
    assert "and then this" in parsed.text
    assert messages[0].parts[0].text == "!/set(project=a)"  # the input list is not changed


def test_plan_fills_each_fact_by_name(make_app: Callable[..., ProxyApp], monkeypatch: pytest.MonkeyPatch) -> None:
    """Every field of the Facts plan_request builds gets the value its name says, for rules that
    read every fact."""
    from dataclasses import fields

    from dsl.evaluate import Facts

    state = make_app(disable_auth=True).state_ref.state
    monkeypatch.setattr(state.ruleset, "reads",
                        frozenset({"tokens", "session", "time", "weekday", "header", "model", "backend",
                                   "context_window"}))
    monkeypatch.setattr(plan_stage, "clock_now", lambda: ("13:37", "sat"))
    seen: list[Facts] = []
    monkeypatch.setattr(plan_stage, "evaluate", lambda facts, *a, **k: seen.append(facts))
    request = ChatRequest(model="echo:gpt-4o-mini", messages=[Message("user", [TextPart("x" * 40)])], stream=False)
    request.tools = [object()]  # type: ignore[list-item]
    session = Session(id="s9", owner="k", project="p", project_dir="/d")
    headers = {"x-team": "blue"}
    plan_stage.plan_request(state, request, request.model, session, headers, "caller-1", "anthropic")
    expected = Facts(model="gpt-4o-mini", frontend="anthropic", backend="echo", caller="caller-1", tokens=10, stream=False,
                     tools=True, headers=headers,
                     session={"project": "p", "project_dir": "/d", "backend": None, "model": None, "id": "s9"},
                     time="13:37", weekday="sat", context_window=128000)
    assert [(f.name, getattr(seen[0], f.name)) for f in fields(Facts)] == \
        [(f.name, getattr(expected, f.name)) for f in fields(Facts)]
