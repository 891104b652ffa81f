"""``explain`` through its three doors: the CLI (text golden and ``--json``), ``POST
/v2/admin/explain`` (admin key; the same JSON; 400s naming the field) and ``!/route-explain`` in
chat (this request, with the session's routes)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import falcon.testing
import pytest
import yaml

import router.explain
from proxy_support import BASE_CONFIG, chat, reply_text
from router.app import create_app
from router.cli import main
from router.config import load_config

RULES = """rules:
  - name: team-blue
    when: header("x-team") == "blue"
    route: fastest(echo:blue-a | other:blue-b)
    on:
      rate_limit: other:spare
    limits: budget(2, per=caller)
  - name: long
    when: tokens > context_window * 0.5
    route: other:long-model
"""
GOLDEN = Path(__file__).parent / "explain_cli.golden"
ADMIN_KEY = "sk-explain-admin-key-0123456789"
CLIENT_KEY = "sk-explain-client-key-0123456789"


@pytest.fixture
def config_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(router.explain, "clock_now", lambda: ("10:00", "mon"))
    routes = tmp_path / "routes.d"
    routes.mkdir()
    (routes / "10.yaml").write_text(RULES)
    data = {**BASE_CONFIG, "routes_dir": str(routes), "catalog": {"small": {"context_window": 1000}},
            "auth": {"api_keys": [CLIENT_KEY], "admin_keys": [ADMIN_KEY]}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_cli_text_golden(config_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["explain", "--config", str(config_path), "--model", "small", "--tokens", "600",
                 "--header", "X-Team=blue", "--caller", "key-abc", "--stream"])
    out = capsys.readouterr().out.replace(str(config_path.parent), "<dir>")
    assert code == 0
    if os.environ.get("UPDATE_GOLDENS"):
        GOLDEN.write_text(out)
    assert out == GOLDEN.read_text()


def test_cli_json_equals_the_admin_endpoint(config_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = {"model": "small", "tokens": 600, "headers": {"x-team": "red"}, "frontend": "anthropic", "tools": True}
    assert main(["explain", "--config", str(config_path), "--model", "small", "--tokens", "600", "--header",
                 "x-team=red", "--frontend", "anthropic", "--tools", "--json"]) == 0
    from_cli = json.loads(capsys.readouterr().out)
    assert from_cli["plan"]["route"] == "other:long-model" and from_cli["plan"]["route_rule"] == "long"
    assert [r["matched"] for r in from_cli["rules"]] == [False, True]
    client = falcon.testing.TestClient(create_app(load_config(str(config_path), env={})))
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    result = client.simulate_post("/v2/admin/explain", json=args, headers=admin)
    assert result.status_code == 200, result.text
    assert result.json == from_cli


def test_admin_endpoint_is_for_admins_and_checks_its_body(config_path: Path) -> None:
    client = falcon.testing.TestClient(create_app(load_config(str(config_path), env={})))
    refused = client.simulate_post("/v2/admin/explain", json={"model": "x"},
                                   headers={"Authorization": f"Bearer {CLIENT_KEY}"})
    assert refused.status_code == 403
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    for body, field in (({}, "model"), ({"model": "x", "tokens": -1}, "tokens"), ({"model": "x", "frontend": "y"},
                        "frontend"), ({"model": "x", "headers": {"a": 1}}, "headers"), ({"model": "x", "zzz": 1}, "zzz"),
                        ({"model": "x", "stream": "yes"}, "stream")):
        result = client.simulate_post("/v2/admin/explain", json=body, headers=admin)
        assert result.status_code == 400, (body, result.text)
        assert field in result.json["error"]["message"]
    bad_json = client.simulate_post("/v2/admin/explain", body=b"{nope", headers={**admin, "Content-Type": "application/json"})
    assert bad_json.status_code == 400


def test_route_explain_in_chat(config_path: Path) -> None:
    client = falcon.testing.TestClient(create_app(load_config(str(config_path), env={})))
    auth = {"Authorization": f"Bearer {CLIENT_KEY}", "x-team": "blue"}
    session = "explain-session-1"
    chat(client, "openai", "!/route-append(small, other:session-model)", session=session, model="small", headers=auth)
    text = reply_text("openai", chat(client, "openai", "!/route-explain", session=session, model="small",
                                     headers=auth))
    assert "1. session:small [session]: matched" in text
    assert "2. team-blue [" in text and "header(\"x-team\") is \"blue\"" in text
    assert "route: other:session-model  (rule session:small)" in text
    assert "budget(2)  (rule team-blue)" in text
    assert CLIENT_KEY not in text  # only the headers rules read are shown
