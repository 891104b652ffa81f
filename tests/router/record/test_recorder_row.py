"""The recorder writes usage rows without building a UsageRecord: its row must be exactly the row
the store makes of the equivalent UsageRecord (column order, JSON and boolean columns)."""

from __future__ import annotations

from router.wire.canonical import Usage
from router.record.metrics import Metrics
from router.record.recorder import Recorder, RequestRecord
from router.record.usage import USAGE_COLUMNS, UsageRecord, _usage_row


class CapturingStore:
    dropped = 0

    def __init__(self) -> None:
        self.rows: list[tuple] = []

    def record_row(self, row: tuple) -> bool:
        self.rows.append(row)
        return True


def test_recorder_row_matches_the_usage_record_row() -> None:
    store = CapturingStore()
    recorder = Recorder(store, Metrics(), {"m-1": {"input": 2.0, "output": 4.0}})  # type: ignore[arg-type]
    rec = RequestRecord("req-1", "anthropic", "client-model", session_id="s-1", caller="k-1", stream=True,
                        started=0.0, ts=1_700_000_000.5, rules=("r1", "r2"), route_rule="r2", backend="b-1",
                        model="m-1", status=200, finish_reason="tool_calls",
                        usage=Usage(100, 50, cached_tokens=7), ttfb=0.0123,
                        guard_events=[{"kind": "repair", "detail": "x"}], cache_hit=True, error=None)
    rec.attempts = [{"backend": "b-0", "model": "m-0", "status": "timeout", "latency_ms": 3.0, "key_id": "kid"},
                    {"backend": "b-1", "model": "m-1", "status": "ok", "latency_ms": 9.5, "key_id": None}]
    recorder.finish(rec)
    [row] = store.rows
    latency = row[USAGE_COLUMNS.index("latency_ms")]
    expected = _usage_row(UsageRecord(
        ts=rec.ts, request_id="req-1", session_id="s-1", caller="k-1", frontend="anthropic",
        requested_model="client-model", backend="b-1", model="m-1", status=200, finish_reason="tool_calls",
        prompt_tokens=100, completion_tokens=50, cached_tokens=7, tokens_estimated=False, latency_ms=latency,
        ttfb_ms=12.3, stream=True, cache_hit=True, cost=round(100 * 2.0 / 1e6 + 50 * 4.0 / 1e6, 8),
        route_rule="r2", rules=["r1", "r2"], attempts=rec.attempts, guard_events=rec.guard_events, error=None))
    assert row == expected
    assert len(row) == len(USAGE_COLUMNS)


def test_attempt_objects_are_stored_like_their_dicts() -> None:
    from dataclasses import asdict

    from router.pipeline.dispatch import Attempt

    rows = []
    for as_dict in (False, True):
        store = CapturingStore()
        rec = RequestRecord("req-2", "openai", "m", started=0.0, ts=1.0, backend="b", model="m")
        attempts = [Attempt("a", "m", "timeout", 5.0, "kid", "slow"), Attempt("b", "m", "ok", 1.0)]
        rec.attempts = [asdict(a) for a in attempts] if as_dict else attempts
        Recorder(store, Metrics()).finish(rec)  # type: ignore[arg-type]
        rows.append(store.rows[0][USAGE_COLUMNS.index("attempts")])
    assert rows[0] == rows[1] and '"status":"timeout"' in rows[0]


async def test_finished_requests_are_accounted_in_batches_and_before_any_read() -> None:
    import asyncio
    import time

    from router.record.recorder import ACCOUNT_DELAY
    from router.record.usage import SQLiteUsageStore

    store, metrics = SQLiteUsageStore(), Metrics()
    recorder = Recorder(store, metrics)
    await store.start()
    try:
        for i in range(3):
            recorder.finish(RequestRecord(f"req-{i}", "openai", "m", started=0.0, ts=time.time(), backend="b", model="m"))
        assert len(recorder._pending) == 3  # accounted later, together
        assert 'llm_proxy_requests_total{backend="b",frontend="openai",model="m",status="200"} 3.0' \
            in metrics.render().decode()  # a scrape drains first
        assert recorder._pending == []
        recorder.finish(RequestRecord("req-3", "openai", "m", started=0.0, ts=time.time(), backend="b", model="m"))
        await asyncio.sleep(ACCOUNT_DELAY * 3)  # ... or the timer does
        assert recorder._pending == []
        await store.flush()
        items, _ = await store.recent(limit=10)
        assert [i["request_id"] for i in items] == ["req-3", "req-2", "req-1", "req-0"]
    finally:
        recorder.finish(RequestRecord("req-4", "openai", "m", started=0.0, ts=time.time()))
        await store.close()  # close drains too: nothing is lost
    assert (await store.stats())["totals"]["requests"] == 5


def test_rules_column_follows_each_records_rules() -> None:
    """The rules JSON is kept per rules tuple (plans are shared): it must never be another's."""
    import json

    store = CapturingStore()
    recorder = Recorder(store, Metrics())  # type: ignore[arg-type]
    shared = ("guards", "route-a")
    sequence = [shared, ("other",), shared, (), tuple(["guards", "route-a"]), ("x", "y", "z"), shared]
    for i, rules in enumerate(sequence):
        recorder.finish(RequestRecord(f"req-{i}", "openai", "m", started=0.0, ts=1.0, rules=rules))
    column = USAGE_COLUMNS.index("rules")
    assert [json.loads(row[column]) for row in store.rows] == [list(r) for r in sequence]


def test_one_attempt_is_written_as_orjson_writes_the_dataclass() -> None:
    from router.pipeline.dispatch import Attempt
    from router.record.recorder import _attempts_json
    from router.record.usage import json_column

    for attempt in (Attempt("up", "m", "ok", 0.312, "key-1"), Attempt("up", "m", "timeout", 12.0, None, "slow"),
                    Attempt("b", "m\u00e9", "ok", 1e-7)):
        assert _attempts_json([attempt]) == json_column([attempt])
