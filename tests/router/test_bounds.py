"""Size limits on what a client sends and the proxy keeps (``router/bounds.py``), end to end.

Each limit is checked at the boundary where the value enters: a model name when the request is
decoded (400 in the front end's own shape, naming ``model``), a header when rules read it as a
fact, a session value when a command would store it (a chat reply; the session stays as it was).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import falcon.testing
import pytest

from proxy_support import FRONTENDS, chat, error_message, reply_model, reply_text, write_config
from router.app import create_app
from router.bounds import (
    MAX_AUDITED_COMMAND_CHARS, MAX_HEADER_FACT_CHARS, MAX_MODEL_CHARS, MAX_SESSION_BYTES, MAX_SETTING_CHARS,
)
from router.record.metrics import MAX_LABEL_CHARS, Metrics


def sid() -> str:
    return "b-" + uuid.uuid4().hex[:12]


# ---- model names ---------------------------------------------------------------------------------


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_a_model_name_over_the_limit_is_a_400_naming_model(client, frontend):
    long_model = "m" * (MAX_MODEL_CHARS + 1)
    result = chat(client, frontend, "hi", model=long_model, session=sid())
    assert result.status_code == 400, result.text
    message = error_message(frontend, result.json)
    assert "model" in message and str(MAX_MODEL_CHARS) in message
    assert long_model not in result.text  # the refusal does not echo the value back
    if frontend == "openai":
        assert result.json["error"]["param"] == "model"


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_a_model_name_at_the_limit_is_served(client, frontend):
    model = "m" * MAX_MODEL_CHARS
    assert reply_model(frontend, chat(client, frontend, "hi", model=model)) == model


def test_long_model_names_reach_neither_usage_nor_metrics(client):
    """The issue's repro, scaled down: unique long model names used to be kept in every usage row
    and as metric labels (``/metrics`` reached 180 MB after 30 requests of 2 MB names)."""
    for i in range(5):
        result = chat(client, "openai", "hi", model=f"{i}" + "x" * 100_000)
        assert result.status_code == 400
    assert chat(client, "openai", "hi", model="short").status_code == 200
    metrics = client.simulate_get("/metrics").text
    assert len(metrics) < 20_000 and "xxxxxxxxxx" not in metrics
    rows = client.simulate_get("/v2/usage/recent").json["data"]
    assert [row["requested_model"] for row in rows] == ["short"]


def test_metric_labels_are_bounded_in_length_not_only_in_count():
    metrics = Metrics()
    assert metrics.model_label("gpt-4") == "gpt-4"
    assert metrics.model_label("x" * (MAX_LABEL_CHARS + 1)) == "other"
    assert metrics.model_label("y" * MAX_LABEL_CHARS) == "y" * MAX_LABEL_CHARS


# ---- header values read by rules -------------------------------------------------------------------

HEADER_RULES = """
rules:
  - name: team
    when: header("x-team") == "blue"
    route: echo:team-model
"""


def _client_with_rules(tmp_path: Path, rules: str | None) -> falcon.testing.TestClient:
    routes = tmp_path / "routes.d"
    routes.mkdir()
    if rules:
        (routes / "10.yaml").write_text(rules)
    return falcon.testing.TestClient(create_app(write_config(tmp_path, routes_dir=str(routes)), disable_auth=True))


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_a_header_too_long_to_be_a_fact_is_a_400_naming_it(tmp_path, frontend):
    client = _client_with_rules(tmp_path, HEADER_RULES)
    assert reply_model(frontend, chat(client, frontend, "hi", headers={"x-team": "blue"})) == "team-model"
    result = chat(client, frontend, "hi", headers={"x-team": "b" * (MAX_HEADER_FACT_CHARS + 1)})
    assert result.status_code == 400
    assert "x-team" in error_message(frontend, result.json)


def test_headers_are_not_checked_when_no_rule_reads_them(tmp_path):
    client = _client_with_rules(tmp_path, None)
    result = chat(client, "openai", "hi", headers={"x-team": "b" * (MAX_HEADER_FACT_CHARS + 1)})
    assert result.status_code == 200


# ---- what session commands store ---------------------------------------------------------------------

OVERSIZE_COMMANDS = [
    f'!/set(project="{"p" * (MAX_SETTING_CHARS + 1)}")',
    f'!/set(project_dir="/{"d" * MAX_SETTING_CHARS}")',
    f"!/model({'m' * (MAX_MODEL_CHARS + 1)})",
    f"!/oneoff(other:{'m' * (MAX_MODEL_CHARS + 1)})",
    f"!/route-append({'m' * (MAX_MODEL_CHARS + 1)}, echo:other)",
    f"!/route-prepend(gpt-4, echo:{'m' * (MAX_MODEL_CHARS + 1)})",
]


@pytest.mark.parametrize("frontend", FRONTENDS)
@pytest.mark.parametrize("command", OVERSIZE_COMMANDS, ids=["project", "project_dir", "model", "oneoff",
                                                            "route-model", "route-target"])
def test_an_oversize_session_value_is_refused_in_a_chat_reply(client, frontend, command):
    s = sid()
    before = reply_text(frontend, chat(client, frontend, "!/hello", session=s))
    result = chat(client, frontend, f"!/set(project=ok) {command}", session=s)
    reply = reply_text(frontend, result)
    assert "could not run" in reply and "Nothing was changed" in reply and "at most" in reply
    assert len(reply) < 1000  # the refusal does not echo the value back
    assert reply_text(frontend, chat(client, frontend, "!/hello", session=s)) == before
    assert reply_model(frontend, chat(client, frontend, "hi", session=s)) == "gpt-4"


@pytest.mark.parametrize("repository", ["in_memory", "file"])
def test_a_session_stops_growing_at_its_size_cap(make_client, tmp_path, repository):
    client = make_client(disable_auth=True, session={"repository": repository, "path": str(tmp_path / "s")})
    s = sid()
    route = " -> ".join(["echo:" + "t" * 200] * 3)  # reaches the size cap before the count of routed models
    refused_at = None
    for i in range(MAX_SESSION_BYTES // 600 + 5):
        reply = reply_text("openai", chat(client, "openai", f"!/route-append(model-{i}, {route})", session=s))
        if "could not run" in reply:
            refused_at = i
            assert f"at most {MAX_SESSION_BYTES}" in reply and "!/route-clear" in reply
            break
    assert refused_at is not None and refused_at > 10
    listing = reply_text("openai", chat(client, "openai", "!/route-list", session=s))
    assert f"model-{refused_at - 1}" in listing and f"model-{refused_at}:" not in listing
    # Room can be made again.
    reply_text("openai", chat(client, "openai", "!/route-clear(model-0)", session=s))
    reply = reply_text("openai", chat(client, "openai", f"!/route-append(model-{refused_at}, echo:x)", session=s))
    assert "could not run" not in reply
    if repository == "file":
        sizes = [p.stat().st_size for p in (tmp_path / "s").glob("*.json")]
        assert sizes and max(sizes) < MAX_SESSION_BYTES + 20_000  # settings plus the bounded history


def test_the_issues_five_megabyte_project_is_not_stored(make_client, tmp_path):
    store = tmp_path / "s"
    client = make_client(disable_auth=True, session={"repository": "file", "path": str(store)})
    s = sid()
    reply = reply_text("openai", chat(client, "openai", f'!/set(project="{"x" * 5_000_000}")', session=s))
    assert "could not run" in reply
    assert all(p.stat().st_size < 10_000 for p in store.iterdir())


def test_audited_routing_commands_are_clipped(client):
    s = sid()
    padded = "!/model(" + " " * 4000 + "echo-large)"  # under the command length bound (dsl/bounds.py)
    reply = reply_text("openai", chat(client, "openai", padded, session=s))
    assert "model set to echo-large" in reply
    logs = client.simulate_get("/v2/audit/logs", params={"type": "session_command"}).json
    rows = [row for row in logs["data"] if row.get("detail", {}).get("session") == s]
    assert rows
    assert all(len(c) <= MAX_AUDITED_COMMAND_CHARS for c in rows[0]["detail"]["commands"])
    assert len(json.dumps(rows[0])) < 5 * MAX_AUDITED_COMMAND_CHARS
