"""Usage and audit endpoints through the app: one record per request (JSON, stream, abandoned
stream, failure), stats filters and breakdowns, paging, audit filters, 400s naming the parameter,
admin-only access, and key ids (never keys) in the stored rows."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time
from pathlib import Path

import falcon.testing
import pytest
from falcon.testing.client import _AsyncContextManager

from fakes.provider import FakeProvider, stream_chunks
from ops_support import (
    ADMIN, ADMIN_KEY, AUTH, CLIENT_KEY, all_records, build_app, closed_port, post_chat, wait_for, wait_records,
)
from proxy_support import chat_body, sse_data
from router.http.auth import key_id
from router.record.usage import AUDIT_TYPES, GROUPS


@pytest.fixture(params=["sqlite", "postgresql"])
def usage(request: pytest.FixtureRequest) -> dict[str, str]:
    """The ``usage`` config section: the in-memory SQLite default, or the real PostgreSQL in a
    schema of the test's own (the tests that hold for either store run on both)."""
    if request.param == "sqlite":
        return {}
    from pg_support import PG_URL

    return {"url": PG_URL, "schema": request.getfixturevalue("pg_schema")}


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_records_for_json_stream_abandoned_and_failed_requests(tmp_path: Path,
                                                                      fake_provider: FakeProvider) -> None:
    dead = closed_port()
    app = build_app(tmp_path, backends={
        "echo": {"type": "echo"}, "other": {"type": "echo"},
        "slow": {"type": "openai", "base_url": f"{fake_provider.url}/v1", "api_key": fake_provider.key("openai")},
        "dead": {"type": "openai", "base_url": f"http://127.0.0.1:{dead}/v1", "api_key": "sk-dead-backend-key-77"},
    }, usage={"path": str(tmp_path / "usage.db")})
    fake_provider.on_model("slow-model", stream_chunks([f"part{i} " for i in range(40)], gap=0.05))
    async with falcon.testing.ASGIConductor(app) as client:
        ok = await post_chat(client, text="plain json")
        assert ok.status_code == 200
        streamed = await post_chat(client, "anthropic", text="streamed", stream=True)
        assert streamed.status_code == 200 and sse_data(streamed.text)[-1]["type"] == "message_stop"

        # A stream the client abandons after the first frames.
        async with _AsyncContextManager(client.simulate_request(
                "POST", "/v2/chat/completions", headers=AUTH,
                json=chat_body("openai", "abandon me", model="slow:slow-model", stream=True),
                _stream_result=True)) as sr:
            got = b""
            while b"part1" not in got:
                got += await sr.stream.read()
        abandoned_id = sr.headers["x-request-id"]

        failed = await post_chat(client, text="to nowhere", model="dead:gpt-4")
        assert failed.status_code == 502, failed.text

        records = await wait_records(client, 4)
        by_id = {r["request_id"]: r for r in records}
        assert len(records) == 4 == len(by_id)  # exactly one per request

        json_rec = by_id[ok.headers["x-request-id"]]
        assert (json_rec["status"], json_rec["backend"], json_rec["stream"], json_rec["frontend"]) == \
            (200, "echo", False, "openai")
        assert json_rec["caller"] == key_id(CLIENT_KEY) and json_rec["attempts"][0]["status"] == "ok"
        assert json_rec["prompt_tokens"] > 0 and json_rec["finish_reason"] == "stop"

        stream_rec = by_id[streamed.headers["x-request-id"]]
        assert (stream_rec["status"], stream_rec["stream"], stream_rec["frontend"], stream_rec["finish_reason"]) == \
            (200, True, "anthropic", "stop")
        assert stream_rec["ttfb_ms"] is not None

        cut = by_id[abandoned_id]  # one record for the abandoned stream too (how it ends: test_shutdown.py)
        assert cut["stream"] is True and cut["backend"] == "slow" and cut["status"] == 200
        assert cut["finish_reason"] in ("incomplete", "stop") and cut["completion_tokens"] > 0

        fail = by_id[failed.headers.get("x-request-id") or next(r["request_id"] for r in records if r["status"] == 502)]
        assert fail["status"] == 502 and fail["error"]
        assert fail["attempts"] and all(a["backend"] == "dead" and a["status"] == "connection"
                                        for a in fail["attempts"])
        assert fail["cost"] is None


async def test_stats_group_by_time_filters_and_paging(tmp_path: Path, usage: dict[str, str]) -> None:
    app = build_app(tmp_path, usage=usage)
    started = time.time()
    async with falcon.testing.ASGIConductor(app) as client:
        for i in range(7):
            r = await post_chat(client, text=f"m{i}", model="echo-large" if i % 2 else "gpt-4",
                                headers={"x-session-id": f"sess-{i % 3}"})
            assert r.status_code == 200
        for i in range(3):
            assert (await post_chat(client, text=f"o{i}", model="other:o-model")).status_code == 200
        records = await wait_records(client, 10)
        assert len(records) == 10

        stats = (await client.simulate_get("/v2/usage/stats", headers=AUTH)).json
        assert stats["totals"]["requests"] == 10 and stats["totals"]["errors"] == 0
        assert stats["totals"]["prompt_tokens"] > 0 and stats["totals"]["cost"] is None  # no prices: null, not 0
        expected = {
            "backend": {"echo": 7, "other": 3},
            "model": {"gpt-4": 4, "echo-large": 3, "o-model": 3},
            "requested_model": {"gpt-4": 4, "echo-large": 3, "other:o-model": 3},
            "caller": {key_id(CLIENT_KEY): 10},
            "frontend": {"openai": 10},
            "rule": {None: 10},
            "day": {dt.datetime.fromtimestamp(started, dt.timezone.utc).strftime("%Y-%m-%d"): 10},
        }
        for group in GROUPS:
            result = await client.simulate_get("/v2/usage/stats", headers=AUTH, params={"group_by": group})
            assert result.status_code == 200, (group, result.text)
            body = result.json
            assert body["group_by"] == group
            counts = {g["key"]: g["requests"] for g in body["groups"]}
            assert sum(counts.values()) == 10, (group, counts)
            if group in expected:
                if group == "day" and len(counts) == 2:  # ran across midnight UTC
                    continue
                assert counts == expected[group], (group, counts)
        sessions = {g["key"]: g["requests"] for g in (await client.simulate_get(
            "/v2/usage/stats", headers=AUTH, params={"group_by": "session"})).json["groups"]}
        assert sessions["sess-0"] == 3 and sessions["sess-1"] == 2 and sessions["sess-2"] == 2

        # since/until in unix seconds and ISO 8601
        future, past = time.time() + 3600, started - 3600
        for params, count in (({"since": str(past)}, 10), ({"since": str(future)}, 0),
                              ({"until": str(past)}, 0), ({"until": str(future)}, 10),
                              ({"since": _iso(past), "until": _iso(future)}, 10),
                              ({"since": _iso(future)}, 0), ({"until": _iso(past)[:10]}, 0),
                              ({"since": str(int(past)), "until": _iso(future), "group_by": "backend"}, 10)):
            body = (await client.simulate_get("/v2/usage/stats", headers=AUTH, params=params)).json
            assert body["totals"]["requests"] == count, (params, body)
        # records in a window between two requests
        mid = sorted(r["ts"] for r in records)[5]
        body = (await client.simulate_get("/v2/usage/stats", headers=AUTH, params={"since": str(mid)})).json
        assert body["totals"]["requests"] == 5

        # recent: every record exactly once, newest first, whatever the page size
        for limit in (1, 3, 4, 10, 1000):
            seen, cursor, pages = [], None, 0
            while True:
                params = {"limit": str(limit)} | ({"cursor": str(cursor)} if cursor else {})
                page = (await client.simulate_get("/v2/usage/recent", headers=AUTH, params=params)).json
                assert len(page["data"]) <= limit
                seen += [r["id"] for r in page["data"]]
                cursor, pages = page["next_cursor"], pages + 1
                if cursor is None:
                    break
            assert len(seen) == len(set(seen)) == 10 and seen == sorted(seen, reverse=True), (limit, seen)
            assert pages <= 10 // limit + 1
        default = (await client.simulate_get("/v2/usage/recent", headers=AUTH)).json
        assert len(default["data"]) == 10 and default["next_cursor"] is None


async def test_audit_log_filters_and_paging(tmp_path: Path, usage: dict[str, str]) -> None:
    # an admin key reads every actor's rows (a client key only its own: test_audit_logs_follow_the_usage_rule)
    app = build_app(tmp_path, usage=usage, auth={"api_keys": [CLIENT_KEY], "admin_keys": [ADMIN_KEY]})
    async with falcon.testing.ASGIConductor(app) as client:
        t0 = time.time()
        for i in range(5):  # auth failures: audited with the source address, never the key
            bad = await post_chat(client, headers={"Authorization": f"Bearer sk-wrong-key-{i}-QQQ"})
            assert bad.status_code == 401
        cmd = await post_chat(client, text="!/backend(other)", headers={"x-session-id": "audit-sess"})
        assert cmd.status_code == 200
        ok, _ = await app.reloader.reload(actor="tester", reason="test")
        assert ok

        async def audit_count() -> int:
            body = (await client.simulate_get("/v2/audit/logs", headers=ADMIN, params={"limit": "1000"})).json
            return len(body["data"]) >= 7 and len(body["data"])

        assert await wait_for(audit_count) == 7
        failures = (await client.simulate_get("/v2/audit/logs", headers=ADMIN,
                                              params={"type": "auth_failure"})).json["data"]
        assert len(failures) == 5 and all(f["outcome"] == "rejected" and f["actor"] for f in failures)
        assert all("sk-wrong-key" not in json.dumps(f) for f in failures)
        commands = (await client.simulate_get("/v2/audit/logs", headers=ADMIN,
                                              params={"type": "session_command"})).json["data"]
        assert len(commands) == 1 and commands[0]["actor"] == key_id(CLIENT_KEY)
        assert commands[0]["detail"]["session"] == "audit-sess"
        reloads = (await client.simulate_get("/v2/audit/logs", headers=ADMIN,
                                             params={"type": "config_reload"})).json["data"]
        assert [(r["actor"], r["outcome"]) for r in reloads] == [("tester", "ok")]
        # paging: all 7 exactly once
        seen, cursor = [], None
        while True:
            params = {"limit": "2"} | ({"cursor": str(cursor)} if cursor else {})
            page = (await client.simulate_get("/v2/audit/logs", headers=ADMIN, params=params)).json
            seen += [e["id"] for e in page["data"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) == 7
        # type + since + limit + cursor together
        page = (await client.simulate_get("/v2/audit/logs", headers=ADMIN,
                                          params={"type": "auth_failure", "since": _iso(t0 - 60), "limit": "3"})).json
        assert len(page["data"]) == 3 and page["next_cursor"]
        rest = (await client.simulate_get("/v2/audit/logs", headers=ADMIN, params={
            "type": "auth_failure", "since": str(t0 - 60), "limit": "3", "cursor": str(page["next_cursor"])})).json
        assert len(rest["data"]) == 2 and rest["next_cursor"] is None
        future = (await client.simulate_get("/v2/audit/logs", headers=ADMIN,
                                            params={"since": str(time.time() + 60)})).json
        assert future["data"] == []


BAD_PARAMS = [
    ("/v2/usage/stats", "group_by", "colour"),
    ("/v2/usage/stats", "since", "yesterday"),
    ("/v2/usage/stats", "until", "2026-13-45"),
    ("/v2/usage/stats", "bogus", "1"),
    ("/v2/usage/recent", "limit", "0"),
    ("/v2/usage/recent", "limit", "ten"),
    ("/v2/usage/recent", "limit", "100000"),
    ("/v2/usage/recent", "cursor", "-5"),
    ("/v2/usage/recent", "cursor", "abc"),
    ("/v2/usage/recent", "since", "1"),  # not a parameter of this endpoint
    ("/v2/audit/logs", "type", "everything"),
    ("/v2/audit/logs", "since", "soon"),
    ("/v2/audit/logs", "limit", "-1"),
    ("/v2/audit/logs", "cursor", "x"),
    ("/v2/audit/logs", "until", "1"),
    # floats that are no time: NaN used to reach the stats JSON (invalid JSON for most readers)
    ("/v2/usage/stats", "since", "nan"),
    ("/v2/usage/stats", "until", "inf"),
    ("/v2/usage/stats", "since", "-Infinity"),
    ("/v2/usage/stats", "since", "1e999"),
    ("/v2/audit/logs", "since", "NaN"),
]


@pytest.mark.parametrize(("path", "name", "value"), BAD_PARAMS)
async def test_bad_query_parameters_are_400_naming_the_parameter(tmp_path: Path, path: str, name: str,
                                                                  value: str) -> None:
    app = build_app(tmp_path)
    async with falcon.testing.ASGIConductor(app) as client:
        result = await client.simulate_get(path, headers=AUTH, params={name: value})
        assert result.status_code == 400, result.text
        assert result.headers["content-type"].startswith("application/json")
        error = result.json["error"]
        assert error["param"] == name and error["message"].startswith(name), error


async def test_every_audit_type_is_accepted(tmp_path: Path) -> None:
    app = build_app(tmp_path)
    async with falcon.testing.ASGIConductor(app) as client:
        for type_ in AUDIT_TYPES:
            result = await client.simulate_get("/v2/audit/logs", headers=AUTH, params={"type": type_})
            assert result.status_code == 200 and result.json == {"data": [], "next_cursor": None}


OPERATOR = [("GET", "/v2/usage/stats"), ("GET", "/v2/usage/recent"), ("GET", "/v2/audit/logs"),
            ("GET", "/metrics"), ("GET", "/health/backends"), ("POST", "/v2/admin/reload")]


async def test_admin_keys_restrict_operator_endpoints(tmp_path: Path) -> None:
    app = build_app(tmp_path, auth={"api_keys": [CLIENT_KEY], "admin_keys": [ADMIN_KEY]})
    async with falcon.testing.ASGIConductor(app) as client:
        for method, path in OPERATOR:
            normal = await client.simulate_request(method, path, headers=AUTH)
            assert normal.status_code == 403, (path, normal.text)
            assert normal.json["error"]["message"]
            admin = await client.simulate_request(method, path, headers=ADMIN)
            assert admin.status_code == 200, (path, admin.text)
            anonymous = await client.simulate_request(method, path)
            assert anonymous.status_code == 401, path
        # the admin key is a client key too
        assert (await post_chat(client, headers=ADMIN)).status_code == 200
        assert (await post_chat(client)).status_code == 200
        # key ids in x-api-key / ?key= work the same way
        assert (await client.simulate_get("/v2/usage/stats", headers={"x-api-key": ADMIN_KEY})).status_code == 200
        assert (await client.simulate_get("/v2/usage/stats", params={"key": ADMIN_KEY})).status_code == 200
        assert (await client.simulate_get("/v2/usage/stats", params={"key": CLIENT_KEY})).status_code == 403


async def test_without_admin_keys_any_client_key_works(tmp_path: Path) -> None:
    second = "sk-ops-second-client-key-000"
    app = build_app(tmp_path, auth={"api_keys": [CLIENT_KEY, second]})
    async with falcon.testing.ASGIConductor(app) as client:
        for key in (CLIENT_KEY, second):
            for method, path in OPERATOR:
                result = await client.simulate_request(method, path, headers={"Authorization": f"Bearer {key}"})
                assert result.status_code == 200, (path, result.text)
        assert (await client.simulate_get("/v2/usage/stats")).status_code == 401
        assert (await client.simulate_get("/v2/usage/stats",
                                          headers={"Authorization": "Bearer nope-nope"})).status_code == 401


async def _usage_of(client, key: str, **params: str) -> tuple[list[dict], dict]:
    """(all recent records in pages of 2, stats) as ``key`` sees them."""
    headers = {"Authorization": f"Bearer {key}"}
    items, cursor = [], None
    while True:
        page = await client.simulate_get("/v2/usage/recent", headers=headers,
                                         params={"limit": "2", **({"cursor": str(cursor)} if cursor else {})})
        assert page.status_code == 200, page.text
        items += page.json["data"]
        cursor = page.json["next_cursor"]
        if cursor is None:
            break
    stats = await client.simulate_get("/v2/usage/stats", headers=headers, params=params)
    assert stats.status_code == 200, stats.text
    return items, stats.json


async def _two_callers(client, app, first: str, second: str) -> None:
    for i in range(3):
        assert (await post_chat(client, text=f"a{i}", headers={"Authorization": f"Bearer {first}",
                                                                 "x-session-id": "sess-of-a"})).status_code == 200
    for i in range(2):
        assert (await post_chat(client, text=f"b{i}", model="echo-large",
                                headers={"Authorization": f"Bearer {second}", "x-session-id": "sess-of-b"})).status_code == 200

    async def stored() -> bool:
        return len((await app.state_ref.recorder.store.recent(100))[0]) == 5

    await wait_for(stored)


async def test_without_admin_keys_a_client_key_sees_only_its_own_usage(tmp_path: Path, usage: dict[str, str]) -> None:
    second = "sk-ops-second-client-key-000"
    app = build_app(tmp_path, auth={"api_keys": [CLIENT_KEY, second]}, usage=usage)
    async with falcon.testing.ASGIConductor(app) as client:
        await _two_callers(client, app, CLIENT_KEY, second)
        for key, count, session in ((CLIENT_KEY, 3, "sess-of-a"), (second, 2, "sess-of-b")):
            items, stats = await _usage_of(client, key)
            assert len(items) == count and {r["caller"] for r in items} == {key_id(key)}
            assert {r["session_id"] for r in items} == {session}
            assert stats["totals"]["requests"] == count
            for group, expected in (("caller", key_id(key)), ("session", session)):
                _, grouped = await _usage_of(client, key, group_by=group)
                assert [(g["key"], g["requests"]) for g in grouped["groups"]] == [(expected, count)]


async def test_an_admin_key_sees_every_callers_usage(tmp_path: Path, usage: dict[str, str]) -> None:
    app = build_app(tmp_path, auth={"api_keys": [CLIENT_KEY], "admin_keys": [ADMIN_KEY]}, usage=usage)
    async with falcon.testing.ASGIConductor(app) as client:
        await _two_callers(client, app, CLIENT_KEY, ADMIN_KEY)
        items, stats = await _usage_of(client, ADMIN_KEY, group_by="caller")
        assert len(items) == 5 and stats["totals"]["requests"] == 5
        assert {g["key"]: g["requests"] for g in stats["groups"]} == {key_id(CLIENT_KEY): 3, key_id(ADMIN_KEY): 2}
        assert (await client.simulate_get("/v2/usage/recent", headers=AUTH)).status_code == 403


async def test_stored_rows_hold_key_ids_never_keys(tmp_path: Path, fake_provider: FakeProvider) -> None:
    db = tmp_path / "usage.db"
    backend_key = fake_provider.key("openai")
    app = build_app(tmp_path, auth={"api_keys": [CLIENT_KEY], "admin_keys": [ADMIN_KEY]}, usage={"path": str(db)},
                    backends={"echo": {"type": "echo"}, "other": {"type": "echo"},
                              "fake": {"type": "openai", "base_url": f"{fake_provider.url}/v1",
                                       "api_key": backend_key}})
    async with falcon.testing.ASGIConductor(app) as client:
        assert (await post_chat(client, model="fake:fake-model")).status_code == 200
        assert (await post_chat(client, model="fake:fake-model", stream=True)).status_code == 200
        assert (await post_chat(client, headers={"x-api-key": ADMIN_KEY, "Authorization": ""})).status_code == 200
        assert (await post_chat(client, "gemini", headers={"Authorization": ""},
                                params={"key": CLIENT_KEY})).status_code == 200
        assert (await post_chat(client, headers={"Authorization": "Bearer sk-presented-but-wrong-999"})).status_code == 401
        assert (await post_chat(client, text="!/backend(fake)", headers={"x-session-id": "keyscan"})).status_code == 200
        records = await wait_records(client, 5, headers=ADMIN)
        assert {r["caller"] for r in records} == {key_id(CLIENT_KEY), key_id(ADMIN_KEY)}
        fake_attempts = [a for r in records for a in r["attempts"] if a["backend"] == "fake"]
        assert fake_attempts and all(a["key_id"] and a["key_id"] != backend_key for a in fake_attempts)
        await wait_for(lambda: _audit_rows(client))
    con = sqlite3.connect(db)
    try:
        dump = "\n".join(con.iterdump())
    finally:
        con.close()
    assert "INSERT INTO" in dump and key_id(CLIENT_KEY) in dump
    for secret in (CLIENT_KEY, ADMIN_KEY, backend_key, "sk-presented-but-wrong-999"):
        assert secret not in dump


async def _audit_rows(client: falcon.testing.ASGIConductor) -> bool:
    body = (await client.simulate_get("/v2/audit/logs", headers=ADMIN)).json
    return {e["type"] for e in body["data"]} >= {"auth_failure", "session_command"}


async def _session_commands_seen_by(client: falcon.testing.ASGIConductor, key: str) -> list[dict]:
    result = await client.simulate_get("/v2/audit/logs", headers={"Authorization": f"Bearer {key}"},
                                       params={"type": "session_command"})
    assert result.status_code == 200, result.text
    return result.json["data"]


@pytest.mark.parametrize("admin", [False, True])
async def test_audit_logs_follow_the_usage_rule(tmp_path: Path, usage: dict[str, str], admin: bool) -> None:
    """Without admin keys a client key reads only its own audit rows; before, key A read B's
    session ids and commands there. An admin key reads all of them."""
    second = "sk-ops-second-client-key-000"
    auth = {"api_keys": [CLIENT_KEY, second]} | ({"admin_keys": [ADMIN_KEY]} if admin else {})
    app = build_app(tmp_path, auth=auth, usage=usage)
    async with falcon.testing.ASGIConductor(app) as client:
        for key, session in ((CLIENT_KEY, "A-own-sess"), (second, "B-private-sess")):
            assert (await post_chat(client, text="!/route-append(gpt-x, echo:foo)", headers={
                "Authorization": f"Bearer {key}", "x-session-id": session})).status_code == 200
        async def both_stored() -> bool:
            return len((await app.state_ref.recorder.store.audit_logs(type_="session_command"))[0]) == 2

        await wait_for(both_stored)
        if admin:
            assert {r["detail"]["session"] for r in await _session_commands_seen_by(client, ADMIN_KEY)} == {
                "A-own-sess", "B-private-sess"}
            assert (await client.simulate_get("/v2/audit/logs", headers=AUTH)).status_code == 403
            return
        for key, session in ((CLIENT_KEY, "A-own-sess"), (second, "B-private-sess")):
            rows = await _session_commands_seen_by(client, key)
            assert [(r["actor"], r["detail"]["session"]) for r in rows] == [(key_id(key), session)], rows
