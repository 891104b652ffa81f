"""Rules that read each family of facts route through the server: the pipeline works out only the
facts some rule reads (token estimate, clock, session mapping), so each family is checked here
end to end, next to a rule set that reads none of them."""

from __future__ import annotations

from pathlib import Path

import falcon.testing
import pytest

from proxy_support import chat, reply_model, write_config
from router.app import create_app

RULES = """
rules:
  - name: long
    when: tokens > 100
    route: echo:long-model
  - name: project
    when: session.project == "alpha"
    route: echo:project-model
  - name: clock
    when: weekday == "sat" and time == "13:37"
    route: echo:clock-model
  - name: team
    when: header("x-team") == "blue"
    route: echo:team-model
"""


@pytest.fixture
def client(tmp_path: Path) -> falcon.testing.TestClient:
    routes = tmp_path / "routes.d"
    routes.mkdir()
    (routes / "10.yaml").write_text(RULES)
    return falcon.testing.TestClient(create_app(write_config(tmp_path, routes_dir=str(routes)), disable_auth=True))


@pytest.mark.parametrize("frontend", ["openai", "anthropic", "gemini"])
def test_each_fact_family_routes(client: falcon.testing.TestClient, frontend: str,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    assert reply_model(frontend, chat(client, frontend, "short")) == "gpt-4"
    assert reply_model(frontend, chat(client, frontend, "word " * 200)) == "long-model"
    assert reply_model(frontend, chat(client, frontend, "hi", headers={"x-team": "blue"})) == "team-model"
    assert chat(client, frontend, "!/set(project=alpha)", session=f"s-{frontend}").status_code == 200
    assert reply_model(frontend, chat(client, frontend, "hi", session=f"s-{frontend}")) == "project-model"
    import router.pipeline.plan

    monkeypatch.setattr(router.pipeline.plan, "clock_now", lambda: ("13:37", "sat"))
    assert reply_model(frontend, chat(client, frontend, "hi")) == "clock-model"


def test_reads_are_worked_out_per_rule_set() -> None:
    from dsl import RuleSet, ir
    from dsl.evaluate import facts_read
    from dsl.parser import parse

    cases = {
        'model == "a"': {"model"}, "tokens > 5 and stream": {"tokens", "stream"},
        'not (session.project == "x" or header("x-a") == "b")': {"session", "header"},
        'time >= "09:00" or weekday in ["sat"]': {"time", "weekday"}, "true": set(),
        'caller == "k" and frontend == "openai" and backend == "b" and tools': {"caller", "frontend", "backend", "tools"},
    }
    for text, expected in cases.items():
        assert facts_read(parse(text, "condition")) == expected, text
    rules = RuleSet([ir.Rule("a", when=parse("tokens > 5", "condition")),
                     ir.Rule("b", when=parse('session.id == "x"', "condition")), ir.Rule("c")])
    assert rules.reads == {"tokens", "session"}
