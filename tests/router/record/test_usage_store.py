"""Usage/audit store: round trip, batching queue, drops when full, filters, paging, retention."""

from __future__ import annotations

import asyncio
import time

import pytest

from router.record.usage import AuditRecord, SQLiteUsageStore, UsageRecord


BASE = time.time() - 86400  # recent: the default 30-day retention keeps these rows


def rec(i: int, **kw) -> UsageRecord:
    base = dict(ts=BASE + i * 60, request_id=f"r{i}", session_id=f"s{i % 2}", caller=f"key-{i % 3}",
                frontend="openai", requested_model="gpt-4", backend="openai" if i % 2 else "anthropic",
                model="gpt-4o", prompt_tokens=10, completion_tokens=5, latency_ms=2.0, route_rule="r1",
                rules=["r1"], attempts=[{"backend": "openai", "status": "ok", "key_id": "bk-1"}])
    base.update(kw)
    return UsageRecord(**base)


async def test_round_trip_through_the_queue(tmp_path) -> None:
    store = SQLiteUsageStore(str(tmp_path / "usage.db"))
    await store.start()
    for i in range(10):
        assert store.record(rec(i, cost=0.01 if i < 4 else None))
    store.audit(AuditRecord(ts=BASE, type="auth_failure", actor="127.0.0.1", outcome="rejected",
                            detail={"path": "/v2/chat/completions"}))
    await store.close()
    reopened = SQLiteUsageStore(str(tmp_path / "usage.db"))
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


async def test_unknown_prices_stay_null_and_time_filters_apply() -> None:
    store = SQLiteUsageStore(retention_days=0)  # 0 = keep everything (these rows are from 2023)
    for i in range(6):
        store.record(rec(i, ts=1_700_000_000 + i * 3600))  # 2023-11-14 22:13 UTC, then hourly
    stats = await store.stats(since=1_700_000_000 + 2 * 3600, until=1_700_000_000 + 4 * 3600, group_by="day")
    assert stats["totals"]["requests"] == 2 and stats["totals"]["cost"] is None
    assert [(g["key"], g["requests"]) for g in stats["groups"]] == [("2023-11-15", 2)]
    await store.close()


async def test_full_queue_drops_and_counts_never_blocks() -> None:
    store = SQLiteUsageStore(queue_size=5)
    await store.start()
    results = [store.record(rec(i)) for i in range(50)]  # no await: the writer cannot drain meanwhile
    assert results.count(True) == 5 and store.dropped == 45
    await store.close()


async def test_retention_prunes_old_rows() -> None:
    store = SQLiteUsageStore(retention_days=1)
    now = time.time()
    store.record(rec(1, ts=now - 3 * 86400))
    store._last_prune = 0  # the next batch prunes
    store.record(rec(2, ts=now))
    items, _ = await store.recent(limit=10)
    assert [i["request_id"] for i in items] == ["r2"]
    await store.close()


async def test_writer_sustains_thousands_of_records_per_second(tmp_path) -> None:
    """Correctness of bulk writes (the rate itself is measured in benchmarks/usage_bench.py)."""
    store = SQLiteUsageStore(str(tmp_path / "u.db"), queue_size=50_000)
    await store.start()
    for i in range(5000):
        store.record(rec(i))
        if i % 1000 == 0:
            await asyncio.sleep(0)
    await store.close()
    reopened = SQLiteUsageStore(str(tmp_path / "u.db"))
    assert (await reopened.stats())["totals"]["requests"] == 5000
    await reopened.close()


async def test_close_flushes_at_once_and_a_broken_store_never_raises(tmp_path) -> None:
    store = SQLiteUsageStore(str(tmp_path / "u.db"), flush_interval=30.0)
    await store.start()
    store.record(rec(1))
    started = time.monotonic()
    await store.close()  # does not wait out the 30 s batching window
    assert time.monotonic() - started < 2 and store.written == 1
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


async def test_batches_of_many_rows_keep_order_and_every_column(tmp_path) -> None:
    """Rows are inserted many per statement plus the remainder: none lost, none reordered."""
    from router.record.usage import _ROWS_PER_INSERT

    store = SQLiteUsageStore(str(tmp_path / "u.db"), queue_size=1000)
    await store.start()
    n = _ROWS_PER_INSERT + _ROWS_PER_INSERT // 2 + 3  # one batch: full statements and single rows
    for i in range(n):
        store.record(rec(i, cost=i / 1000))
    await store.close()
    reopened = SQLiteUsageStore(str(tmp_path / "u.db"))
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
