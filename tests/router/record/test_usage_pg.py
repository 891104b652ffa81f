"""The PostgreSQL usage store against the real server: its schema and migrations, an outage (a
relay in front of the server stopped and started again, or a closed port), and the proxy on top
of it: requests flow while the database is away, drops are counted, reads answer 503."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import falcon.testing
import psycopg
import pytest

import router.record.usage_pg as usage_pg
from ops_support import AUTH, build_app, closed_port, parse_metrics, post_chat, samples, wait_for
from pg_support import PG_URL, Relay
from router.record.usage import USAGE_COLUMNS, UsageRow, UsageStoreUnavailable
from router.record.usage_pg import MIGRATIONS, PostgresUsageStore


def row(i: int, **kw: Any) -> UsageRow:
    return UsageRow(**{"ts": time.time(), "request_id": f"r{i}", "session_id": "s", "caller": "key-1",
                       "frontend": "openai", "requested_model": "m", "backend": "b", "model": "m", **kw})


def query(sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(PG_URL, autocommit=True, connect_timeout=5) as conn:
        return conn.execute(sql, args).fetchall()


async def written(store: PostgresUsageStore, count: int, timeout: float = 30.0) -> None:
    async def check() -> bool:
        return store.written >= count

    await wait_for(check, timeout, interval=0.05)


async def test_schema_is_created_versioned_and_its_columns_are_the_rows(pg_schema: str) -> None:
    store = PostgresUsageStore(PG_URL, pg_schema)
    await store.start()

    async def created() -> bool:  # at start, before any row
        return bool(query("SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND table_name = 'usage'",
                          pg_schema))

    await wait_for(created, 10)
    store.record(row(1))
    await store.flush()
    assert store.written == 1
    columns = [r[0] for r in query("SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
                                   "AND table_name = 'usage' ORDER BY ordinal_position", pg_schema)]
    assert tuple(columns) == ("id", *USAGE_COLUMNS)  # the row's fields, in order, are the table's
    versions = query(f'SELECT version FROM "{pg_schema}".usage_schema_version ORDER BY version')
    assert [v for (v,) in versions] == [v for v, _ in MIGRATIONS]
    await store.close()
    again = PostgresUsageStore(PG_URL, pg_schema)  # a restart: nothing migrates twice
    await again.start()
    again.record(row(2))
    await again.flush()
    assert again.written == 1 and (await again.stats())["totals"]["requests"] == 2
    assert query(f'SELECT count(*) FROM "{pg_schema}".usage_schema_version') == [(len(MIGRATIONS),)]
    await again.close()


async def test_a_newer_version_applies_only_its_own_migration(pg_schema: str, monkeypatch) -> None:
    first = PostgresUsageStore(PG_URL, pg_schema)
    first.record(row(1))
    await first.start()
    await first.flush()
    await first.close()
    # Version 1's CREATE TABLE statements would fail if they ran again on the existing tables.
    monkeypatch.setattr(usage_pg, "MIGRATIONS", MIGRATIONS + ((len(MIGRATIONS) + 1, (
        "ALTER TABLE {s}.usage ADD COLUMN region TEXT",)),))
    second = PostgresUsageStore(PG_URL, pg_schema)
    await second.start()
    second.record(row(2))
    await second.flush()
    assert second.written == 1
    assert query("SELECT count(*) FROM information_schema.columns WHERE table_schema = %s AND table_name = 'usage' "
                 "AND column_name = 'region'", pg_schema) == [(1,)]
    assert query(f'SELECT max(version) FROM "{pg_schema}".usage_schema_version') == [(len(MIGRATIONS) + 1,)]
    await second.close()


async def test_instances_starting_together_create_the_schema_once(pg_schema: str) -> None:
    stores = [PostgresUsageStore(PG_URL, pg_schema) for _ in range(3)]
    for i, store in enumerate(stores):
        await store.start()
        store.record(row(i))
    await asyncio.gather(*(s.flush() for s in stores))
    assert [s.written for s in stores] == [1, 1, 1] and [s.dropped for s in stores] == [0, 0, 0]
    assert (await stores[0].stats())["totals"]["requests"] == 3
    for store in stores:
        await store.close()


async def test_an_outage_queues_then_drops_and_counts_and_the_queue_is_written_when_it_returns(
        pg_schema: str) -> None:
    relay = Relay()
    await relay.start()
    store = PostgresUsageStore(relay.url, pg_schema, queue_size=50, read_timeout=1.0)
    await store.start()
    try:
        for i in range(10):
            store.record(row(i))
        await written(store, 10)
        await relay.stop()  # PostgreSQL "goes down"
        for i in range(10, 30):
            assert store.record(row(i)) is True  # queued, at once
        await wait_for(lambda: asyncio.sleep(0, result=not store.up), timeout=30)
        started = time.monotonic()
        accepted = [store.record(row(i)) for i in range(30, 70)]
        assert time.monotonic() - started < 0.5  # never waits for the database
        assert accepted.count(True) == 30 and store.dropped == 10  # the queue holds 50, no more
        with pytest.raises(UsageStoreUnavailable):
            await store.stats()
        await relay.start()  # ... and comes back on the same port
        await written(store, 60)
        assert store.up and store.dropped == 10
        totals = (await store.stats())["totals"]
        assert totals["requests"] == 60
        ids = {r for (r,) in query(f'SELECT request_id FROM "{pg_schema}".usage')}
        assert ids == {f"r{i}" for i in range(60)}  # the first 60 offered, none twice
    finally:
        await store.close()
        await relay.stop()


async def test_a_closed_port_never_blocks_recording_and_close_returns(pg_schema: str) -> None:
    store = PostgresUsageStore(f"postgresql://postgres@127.0.0.1:{closed_port()}/test", pg_schema,
                               queue_size=5, read_timeout=1.0)
    await store.start()
    started = time.monotonic()
    assert [store.record(row(i)) for i in range(8)].count(True) == 5
    assert time.monotonic() - started < 0.5 and store.dropped == 3
    await asyncio.wait_for(store.flush(), 15)  # returns once the writer found the database away
    assert not store.up and store.written == 0
    with pytest.raises(UsageStoreUnavailable):
        await store.recent(5)
    await asyncio.wait_for(store.close(), usage_pg.CLOSE_TIMEOUT + 5)


async def test_the_proxy_serves_while_postgres_is_unreachable_and_counts_the_drops(tmp_path, pg_schema: str) -> None:
    app = build_app(tmp_path, usage={"url": f"postgresql://postgres@127.0.0.1:{closed_port()}/test",
                                     "schema": pg_schema, "queue_size": 3})  # a small queue, so this test fills it
    store = app.state_ref.recorder.store
    assert isinstance(store, PostgresUsageStore)
    async with falcon.testing.ASGIConductor(app) as client:
        started = time.monotonic()
        for i in range(7):
            reply = await post_chat(client, text=f"hello {i}")
            assert reply.status_code == 200, reply.text
        assert time.monotonic() - started < 10
        stats = await client.simulate_get("/v2/usage/stats", headers=AUTH)
        assert stats.status_code == 503 and "usage store" in stats.text and "PostgreSQL" in stats.text
        metrics = parse_metrics((await client.simulate_get("/metrics", headers=AUTH)).text)
        [dropped] = samples(metrics, "llm_proxy_usage_records_dropped")
        assert dropped.value == 4 and store.dropped == 4 and store.written == 0  # exactly the overflow of 7 over 3


async def test_the_endpoints_read_postgres(tmp_path, pg_schema: str) -> None:
    app = build_app(tmp_path, usage={"url": PG_URL, "schema": pg_schema})
    async with falcon.testing.ASGIConductor(app) as client:
        for i in range(3):
            assert (await post_chat(client, text=f"hello {i}")).status_code == 200

        async def three() -> Any:
            got = await client.simulate_get("/v2/usage/stats", headers=AUTH, params={"group_by": "day"})
            return got if got.json["totals"]["requests"] == 3 else None

        stats = await wait_for(three)
        assert stats.json["groups"][0]["key"] == time.strftime("%Y-%m-%d", time.gmtime())
        recent = await client.simulate_get("/v2/usage/recent", headers=AUTH, params={"limit": "2"})
        assert len(recent.json["data"]) == 2 and recent.json["next_cursor"] is not None
        assert recent.json["data"][0]["stream"] is False and isinstance(recent.json["data"][0]["attempts"], list)
    assert query(f'SELECT count(*) FROM "{pg_schema}".usage') == [(3,)]


def test_two_proxy_processes_count_each_others_usage_once(tmp_path, pg_schema: str) -> None:
    """Two proxies (separate processes) on one PostgreSQL schema: each one's /v2/usage/stats and
    /v2/usage/recent show every request served by either, each exactly once."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import urllib.request
    from pathlib import Path

    from ops_support import CLIENT_KEY, closed_port as free_port, write_tree

    root = Path(__file__).resolve().parents[3]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("LLM_PROXY_")}, "PYTHONPATH": str(root)}
    procs, ports = [], []
    for name in ("a", "b"):
        config = write_tree(tmp_path / name, usage={"url": PG_URL, "schema": pg_schema})
        port = free_port()
        ports.append(port)
        procs.append(subprocess.Popen([sys.executable, "-m", "router.cli", "--config", str(config), "--port", str(port)],
                                      cwd=tmp_path / name, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      text=True))

    def call(port: int, path: str, body: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, str]]:
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", json.dumps(body).encode() if body else None,
                                          method="POST" if body else "GET",
                                          headers={"Authorization": f"Bearer {CLIENT_KEY}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as reply:
            return json.loads(reply.read()), dict(reply.headers)

    try:
        served: list[str] = []
        deadline = time.monotonic() + 60
        for port, count in zip(ports, (3, 2)):
            while True:  # the first call waits for the process to listen
                try:
                    _, headers = call(port, "/v2/chat/completions",
                                      {"model": "echo", "messages": [{"role": "user", "content": "hi"}]})
                    break
                except OSError:
                    if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                        raise
                    time.sleep(0.2)
            served.append(headers["x-request-id"])
            for _ in range(count - 1):
                served.append(call(port, "/v2/chat/completions",
                                   {"model": "echo", "messages": [{"role": "user", "content": "hi"}]})[1]["x-request-id"])
        assert len(set(served)) == 5
        for port in ports:
            deadline = time.monotonic() + 20
            while (stats := call(port, "/v2/usage/stats")[0])["totals"]["requests"] < 5 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert stats["totals"]["requests"] == 5, stats
            recent = call(port, "/v2/usage/recent?limit=100")[0]["data"]
            assert sorted(r["request_id"] for r in recent) == sorted(served)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                _, err = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
            assert "Traceback" not in err, err
            assert "usage store: PostgreSQL " in err and f", schema {pg_schema}\n" in err  # the start banner says which


async def test_a_batch_the_database_refuses_is_dropped_and_counted_not_retried_forever(pg_schema: str) -> None:
    store = PostgresUsageStore(PG_URL, pg_schema)
    await store.start()
    store.record(row(1, prompt_tokens="not a number"))  # type: ignore[arg-type]
    await store.flush()
    assert store.dropped == 1 and store.written == 0 and store.up
    store.record(row(2))
    await store.flush()
    assert store.written == 1 and [r["request_id"] for r in (await store.recent(5))[0]] == ["r2"]
    await store.close()


async def test_a_schema_without_the_key_column_gains_it_and_keeps_its_rows(pg_schema: str, monkeypatch) -> None:
    """A schema an older proxy made (the version before key_id) is brought to the newest version;
    its rows stay, new rows carry their key, and budgets can sum a key's spend."""
    assert MIGRATIONS[-1][1][0] == "ALTER TABLE {s}.usage ADD COLUMN key_id TEXT"
    monkeypatch.setattr(usage_pg, "MIGRATIONS", MIGRATIONS[:-1])
    monkeypatch.setattr(usage_pg, "USAGE_COLUMNS", USAGE_COLUMNS[:-1])
    monkeypatch.setattr(usage_pg, "_USAGE_TYPES", usage_pg._USAGE_TYPES[:-1])
    old = PostgresUsageStore(PG_URL, pg_schema)
    await old.start()
    old._put(("usage", tuple(getattr(row(1, cost=0.5), c) for c in USAGE_COLUMNS[:-1])))
    await old.flush()
    await old.close()
    monkeypatch.undo()
    assert "key_id" not in [r[0] for r in query("SELECT column_name FROM information_schema.columns "
                                                "WHERE table_schema = %s AND table_name = 'usage'", pg_schema)]
    new = PostgresUsageStore(PG_URL, pg_schema)
    await new.start()
    new.record(row(2, cost=0.25, key_id="bk-new"))
    await new.flush()
    assert new.written == 1
    columns = [r[0] for r in query("SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
                                   "AND table_name = 'usage' ORDER BY ordinal_position", pg_schema)]
    assert tuple(columns) == ("id", *USAGE_COLUMNS)
    assert query(f'SELECT max(version) FROM "{pg_schema}".usage_schema_version') == [(MIGRATIONS[-1][0],)]
    items, _ = await new.recent(limit=10)
    assert [(i["request_id"], i["key_id"]) for i in items] == [("r2", "bk-new"), ("r1", None)]
    assert await new.spent(time.time() - 60, (("caller", "key-1"),)) == pytest.approx(0.75)
    assert await new.spent(time.time() - 60, (("key", "bk-new"),)) == pytest.approx(0.25)
    await new.close()


async def test_a_version_1_schema_is_migrated_to_jsonb_in_place_and_every_row_reads_back(
        tmp_path, pg_schema: str) -> None:
    """The layout version 1 created (JSON lists as TEXT), with rows in it, as an older proxy left
    it: the store's start converts the columns to JSONB without losing a row, and the endpoints and
    their filters read the old rows as before, beside the rows written after."""
    from router.http.auth import key_id
    from ops_support import CLIENT_KEY

    version, statements = MIGRATIONS[0]
    assert version == 1
    old = time.time() - 3600
    with psycopg.connect(PG_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE SCHEMA "{pg_schema}"')
        for statement in statements:
            conn.execute(statement.format(s=f'"{pg_schema}"'))
        conn.execute(f'CREATE TABLE "{pg_schema}".usage_schema_version '
                     "(version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
        conn.execute(f'INSERT INTO "{pg_schema}".usage_schema_version (version) VALUES (1)')
        mine, theirs = key_id(CLIENT_KEY), "key-someoneelse"
        for i in range(6):
            conn.execute(
                f'INSERT INTO "{pg_schema}".usage (ts, request_id, caller, frontend, requested_model, backend, model, '
                "status, prompt_tokens, stream, rules, attempts, guard_events) "
                "VALUES (%s, %s, %s, 'openai', 'm', %s, 'm', %s, 10, %s, %s, %s, %s)",
                (old + i, f"old{i}", mine if i < 4 else theirs, "a" if i % 2 else "b", 500 if i == 3 else 200, i % 2,
                 f'["rule{i}"]', f'[{{"backend": "b", "status": "ok", "latency_ms": {i}.5}}]',
                 "[]" if i else '[{"kind": "loop", "detail": "x"}]'))
        # A reload this client key posted (a client key sees its own audit rows when no admin keys are set).
        conn.execute(f'INSERT INTO "{pg_schema}".audit (ts, type, actor, outcome, detail) VALUES '
                     "(%s, 'config_reload', %s, 'ok', %s)", (old, mine, '{"generation": 3, "rules": 2}'))

    app = build_app(tmp_path, usage={"url": PG_URL, "schema": pg_schema})
    async with falcon.testing.ASGIConductor(app) as client:
        assert (await post_chat(client, text="after the migration")).status_code == 200

        async def five() -> Any:  # the client key's own: four old rows and the new one
            got = await client.simulate_get("/v2/usage/stats", headers=AUTH, params={"group_by": "backend"})
            return got if got.json["totals"]["requests"] == 5 else None

        stats = await wait_for(five, 30)
        assert stats.json["totals"]["errors"] == 1 and stats.json["totals"]["prompt_tokens"] >= 40
        assert {g["key"]: g["requests"] for g in stats.json["groups"]} == {"a": 2, "b": 2, "echo": 1}
        ranged = await client.simulate_get("/v2/usage/stats", headers=AUTH,
                                           params={"since": str(old + 1), "until": str(old + 4)})
        assert ranged.json["totals"]["requests"] == 3  # old1..old3
        recent = await client.simulate_get("/v2/usage/recent", headers=AUTH, params={"limit": "100"})
        by_id = {r["request_id"]: r for r in recent.json["data"]}
        assert {f"old{i}" for i in range(4)} <= set(by_id) and len(by_id) == 5
        assert by_id["old0"]["rules"] == ["rule0"] and by_id["old0"]["guard_events"] == [{"kind": "loop", "detail": "x"}]
        assert by_id["old3"]["attempts"] == [{"backend": "b", "status": "ok", "latency_ms": 3.5}]
        assert by_id["old3"]["stream"] is True and by_id["old2"]["stream"] is False and by_id["old3"]["status"] == 500
        new = next(r for r in recent.json["data"] if not r["request_id"].startswith("old"))
        assert isinstance(new["attempts"], list) and new["attempts"][0]["status"] == "ok"
        audit = await client.simulate_get("/v2/audit/logs", headers=AUTH, params={"type": "config_reload"})
        assert [(a["actor"], a["detail"]) for a in audit.json["data"]] == [(mine, {"generation": 3, "rules": 2})]
    assert query(f'SELECT count(*) FROM "{pg_schema}".usage') == [(7,)]  # no row lost
    assert query(f'SELECT request_id, rules FROM "{pg_schema}".usage WHERE caller = %s ORDER BY id',
                 theirs) == [("old4", ["rule4"]), ("old5", ["rule5"])]  # other callers' rows kept as they were
    types = dict(query("SELECT table_name || '.' || column_name, data_type FROM information_schema.columns "
                       "WHERE table_schema = %s AND column_name IN ('rules', 'attempts', 'guard_events', 'detail')",
                       pg_schema))
    assert types == {"usage.rules": "jsonb", "usage.attempts": "jsonb", "usage.guard_events": "jsonb",
                     "audit.detail": "jsonb"}
    assert query(f'SELECT version FROM "{pg_schema}".usage_schema_version ORDER BY version') == [(v,) for v, _ in MIGRATIONS]
    assert query(f'SELECT count(*) FROM "{pg_schema}".usage WHERE attempts @> %s::jsonb',
                 '[{"status": "ok"}]') == [(7,)]  # JSON operators work on the migrated rows


async def test_health_and_the_up_gauge_follow_a_postgres_outage_with_one_warning(
        tmp_path, pg_schema: str, caplog: pytest.LogCaptureFixture) -> None:
    """PostgreSQL behind a relay that is stopped and started: ``/health`` says ``degraded`` naming
    the usage store while its writer cannot write, ``llm_proxy_usage_store_up`` is 0, one warning
    (not one per record) is logged; both are back to ok/1 once the queued records are written."""
    relay = Relay()
    await relay.start()
    app = build_app(tmp_path, usage={"url": relay.url, "schema": pg_schema})
    store = app.state_ref.recorder.store

    async def up_gauge(client: Any) -> float:
        metrics = parse_metrics((await client.simulate_get("/metrics", headers=AUTH)).text)
        [sample] = samples(metrics, "llm_proxy_usage_store_up")
        assert sample.labels == {"store": "postgresql"}
        return sample.value

    try:
        async with falcon.testing.ASGIConductor(app) as client:
            assert (await post_chat(client, text="before")).status_code == 200
            await written(store, 1)
            health = (await client.simulate_get("/health")).json
            assert health["status"] == "ok" and health["usage_store"]["up"] is True
            assert health["usage_store"]["store"] == "postgresql" and health["usage_store"]["schema"] == pg_schema
            assert await up_gauge(client) == 1
            caplog.clear()
            await relay.stop()  # PostgreSQL "goes down"
            for i in range(30):
                assert (await post_chat(client, text=f"during {i}")).status_code == 200

            async def degraded() -> Any:
                got = (await client.simulate_get("/health")).json
                return got if got["status"] == "degraded" else None

            health = await wait_for(degraded, 30, interval=0.1)
            usage = health["usage_store"]
            assert usage["up"] is False and usage["store"] == "postgresql" and usage["error"]
            assert usage["queued"] == 30 and usage["dropped"] == 0
            assert "state_store" not in health  # only what is configured is reported
            assert await up_gauge(client) == 0
            for i in range(30, 40):  # more records during the same outage: no more warnings
                assert (await post_chat(client, text=f"during {i}")).status_code == 200
            await asyncio.sleep(3 * usage_pg.RETRY_MIN)  # a few retries of the writer
            warnings = [r for r in caplog.records if r.name == "llm_proxy.usage" and r.levelname == "WARNING"]
            assert [r.getMessage().split(" (")[0] for r in warnings] == ["usage store: cannot reach PostgreSQL"], warnings
            await relay.start()  # ... and it comes back

            async def healthy() -> Any:
                got = (await client.simulate_get("/health")).json
                return got if got["status"] == "ok" else None

            health = await wait_for(healthy, 30, interval=0.1)
            assert health["usage_store"]["up"] is True and "error" not in health["usage_store"]
            await written(store, 41)
            assert await up_gauge(client) == 1 and store.dropped == 0
            back = [r for r in caplog.records if "reachable again" in r.getMessage()]
            assert len(back) == 1
    finally:
        await relay.stop()


async def test_health_is_degraded_from_the_start_when_postgres_is_unreachable_without_any_request(
        tmp_path, pg_schema: str) -> None:
    app = build_app(tmp_path, usage={"url": f"postgresql://postgres@127.0.0.1:{closed_port()}/test",
                                     "schema": pg_schema})
    async with falcon.testing.ASGIConductor(app) as client:
        async def degraded() -> Any:
            got = await client.simulate_get("/health")
            return got if got.json["status"] == "degraded" else None

        health = await wait_for(degraded, 30, interval=0.2)
        assert health.status_code == 200  # the proxy serves; the balancer reads the status
        assert health.json["usage_store"]["up"] is False and "127.0.0.1" in health.json["usage_store"]["url"]
