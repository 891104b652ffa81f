"""The recorder's usage row (the one row builder, by field name): every column from the right
field of the request, JSON and 0/1 columns as the store keeps them; batches, drained by readers."""

from __future__ import annotations

import json

import router.app  # noqa: F401  (first: importing the recorder alone meets the record <-> pipeline import cycle on main)
from router.wire.canonical import Usage
from router.record.metrics import Metrics
from router.record.recorder import Recorder, RequestRecord
from router.record.usage import USAGE_COLUMNS, UsageRow


class CapturingStore:
    dropped = 0

    def __init__(self) -> None:
        self.rows: list[UsageRow] = []

    def record(self, row: UsageRow) -> bool:
        self.rows.append(row)
        return True


def test_recorder_row_names_every_column() -> None:
    store = CapturingStore()
    recorder = Recorder(store, Metrics(), {"m-1": {"input": 2.0, "output": 4.0}})  # type: ignore[arg-type]
    rec = RequestRecord("req-1", "anthropic", "client-model", session_id="s-1", caller="k-1", stream=True,
                        started=0.0, ts=1_700_000_000.5, rules=("r1", "r2"), route_rule="r2", backend="b-1",
                        model="m-1", status=200, finish_reason="tool_calls",
                        usage=Usage(100, 50, cached_tokens=7), ttfb=0.0123,
                        guard_events=[{"kind": "repair", "detail": "x"}], cache_hit=True, error=None,
                        key_id="bk-0123456789")
    rec.attempts = [{"backend": "b-0", "model": "m-0", "status": "timeout", "latency_ms": 3.0, "key_id": "kid"},
                    {"backend": "b-1", "model": "m-1", "status": "ok", "latency_ms": 9.5, "key_id": None}]
    recorder.finish(rec)  # no event loop: accounted at once
    [row] = store.rows
    assert type(row) is UsageRow and tuple(UsageRow.__dataclass_fields__) == USAGE_COLUMNS
    as_stored = {name: getattr(row, name) for name in USAGE_COLUMNS}  # every field set (no AttributeError)
    assert row == UsageRow(**as_stored)  # the fast build holds what the constructor would
    for column in ("rules", "attempts", "guard_events"):
        as_stored[column] = json.loads(as_stored[column])
    assert as_stored == dict(
        ts=rec.ts, request_id="req-1", session_id="s-1", caller="k-1", frontend="anthropic",
        requested_model="client-model", backend="b-1", model="m-1", status=200, finish_reason="tool_calls",
        prompt_tokens=100, completion_tokens=50, cached_tokens=7, tokens_estimated=0, latency_ms=row.latency_ms,
        ttfb_ms=12.3, stream=1, cache_hit=1, cost=round(100 * 2.0 / 1e6 + 50 * 4.0 / 1e6, 8),
        route_rule="r2", rules=["r1", "r2"], attempts=rec.attempts, guard_events=rec.guard_events, error=None,
        key_id="bk-0123456789")
    assert row.latency_ms > 0


def test_the_row_builder_sets_every_field_whatever_the_request() -> None:
    """usage_row assigns the fields one by one (its speed trick): a field added to UsageRow and
    not to the builder is caught here, for requests with and without their optional parts."""
    from router.record.usage import row_values

    store = CapturingStore()
    recorder = Recorder(store, Metrics())  # type: ignore[arg-type]
    recorder.finish(RequestRecord("bare", "openai", "m", started=0.0, ts=1.0))
    recorder.finish(RequestRecord("full", "gemini", "m", session_id="s", caller="k", stream=True, started=0.0,
                                  ts=2.0, rules=("r",), route_rule="r", backend="b", model="m", status=429,
                                  finish_reason="length", usage=Usage(1, 2, 3, True), ttfb=0.5,
                                  guard_events=[{"kind": "loop"}], cache_hit=True, error="x", key_id="bk-x"))
    for row in store.rows:
        values = row_values(row)  # raises AttributeError for a field the builder left unset
        assert len(values) == len(USAGE_COLUMNS) and row == UsageRow(*values)


def test_a_failed_request_is_not_priced_and_flags_are_0_or_1() -> None:
    store = CapturingStore()
    recorder = Recorder(store, Metrics(), {"m": {"input": 1.0, "output": 1.0}})  # type: ignore[arg-type]
    recorder.finish(RequestRecord("req-e", "openai", "m", started=0.0, ts=1.0, model="m", status=502,
                                  usage=Usage(10, 0, estimated=True), error="upstream down"))
    [row] = store.rows
    assert row.cost is None and row.status == 502 and row.error == "upstream down"
    assert (row.tokens_estimated, row.stream, row.cache_hit) == (1, 0, 0)
    assert (row.rules, row.attempts, row.guard_events) == ("[]", "[]", "[]")


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
        rows.append(store.rows[0].attempts)
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
        assert recorder.store is store and not hasattr(store, "before_read")  # nothing calls back up
        recorder.drain()  # what a reader (the usage and metrics endpoints) does first
        assert 'llm_proxy_requests_total{backend="b",frontend="openai",model="m",status="200"} 3.0' \
            in metrics.render().decode()
        assert recorder._pending == []
        recorder.finish(RequestRecord("req-3", "openai", "m", started=0.0, ts=time.time(), backend="b", model="m"))
        await asyncio.sleep(ACCOUNT_DELAY * 3)  # ... or the timer does
        assert recorder._pending == []
        await store.flush()
        items, _ = await store.recent(limit=10)
        assert [i["request_id"] for i in items] == ["req-3", "req-2", "req-1", "req-0"]
    finally:
        recorder.finish(RequestRecord("req-4", "openai", "m", started=0.0, ts=time.time()))
        recorder.drain()  # as the app's shutdown does before it closes the store: nothing is lost
        await store.close()
    assert (await store.stats())["totals"]["requests"] == 5


def test_rules_column_follows_each_records_rules() -> None:
    """The rules JSON is kept per rules tuple (plans are shared): it must never be another's."""
    store = CapturingStore()
    recorder = Recorder(store, Metrics())  # type: ignore[arg-type]
    shared = ("guards", "route-a")
    sequence = [shared, ("other",), shared, (), tuple(["guards", "route-a"]), ("x", "y", "z"), shared]
    for i, rules in enumerate(sequence):
        recorder.finish(RequestRecord(f"req-{i}", "openai", "m", started=0.0, ts=1.0, rules=rules))
    assert [json.loads(row.rules) for row in store.rows] == [list(r) for r in sequence]


def test_one_attempt_is_written_as_orjson_writes_the_dataclass() -> None:
    from router.pipeline.dispatch import Attempt
    from router.record.recorder import _attempts_json
    from router.record.usage import json_column

    for attempt in (Attempt("up", "m", "ok", 0.312, "key-1"), Attempt("up", "m", "timeout", 12.0, None, "slow"),
                    Attempt("b", "m\u00e9", "ok", 1e-7)):
        assert _attempts_json([attempt]) == json_column([attempt])
