"""Usage/audit store: round trip, batching queue, drops when full, filters, paging, retention.

The tests that hold for any store run against SQLite and the real PostgreSQL (a schema of their
own, ``pg_schema``); the rest are about SQLite's file, adapter and in-memory cap.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest

from pg_support import PG_URL
from router.record.usage import AuditRecord, SQLiteUsageStore, UsageRow
from router.record.usage_pg import PostgresUsageStore


class Stores:
    """Opens stores of one kind on one place (a SQLite file, a PostgreSQL schema): a second
    ``open`` sees what the first wrote, as a restarted proxy (or another instance) would."""

    def __init__(self, kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
        self.kind = kind
        self.path = str(tmp_path / "usage.db")
        self.schema = request.getfixturevalue("pg_schema") if kind == "postgresql" else None

    def open(self, **kw: Any) -> SQLiteUsageStore | PostgresUsageStore:
        if self.kind == "postgresql":
            return PostgresUsageStore(PG_URL, self.schema, **kw)
        return SQLiteUsageStore(self.path, **kw)


@pytest.fixture(params=["sqlite", "postgresql"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Stores:
    return Stores(request.param, tmp_path, request)


BASE = time.time() - 86400  # recent: the default 30-day retention keeps these rows


def rec(i: int, **kw) -> UsageRow:
    base = dict(ts=BASE + i * 60, request_id=f"r{i}", session_id=f"s{i % 2}", caller=f"key-{i % 3}",
                frontend="openai", requested_model="gpt-4", backend="openai" if i % 2 else "anthropic",
                model="gpt-4o", prompt_tokens=10, completion_tokens=5, latency_ms=2.0, route_rule="r1",
                rules='["r1"]', attempts='[{"backend":"openai","status":"ok","key_id":"bk-1"}]')
    base.update(kw)
    return UsageRow(**base)


async def test_round_trip_through_the_queue(stores: Stores) -> None:
    store = stores.open()
    await store.start()
    for i in range(10):
        assert store.record(rec(i, cost=0.01 if i < 4 else None))
    store.audit(AuditRecord(ts=BASE, type="auth_failure", actor="127.0.0.1", outcome="rejected",
                            detail={"path": "/v2/chat/completions"}))
    await store.close()
    reopened = stores.open()
    items, cursor = await reopened.recent(limit=4)
    assert [i["request_id"] for i in items] == ["r9", "r8", "r7", "r6"] and cursor == items[-1]["id"]
    more, _ = await reopened.recent(limit=100, cursor=cursor)
    assert [i["request_id"] for i in more] == [f"r{i}" for i in range(5, -1, -1)]
    assert items[0]["attempts"][0]["key_id"] == "bk-1" and items[0]["stream"] is False
    stats = await reopened.stats(group_by="backend")
    assert stats["totals"]["requests"] == 10 and stats["totals"]["prompt_tokens"] == 100
    assert stats["totals"]["cost"] == pytest.approx(0.04)  # only priced rows count; unknown price is not zero
    assert {g["key"]: g["requests"] for g in stats["groups"]} == {"openai": 5, "anthropic": 5}
    logs, _ = await reopened.audit_logs(type_="auth_failure")
    assert logs[0]["detail"] == {"path": "/v2/chat/completions"} and logs[0]["actor"] == "127.0.0.1"
    await reopened.close()


async def test_every_column_reads_back_as_written(stores: Stores) -> None:
    store = stores.open()
    await store.start()
    written = UsageRow(
        ts=BASE + 0.25, request_id="req-x", session_id="s-x", caller="key-x", frontend="anthropic",
        requested_model="claude", backend="b", model="m", status=502, finish_reason="error", prompt_tokens=12,
        completion_tokens=3, cached_tokens=2, tokens_estimated=1, latency_ms=12.345, ttfb_ms=1.5, stream=1,
        cache_hit=0, cost=0.000123, route_rule="rule-1", rules='["g","rule-1"]',
        attempts='[{"backend":"b","status":"server_error","key_id":"k"}]', guard_events='[{"kind":"loop"}]',
        error="upstream said no \u00e9")
    store.record(written)
    await store.flush()
    [item], _ = await store.recent(limit=5)
    expected = dataclasses.asdict(written) | {"rules": ["g", "rule-1"], "guard_events": [{"kind": "loop"}],
                                    "attempts": [{"backend": "b", "status": "server_error", "key_id": "k"}],
                                    "tokens_estimated": True, "stream": True, "cache_hit": False}
    assert {k: v for k, v in item.items() if k != "id"} == expected and isinstance(item["id"], int)
    await store.close()


async def test_unknown_prices_stay_null_and_time_filters_apply(stores: Stores) -> None:
    store = stores.open(retention_days=0)  # 0 = keep everything (these rows are from 2023)
    await store.start()
    for i in range(6):
        store.record(rec(i, ts=1_700_000_000 + i * 3600))  # 2023-11-14 22:13 UTC, then hourly
    await store.flush()
    stats = await store.stats(since=1_700_000_000 + 2 * 3600, until=1_700_000_000 + 4 * 3600, group_by="day")
    assert stats["totals"]["requests"] == 2 and stats["totals"]["cost"] is None
    assert [(g["key"], g["requests"]) for g in stats["groups"]] == [("2023-11-15", 2)]
    await store.close()


async def test_full_queue_drops_and_counts_never_blocks(stores: Stores) -> None:
    store = stores.open(queue_size=5)
    await store.start()
    results = [store.record(rec(i)) for i in range(50)]  # no await: the writer cannot drain meanwhile
    assert results.count(True) == 5 and store.dropped == 45
    await store.close()


async def test_retention_prunes_old_rows(stores: Stores) -> None:
    store = stores.open(retention_days=1)
    await store.start()
    now = time.time()
    store.record(rec(1, ts=now - 3 * 86400))
    await store.flush()
    store._last_prune = 0  # the next batch prunes
    store.record(rec(2, ts=now))
    await store.flush()
    items, _ = await store.recent(limit=10)
    assert [i["request_id"] for i in items] == ["r2"]
    await store.close()


async def test_writer_sustains_thousands_of_records_per_second(stores: Stores) -> None:
    """Correctness of bulk writes (the rate itself is measured in benchmarks/usage_bench.py)."""
    store = stores.open(queue_size=50_000)
    await store.start()
    for i in range(5000):
        store.record(rec(i))
        if i % 1000 == 0:
            await asyncio.sleep(0)
    await store.close()
    reopened = stores.open()
    assert (await reopened.stats())["totals"]["requests"] == 5000
    await reopened.close()


async def test_close_flushes_at_once(stores: Stores) -> None:
    store = stores.open(flush_interval=30.0)
    await store.start()
    store.record(rec(1))
    started = time.monotonic()
    await store.close()  # does not wait out the 30 s batching window
    assert time.monotonic() - started < 4 and store.written == 1


async def test_a_broken_sqlite_store_never_raises() -> None:
    broken = SQLiteUsageStore()
    broken._db.close()  # writes fail from now on
    assert broken.record(rec(2)) is False and broken.audit(
        AuditRecord(ts=BASE, type="auth_failure", actor="x", outcome="rejected")) is False
    assert broken.dropped == 2


async def test_in_memory_store_keeps_only_the_newest_rows() -> None:
    store = SQLiteUsageStore(max_rows=100)
    await store.start()
    for i in range(2500):
        store.record(rec(i))
        if i % 200 == 0:
            await asyncio.sleep(0)
    await store.flush()
    stats = await store.stats()
    items, _ = await store.recent(limit=1)
    assert stats["totals"]["requests"] <= 100 + 1000  # capped every 1,000 writes
    assert items[0]["request_id"] == "r2499"
    await store.close()


async def test_batches_of_many_rows_keep_order_and_every_column(stores: Stores) -> None:
    """Rows are inserted many per statement plus the remainder (SQLite), or copied in one COPY
    (PostgreSQL): none lost, none reordered, every column read back as written."""
    from router.record.usage import _ROWS_PER_INSERT

    store = stores.open(queue_size=1000)
    await store.start()
    n = _ROWS_PER_INSERT + _ROWS_PER_INSERT // 2 + 3  # one batch: full statements and single rows
    for i in range(n):
        store.record(rec(i, cost=i / 1000))
    await store.close()
    reopened = stores.open()
    items, _ = await reopened.recent(limit=500)
    assert [i["request_id"] for i in items] == [f"r{i}" for i in range(n - 1, -1, -1)]
    assert [i["id"] for i in items] == sorted((i["id"] for i in items), reverse=True)
    assert items[0]["cost"] == (n - 1) / 1000 and items[0]["attempts"][0]["key_id"] == "bk-1" and items[0]["rules"] == ["r1"]
    await reopened.close()


async def test_none_columns_are_stored_as_null() -> None:
    """None is bound through the NoneType adapter the store registers: still SQL NULL."""
    import sqlite3

    store = SQLiteUsageStore()
    store.record(rec(0, cost=None, route_rule=None, error=None))
    nulls = store._db.execute("SELECT typeof(cost), typeof(route_rule), typeof(error) FROM usage").fetchone()
    assert tuple(nulls) == ("null", "null", "null")
    assert sqlite3.connect(":memory:").execute("SELECT ? IS NULL", (None,)).fetchone() == (1,)
    items, _ = await store.recent(limit=1)
    assert items[0]["cost"] is None and items[0]["error"] is None
    await store.close()


async def test_database_files_are_owner_only(tmp_path) -> None:
    """usage.db and the -wal and -shm files SQLite makes beside it are 0600 like the session
    files, whatever the umask; a database an older version left 0644 is tightened on open."""
    import os
    import stat

    def modes() -> dict[str, int]:
        return {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir() if p.name.startswith("usage.db")}

    old_umask = os.umask(0o022)
    try:
        store = SQLiteUsageStore(str(tmp_path / "usage.db"))
        await store.start()
        assert store.record(rec(1))
        await store.flush()
        assert set(modes()) == {"usage.db", "usage.db-wal", "usage.db-shm"}
        assert set(modes().values()) == {0o600}, modes()
        await store.close()
        for path in tmp_path.iterdir():
            path.chmod(0o644)
        reopened = SQLiteUsageStore(str(tmp_path / "usage.db"))
        assert (await reopened.recent(limit=5))[0]
        assert set(modes().values()) == {0o600}, modes()
        await reopened.close()
    finally:
        os.umask(old_umask)


async def test_spent_sums_the_recorded_cost_of_each_budget_scope(stores: Stores) -> None:
    """What ``budget(...)`` reads: priced rows since the window's start, per caller (NULL when
    auth is off), per session of a caller, per backend, per provider key."""
    store = stores.open()
    await store.start()
    now = time.time()
    rows = [  # (caller, session, backend, key, cost, seconds ago)
        ("k1", "s1", "openai", "bk-a", 0.10, 10), ("k1", "s1", "openai", "bk-b", 0.20, 10),
        ("k1", "s2", "anthropic", "bk-c", 0.40, 10), ("k2", "s1", "openai", "bk-a", 0.80, 10),
        (None, "s1", "openai", "bk-a", 1.60, 10), ("k1", "s1", "openai", "bk-a", None, 10),  # unpriced
        ("k1", "s1", "openai", "bk-a", 3.20, 7200),  # before the window
    ]
    for i, (caller, session, backend, key, cost, ago) in enumerate(rows):
        store.record(UsageRow(ts=now - ago, request_id=f"r{i}", session_id=session, caller=caller,
                              frontend="openai", requested_model="m", backend=backend, model="m", cost=cost,
                              key_id=key))
    await store.flush()
    since = now - 3600
    assert await store.spent(since, (("caller", "k1"),)) == pytest.approx(0.70)
    assert await store.spent(since, (("caller", None),)) == pytest.approx(1.60)
    assert await store.spent(since, (("caller", "k1"), ("session", "s1"))) == pytest.approx(0.30)
    assert await store.spent(since, (("caller", "k2"), ("session", "s1"))) == pytest.approx(0.80)
    assert await store.spent(since, (("backend", "openai"),)) == pytest.approx(2.70)
    assert await store.spent(since, (("key", "bk-a"),)) == pytest.approx(2.50)
    assert await store.spent(since, (("key", "bk-none"),)) == 0.0
    assert await store.spent(now - 86400, (("key", "bk-a"),)) == pytest.approx(5.70)
    await store.close()


OLD_COLUMNS = ("ts REAL, request_id TEXT, session_id TEXT, caller TEXT, frontend TEXT, requested_model TEXT, "
               "backend TEXT, model TEXT, status INTEGER, finish_reason TEXT, prompt_tokens INTEGER, "
               "completion_tokens INTEGER, cached_tokens INTEGER, tokens_estimated INTEGER, latency_ms REAL, "
               "ttfb_ms REAL, stream INTEGER, cache_hit INTEGER, cost REAL, route_rule TEXT, rules TEXT, "
               "attempts TEXT, guard_events TEXT, error TEXT")


async def test_a_database_of_an_older_version_is_migrated_once(tmp_path: Path) -> None:
    """A usage.db written before the key_id column (user_version 0) gains it, keeps its rows,
    and is not migrated again on the next start."""
    import sqlite3

    from router.record.usage import SQLITE_MIGRATIONS, USAGE_COLUMNS

    path = tmp_path / "usage.db"
    old = sqlite3.connect(path)
    old.executescript(f"CREATE TABLE usage (id INTEGER PRIMARY KEY AUTOINCREMENT, {OLD_COLUMNS});"
                      "CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL, type TEXT, actor TEXT, "
                      "outcome TEXT, detail TEXT);")
    old.execute("INSERT INTO usage (ts, request_id, caller, cost, rules, attempts, guard_events) "
                "VALUES (?, 'old', 'k1', 0.5, '[]', '[]', '[]')", (time.time(),))
    old.commit()
    old.close()
    for start in range(2):  # the second start finds the newest version and changes nothing
        store = SQLiteUsageStore(str(path))
        await store.start()
        store.record(rec(start, caller="k1", cost=0.25, key_id="bk-new", ts=time.time()))
        await store.close()
        db = sqlite3.connect(path)
        columns = [r[1] for r in db.execute("PRAGMA table_info(usage)")]
        assert tuple(columns) == ("id", *USAGE_COLUMNS)
        assert db.execute("PRAGMA user_version").fetchone()[0] == SQLITE_MIGRATIONS[-1][0]
        db.close()
    reopened = SQLiteUsageStore(str(path))
    items, _ = await reopened.recent(limit=10)
    assert [(i["request_id"], i["key_id"]) for i in items] == [("r1", "bk-new"), ("r0", "bk-new"), ("old", None)]
    assert await reopened.spent(time.time() - 60, (("caller", "k1"),)) == pytest.approx(1.0)
    assert await reopened.spent(time.time() - 60, (("key", "bk-new"),)) == pytest.approx(0.5)
    await reopened.close()


async def test_a_new_database_starts_at_the_newest_version(tmp_path: Path) -> None:
    import sqlite3

    from router.record.usage import SQLITE_MIGRATIONS

    store = SQLiteUsageStore(str(tmp_path / "usage.db"))
    await store.close()
    db = sqlite3.connect(tmp_path / "usage.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == SQLITE_MIGRATIONS[-1][0]
    indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"usage_ts", "usage_spend_caller", "usage_spend_key"} <= indexes
    plan = " ".join(str(r) for r in db.execute(
        "EXPLAIN QUERY PLAN SELECT SUM(cost) FROM usage WHERE cost IS NOT NULL AND ts >= 0 AND key_id = 'k'"))
    assert "usage_spend_key" in plan  # the budgets' query reads its index
    db.close()


async def test_usage_queue_size_from_the_config_bounds_the_sqlite_queue(tmp_path: Path) -> None:
    """``usage.queue_size`` reaches the embedded store: records offered while its writer cannot run
    (no await in between) beyond that many are dropped, exactly those."""
    import falcon.testing

    from ops_support import build_app

    app = build_app(tmp_path, usage={"path": "usage.db", "queue_size": 5})
    store = app.state_ref.recorder.store
    assert isinstance(store, SQLiteUsageStore)
    async with falcon.testing.ASGIConductor(app):
        accepted = [store.record(rec(i)) for i in range(8)]
        assert accepted == [True] * 5 + [False] * 3 and store.dropped == 3
        await store.flush()
        assert store.written == 5
