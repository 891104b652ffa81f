"""``budget(...)`` in every scope of the limits language (caller, session, backend, key), end to
end: the app with its usage store, priced models on the local fake provider, spend read back from
recorded cost. Over a budget, the request gets a 429 in its front end's own error shape naming the
budget, its rule and the window's end, with ``Retry-After`` to it. Budgets follow the precedence of
``limits``: a rule's budget governs the target it matches whatever route led there, so a session
route, a one-off or ``backend:model`` does not escape it."""

from __future__ import annotations

import re
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import falcon.testing
import pytest

from backends.keys import key_label
from fakes.provider import FakeProvider
from ops_support import ADMIN, CLIENT_KEY, build_app, post_chat, wait_records
from router.budgets import Budgets, BudgetScope
from router.record.usage import UsageStoreUnavailable

OTHER_KEY = "sk-ops-other-client-key-Q1w2E3r4"
SECOND_PROVIDER_KEY = "sk-fake-openai-second-key"
# Per million tokens: a request of ~100 prompt tokens is ~0.1 up front and ~0.2 once answered
# (the fake echoes the prompt), so a budget of 0.25 admits one request and refuses the next.
PRICES = {"priced-model": {"input": 1000.0, "output": 1000.0}, "gpt-4": {"input": 1000.0, "output": 1000.0}}
TEXT = "x" * 400
WINDOW_SECONDS = {"hour": 3600, "day": 86400, "month": 31 * 86400}


def backends(fake: FakeProvider) -> dict[str, Any]:
    paid = {"type": "openai", "base_url": f"{fake.url}/v1", "api_keys": [fake.key("openai")]}
    return {"echo": {"type": "echo"}, "paid": paid, "spare": dict(paid),
            "pair": {**paid, "api_keys": [fake.key("openai"), SECOND_PROVIDER_KEY]}}


def app_with(tmp_path: Path, fake: FakeProvider, rules: str) -> Any:
    fake.keys["openai"].add(SECOND_PROVIDER_KEY)
    return build_app(tmp_path, {"10.yaml": rules}, backends=backends(fake), prices=PRICES,
                     auth={"api_keys": [CLIENT_KEY, OTHER_KEY], "admin_keys": [ADMIN["Authorization"][7:]]})


def generations(fake: FakeProvider) -> list[Any]:
    """The chat calls the fake answered (not the model listings of start-up)."""
    return [r for r in fake.requests if r.model]


def session(name: str | None = None) -> dict[str, str]:
    return {"x-session-id": name or "s-" + uuid.uuid4().hex[:10]}


def refusal_message(frontend: str, result: Any) -> str:
    """The message of a 429, checked to be in ``frontend``'s own error shape."""
    assert result.status_code == 429, result.text
    body = result.json
    if frontend == "openai":
        assert body["error"]["type"] == "rate_limit_error"
        return body["error"]["message"]
    if frontend == "anthropic":
        assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
        return body["error"]["message"]
    assert body["error"]["code"] == 429 and body["error"]["status"] == "RESOURCE_EXHAUSTED"
    return body["error"]["message"]


def check_reset(result: Any, message: str, window: str) -> None:
    """The message names when the window ends (a calendar boundary in UTC) and Retry-After counts
    the seconds to it."""
    resets = datetime.strptime(re.search(r"resets at (\S+Z)", message).group(1),  # type: ignore[union-attr]
                               "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    left = resets.timestamp() - time.time()
    assert 0 < left <= WINDOW_SECONDS[window] + 1
    assert resets.minute == resets.second == 0
    if window in ("day", "month"):
        assert resets.hour == 0
    if window == "month":
        assert resets.day == 1
    assert abs(int(result.headers["retry-after"]) - left) <= 5, (result.headers["retry-after"], left)


SCOPES = [("caller", "day"), ("session", "hour"), ("backend", "month"), ("key", "hour")]


@pytest.mark.parametrize("per,window", SCOPES, ids=[s for s, _ in SCOPES])
@pytest.mark.parametrize("frontend", ["openai", "anthropic", "gemini"])
async def test_each_scope_refuses_in_the_front_ends_shape_with_the_windows_end(
        tmp_path: Path, fake_provider: FakeProvider, per: str, window: str, frontend: str) -> None:
    rules = f"""rules:
  - name: capped-{per}
    route: paid:priced-model
    limits: budget(0.25, per={per}, window={window})
"""
    app = app_with(tmp_path, fake_provider, rules)
    headers = session("s-first")
    async with falcon.testing.ASGIConductor(app) as client:
        first = await post_chat(client, frontend, TEXT, headers=headers)
        assert first.status_code == 200, first.text
        refused = await post_chat(client, frontend, TEXT, headers=headers)
        message = refusal_message(frontend, refused)
        assert "budget of 0.25 per" in message and f"rule 'capped-{per}'" in message
        if per == "key":  # a key is named by its label, never the key
            assert key_label(fake_provider.key("openai")) in message and fake_provider.key("openai") not in message
        if per == "backend":
            assert "per backend paid" in message
        check_reset(refused, message, window)
        records = await wait_records(client, 2, headers=ADMIN)
        assert [r["status"] for r in records] == [429, 200] and records[1]["cost"] > 0.1
        assert records[1]["key_id"] == key_label(fake_provider.key("openai"))
        assert all(a["status"] == "rate_limited" for a in records[0]["attempts"])  # no provider call made
        assert len(generations(fake_provider)) == 1


async def test_a_callers_budget_is_its_own(tmp_path: Path, fake_provider: FakeProvider) -> None:
    app = app_with(tmp_path, fake_provider, "rules:\n  - name: capped\n    route: paid:priced-model\n"
                                            "    limits: budget(0.25, per=caller)\n")
    async with falcon.testing.ASGIConductor(app) as client:
        assert (await post_chat(client, text=TEXT)).status_code == 200
        assert (await post_chat(client, text=TEXT, headers=session())).status_code == 429  # any session of it
        other = {"Authorization": f"Bearer {OTHER_KEY}"}
        assert (await post_chat(client, text=TEXT, headers=other)).status_code == 200
        assert (await post_chat(client, text=TEXT, headers=other)).status_code == 429


async def test_a_sessions_budget_is_its_own_and_belongs_to_its_caller(tmp_path: Path,
                                                                     fake_provider: FakeProvider) -> None:
    app = app_with(tmp_path, fake_provider, "rules:\n  - name: per-session\n    route: paid:priced-model\n"
                                            "    limits: budget(0.25, per=session, window=day)\n")
    async with falcon.testing.ASGIConductor(app) as client:
        assert (await post_chat(client, text=TEXT, headers=session("s-one"))).status_code == 200
        assert (await post_chat(client, text=TEXT, headers=session("s-one"))).status_code == 429
        assert (await post_chat(client, text=TEXT, headers=session("s-two"))).status_code == 200
        # The same session id sent with another client key is another session, with its own budget.
        other = {"Authorization": f"Bearer {OTHER_KEY}", **session("s-one")}
        assert (await post_chat(client, text=TEXT, headers=other)).status_code == 200
        records = [r for r in await wait_records(client, 4, headers=ADMIN) if r["status"] == 200]
        # The store holds the same: a process that starts now reads each session's spend from it.
        assert len({(r["caller"], r["session_id"]) for r in records}) == len(records) == 3
        budgets = Budgets(app.state_ref.recorder.store)
        since = time.time() - 3600
        for record in records:
            assert await budgets.spent(BudgetScope.session(record["caller"], record["session_id"]), since) \
                == pytest.approx(record["cost"])
        assert await budgets.spent(BudgetScope.session(None, "s-one"), since) == 0.0


async def test_a_key_over_its_budget_is_skipped_for_the_backends_other_key(
        tmp_path: Path, fake_provider: FakeProvider) -> None:
    """``pair`` has two provider keys, ``paid`` only the first. Once the first key's budget is
    spent (through ``paid``), ``pair`` answers with the second key only; when that one is spent
    too, the request is refused."""
    rules = "rules:\n  - name: per-key\n    limits: budget(0.25, per=key, window=day)\n"
    app = app_with(tmp_path, fake_provider, rules)
    first, second = key_label(fake_provider.key("openai")), key_label(SECOND_PROVIDER_KEY)
    async with falcon.testing.ASGIConductor(app) as client:
        assert (await post_chat(client, text=TEXT, model="paid:priced-model")).status_code == 200
        refused = await post_chat(client, text=TEXT, model="paid:priced-model")
        assert first in refusal_message("openai", refused) and "per key" in refused.json["error"]["message"]
        answered = [await post_chat(client, text=TEXT, model="pair:priced-model") for _ in range(3)]
        assert [r.status_code for r in answered] == [200, 429, 429]
        assert second in answered[1].json["error"]["message"]
        records = await wait_records(client, 5, headers=ADMIN)
    assert [(r["backend"], r["key_id"]) for r in reversed(records) if r["status"] == 200] == \
        [("paid", first), ("pair", second)]
    sent_with = [r.headers["authorization"] for r in generations(fake_provider)]
    assert sent_with == [f"Bearer {fake_provider.key('openai')}", f"Bearer {SECOND_PROVIDER_KEY}"]


async def test_a_backend_over_its_budget_is_skipped_for_the_next_target_then_refused(
        tmp_path: Path, fake_provider: FakeProvider) -> None:
    rules = ("rules:\n  - name: per-backend\n    route: paid:priced-model -> spare:priced-model\n"
             "    limits: budget(0.25, per=backend, window=hour)\n")
    app = app_with(tmp_path, fake_provider, rules)
    async with falcon.testing.ASGIConductor(app) as client:
        results = [await post_chat(client, text=TEXT) for _ in range(3)]
        assert [r.status_code for r in results] == [200, 200, 429]
        message = refusal_message("openai", results[2])
        assert "per backend" in message and "'per-backend'" in message
        check_reset(results[2], message, "hour")
        records = await wait_records(client, 3, headers=ADMIN)
    assert [r["backend"] for r in reversed(records)] == ["paid", "spare", None]


ESCAPE_RULES = """rules:
  - name: gpt4-budget
    when: model ~ "gpt-4*"
    limits: budget(0.25, per=caller, window=day)
  - name: alias
    when: model == "alias"
    route: paid:gpt-4
"""

# Each way into paid:gpt-4 that does not name gpt-4 as the requested model: (commands sent first
# in the session, a prefix riding with the prompt, the model asked for).
PATHS = {
    "session-route": (["!/route-prepend(zzz, paid:gpt-4)"], "", "zzz"),
    "oneoff": ([], "!/oneoff(paid:gpt-4) ", "zzz"),
    "model-field": ([], "", "paid:gpt-4"),
    "file-route": ([], "", "alias"),
    "model-command": (["!/model(paid:gpt-4)"], "", "zzz"),
}


@pytest.mark.parametrize("path", list(PATHS))
async def test_a_route_around_the_rule_does_not_escape_its_budget(tmp_path: Path, fake_provider: FakeProvider,
                                                                  path: str) -> None:
    """The caller spends its gpt-4 budget by asking for gpt-4; then no other way to reach gpt-4
    gets through, and the refusal names the operator's rule."""
    commands, prefix, model = PATHS[path]
    app = app_with(tmp_path, fake_provider, ESCAPE_RULES)
    headers = session()
    async with falcon.testing.ASGIConductor(app) as client:
        for command in commands:
            assert (await post_chat(client, text=command, model=model, headers=headers)).status_code == 200
        assert (await post_chat(client, text=TEXT, model="paid:gpt-4", headers=session())).status_code == 200
        escape = await post_chat(client, text=prefix + TEXT, model=model, headers=headers)
        message = refusal_message("openai", escape)
        assert "'gpt4-budget'" in message
        check_reset(escape, message, "day")
    assert len(generations(fake_provider)) == 1


async def test_the_escape_route_counts_against_the_budget_and_falls_over_when_it_can(
        tmp_path: Path, fake_provider: FakeProvider) -> None:
    """Spend through a session route counts against the rule's budget; once spent, the route's
    next target (which the rule does not govern) answers."""
    app = app_with(tmp_path, fake_provider, ESCAPE_RULES)
    headers = session()
    async with falcon.testing.ASGIConductor(app) as client:
        prepend = "!/route-prepend(zzz, paid:gpt-4 -> spare:priced-model)"
        assert (await post_chat(client, text=prepend, model="zzz", headers=headers)).status_code == 200
        answers = [await post_chat(client, text=TEXT, model="zzz", headers=headers) for _ in range(2)]
        assert [(r.status_code, r.json["model"]) for r in answers] == [(200, "gpt-4"), (200, "priced-model")]
        direct = await post_chat(client, text=TEXT, model="gpt-4")  # the budget the escape route spent
        assert "'gpt4-budget'" in refusal_message("openai", direct)
        records = await wait_records(client, 4, headers=ADMIN)
    fell_over = records[1]
    assert [a["status"] for a in fell_over["attempts"]] == ["rate_limited", "ok"]
    assert "budget" in fell_over["attempts"][0]["error"]


class _AwayStore:
    """A usage store whose database is unreachable."""

    async def spent(self, since: float, scope: Any) -> float:
        raise UsageStoreUnavailable("the usage store (PostgreSQL) is unavailable: OperationalError")


async def test_a_store_outage_counts_this_processs_own_spend() -> None:
    """PostgreSQL away: budgets neither fail the request nor forget what this process spent."""
    from dsl import ir

    clock = [1000.0]
    budgets = Budgets(_AwayStore(), clock=lambda: clock[0], refresh=2.0)
    limit = ir.Limit("budget", 1.0, "caller", None, "day")
    scopes = {"caller": BudgetScope.caller("k1")}
    keys = await budgets.admit([(limit, "r")], scopes, 0.5)
    assert isinstance(keys, list)
    budgets.settle(keys, 0.6)
    clock[0] += 5  # past the refresh: the read fails again and keeps what was settled
    assert await budgets.spent(scopes["caller"], keys[0][2]) == pytest.approx(0.6)
    refusal = await budgets.admit([(limit, "r")], scopes, 0.5)
    assert not isinstance(refusal, list) and refusal.status == 429


async def test_a_stream_through_a_session_route_is_governed_too(tmp_path: Path, fake_provider: FakeProvider) -> None:
    app = app_with(tmp_path, fake_provider, ESCAPE_RULES)
    headers = session()
    async with falcon.testing.ASGIConductor(app) as client:
        prepend = "!/route-prepend(zzz, paid:gpt-4)"
        assert (await post_chat(client, text=prepend, model="zzz", headers=headers)).status_code == 200
        first = await post_chat(client, text=TEXT, model="zzz", headers=headers, stream=True)
        assert first.status_code == 200 and "data:" in first.text
        await wait_records(client, 2, headers=ADMIN)  # a stream's cost is settled when it ends
        refused = await post_chat(client, text=TEXT, model="zzz", headers=headers, stream=True)
        assert "'gpt4-budget'" in refusal_message("openai", refused)
    assert len(generations(fake_provider)) == 1


@pytest.mark.parametrize("per", ["caller", "key"])
async def test_instances_sharing_a_postgresql_store_share_the_budget(tmp_path: Path, fake_provider: FakeProvider,
                                                                     pg_schema: str, per: str) -> None:
    """What one instance spent (recorded in PostgreSQL) refuses the other's request."""
    from pg_support import PG_URL

    rules = f"rules:\n  - name: shared-{per}\n    route: paid:priced-model\n    limits: budget(0.25, per={per})\n"
    fake_provider.keys["openai"].add(SECOND_PROVIDER_KEY)
    apps = [build_app(tmp_path / name, {"10.yaml": rules}, backends=backends(fake_provider), prices=PRICES,
                      usage={"url": PG_URL, "schema": pg_schema},
                      auth={"api_keys": [CLIENT_KEY], "admin_keys": [ADMIN["Authorization"][7:]]})
            for name in ("a", "b")]
    async with falcon.testing.ASGIConductor(apps[0]) as first, falcon.testing.ASGIConductor(apps[1]) as second:
        assert (await post_chat(first, text=TEXT)).status_code == 200
        await wait_records(first, 1, headers=ADMIN)  # written to PostgreSQL
        refused = await post_chat(second, text=TEXT)
        assert f"'shared-{per}'" in refusal_message("openai", refused)
    assert len(generations(fake_provider)) == 1
