"""The recorder builds each usage row in one place (``usage_row``, by field name) and hands the
store finished rows; the store and the metrics never call back into it."""

from __future__ import annotations

import json

from router.wire.canonical import Usage
from router.record.metrics import Metrics
from router.record.recorder import Recorder, RequestRecord, usage_row
from router.record.usage import USAGE_COLUMNS, UsageRow


class CapturingStore:
    dropped = 0

    def __init__(self) -> None:
        self.rows: list[UsageRow] = []

    def record(self, row: UsageRow) -> bool:
        self.rows.append(row)
        return True


def test_recorder_row_carries_each_value_in_its_named_column() -> None:
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
    assert type(row) is UsageRow and len(row) == len(USAGE_COLUMNS)
    assert row._asdict() == {
        "ts": rec.ts, "request_id": "req-1", "session_id": "s-1", "caller": "k-1", "frontend": "anthropic",
        "requested_model": "client-model", "backend": "b-1", "model": "m-1", "status": 200,
        "finish_reason": "tool_calls", "prompt_tokens": 100, "completion_tokens": 50, "cached_tokens": 7,
        "tokens_estimated": 0, "latency_ms": row.latency_ms, "ttfb_ms": 12.3, "stream": 1, "cache_hit": 1,
        "cost": round(100 * 2.0 / 1e6 + 50 * 4.0 / 1e6, 8), "route_rule": "r2", "rules": '["r1","r2"]',
        "attempts": json.dumps(rec.attempts, separators=(",", ":")), "guard_events": '[{"kind":"repair","detail":"x"}]',
        "error": None}
    assert row.latency_ms > 0
    failed = RequestRecord("req-2", "openai", "m", started=0.0, ts=1.0, model="m-1", status=502,
                           usage=Usage(10, 0, estimated=True))
    assert usage_row(failed, Usage(10, 0, estimated=True), 0.5, None) == UsageRow(
        ts=1.0, request_id="req-2", session_id=None, caller=None, frontend="openai", requested_model="m",
        model="m-1", status=502, prompt_tokens=10, tokens_estimated=1, latency_ms=500.0)
    recorder.finish(failed)
    assert store.rows[1].cost is None  # a failed request is never priced


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


async def test_finished_requests_are_accounted_at_once_and_nothing_is_lost_at_close() -> None:
    import time

    from router.record.usage import SQLiteUsageStore

    store, metrics = SQLiteUsageStore(), Metrics()
    recorder = Recorder(store, metrics)
    await store.start()
    try:
        for i in range(3):
            recorder.finish(RequestRecord(f"req-{i}", "openai", "m", started=0.0, ts=time.time(), backend="b", model="m"))
        assert 'llm_proxy_requests_total{backend="b",frontend="openai",model="m",status="200"} 3.0' \
            in metrics.render().decode()
        await store.flush()
        items, _ = await store.recent(limit=10)
        assert [i["request_id"] for i in items] == ["req-2", "req-1", "req-0"]
    finally:
        recorder.finish(RequestRecord("req-3", "openai", "m", started=0.0, ts=time.time()))
        await store.close()
    assert (await store.stats())["totals"]["requests"] == 4


def test_the_store_and_the_metrics_get_no_hooks_into_the_recorder() -> None:
    """Records flow one way: building a Recorder leaves the store and the metrics as they were
    (no ``before_read``-style callback for them to call back up)."""
    from router.record.usage import SQLiteUsageStore

    store, metrics = SQLiteUsageStore(), Metrics()
    before = (dict(vars(store)), dict(vars(metrics)))
    recorder = Recorder(store, metrics)
    assert (dict(vars(store)), dict(vars(metrics))) == before
    seen = [value for value in (*vars(store).values(), *vars(metrics).values())
            if getattr(value, "__self__", None) is recorder]
    assert seen == []


def test_rules_column_follows_each_records_rules() -> None:
    store = CapturingStore()
    recorder = Recorder(store, Metrics())  # type: ignore[arg-type]
    shared = ("guards", "route-a")
    sequence = [shared, ("other",), shared, (), tuple(["guards", "route-a"]), ("x", "y", "z"), shared]
    for i, rules in enumerate(sequence):
        recorder.finish(RequestRecord(f"req-{i}", "openai", "m", started=0.0, ts=1.0, rules=rules))
    assert [json.loads(row.rules) for row in store.rows] == [list(r) for r in sequence]


def test_one_attempt_is_written_as_its_fields() -> None:
    from dataclasses import asdict

    from router.pipeline.dispatch import Attempt
    from router.record.usage import json_column

    for attempt in (Attempt("up", "m", "ok", 0.312, "key-1"), Attempt("up", "m", "timeout", 12.0, None, "slow"),
                    Attempt("b", "m\u00e9", "ok", 1e-7)):
        assert json.loads(json_column([attempt])) == [asdict(attempt)]


def test_usage_row_is_the_row_named_field_by_field() -> None:
    """``usage_row`` builds exactly the row that naming every field by hand builds, for records
    in which every field differs (flags included, so no two columns can be swapped unseen)."""
    from router.pipeline.dispatch import Attempt

    for flags in ((True, False, False), (False, True, False), (False, False, True)):
        estimated, stream, cache_hit = flags
        rec = RequestRecord("req-9", "anthropic", "asked", session_id="s-9", caller="k-9", stream=stream,
                            started=0.0, ts=1_700_000_123.25, rules=("a", "b"), route_rule="b", backend="be",
                            model="mo", status=201, finish_reason="length", ttfb=0.25 if stream else None,
                            guard_events=[{"kind": "loop_cut"}], cache_hit=cache_hit, error="err",
                            usage=Usage(11, 22, cached_tokens=33, estimated=estimated))
        rec.attempts = [Attempt("be", "mo", "ok", 4.5, "kid")]
        named = UsageRow(
            ts=rec.ts, request_id=rec.request_id, session_id=rec.session_id, caller=rec.caller,
            frontend=rec.frontend, requested_model=rec.requested_model, backend=rec.backend, model=rec.model,
            status=rec.status, finish_reason=rec.finish_reason, prompt_tokens=11, completion_tokens=22,
            cached_tokens=33, tokens_estimated=int(estimated), latency_ms=1500.0,
            ttfb_ms=250.0 if stream else None, stream=int(stream), cache_hit=int(cache_hit), cost=0.75,
            route_rule="b", rules='["a","b"]', attempts=json.dumps([{"backend": "be", "model": "mo", "status": "ok",
            "latency_ms": 4.5, "key_id": "kid", "error": None}], separators=(",", ":")),
            guard_events='[{"kind":"loop_cut"}]', error="err")
        assert usage_row(rec, rec.usage, 1.5, 0.75) == named  # type: ignore[arg-type]
