"""Usage recording and metrics: what they cost, measured in one run.

python benchmarks/usage_bench.py [--records 50000] [--requests 5000] [--rounds 5] [--pg-url URL | --no-pg]

(a) Writer throughput: ``--records`` usage records enqueued as fast as an event loop can (yielding
    every 100 records, as request handlers would) into a SQLite file with the default store settings;
    prints records/s actually written (enqueue → flushed on disk) and how many were dropped because
    the bounded queue (20,000) was full; then records offered at a steady 10,000/s for 2 s (expect
    no drops). Target: >= 5,000 records/s. The same two for the PostgreSQL store (``--pg-url``,
    default the local test database; in a schema of its own, dropped afterwards): records/s
    written (enqueue → committed), on this machine's PostgreSQL over loopback.
(b) Request throughput in process: the ASGI app is called directly (no sockets) with an echo
    backend, ``--requests`` chat requests with usage recording + metrics on, and the same number
    with the recorder swapped for a no-op; on/off alternate in ``--rounds`` rounds so machine noise
    hits both. Prints requests/s each way and the cost of recording. Target: <= 5%.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from router.app import create_app  # noqa: E402
from router.config import load_config  # noqa: E402
from router.http import inprocess  # noqa: E402
from router.record.usage import SQLiteUsageStore, UsageRow  # noqa: E402
from router.record.usage_pg import PostgresUsageStore  # noqa: E402
from router.record.recorder import Recorder  # noqa: E402

KEY = "bench-client-key-0123456789"


ATTEMPTS = json.dumps([{"backend": "openai", "model": "gpt-4o", "status": "ok", "latency_ms": 410.1,
                        "key_id": "bk-1a2b3c4d5e", "error": None}], separators=(",", ":"))


def sample_record(i: int) -> UsageRow:
    return UsageRow(
        ts=time.time(), request_id=f"bench-{i:x}", session_id=f"sess-{i % 50}", caller="key-0123456789ab",
        frontend="openai", requested_model="gpt-4o", backend="openai", model="gpt-4o", status=200,
        finish_reason="stop", prompt_tokens=812, completion_tokens=164, latency_ms=412.5, ttfb_ms=180.2,
        stream=i % 2, route_rule="default", rules='["guards","default"]', attempts=ATTEMPTS)


StoreFactory = Callable[[str], "SQLiteUsageStore | PostgresUsageStore"]


async def writer_throughput(n: int, open_store: StoreFactory) -> dict[str, Any]:
    store = open_store("writer")
    await store.start()
    started = time.perf_counter()
    for i in range(n):
        store.record(sample_record(i))
        if i % 100 == 99:
            await asyncio.sleep(0)
    enqueued = time.perf_counter() - started
    await store.flush()  # everything queued is written
    await store.close()
    elapsed = time.perf_counter() - started
    return {"offered": n, "written": store.written, "dropped": store.dropped, "seconds": elapsed,
            "enqueue_seconds": enqueued, "rate": store.written / elapsed}


async def paced_writer(rate: int, seconds: float, open_store: StoreFactory) -> dict[str, Any]:
    """Records offered at a steady ``rate`` per second (a busy proxy, not a burst): any drops?"""
    store = open_store("paced")
    await store.start()
    n = int(rate * seconds)
    started = time.perf_counter()
    for i in range(n):
        store.record(sample_record(i))
        if i % 50 == 49:
            await asyncio.sleep(max(0.0, started + (i + 1) / rate - time.perf_counter()))
    await store.close()
    return {"offered": n, "written": store.written, "dropped": store.dropped,
            "seconds": time.perf_counter() - started}


def NoopRecorder(real: Recorder) -> Recorder:  # noqa: N802 - reads like the class it stands in for
    """The recorder with recording switched off: no usage rows, no metric updates (the access-log
    line, which is not part of usage recording, is still written)."""
    noop = Recorder(real.store, real.metrics, real.prices)
    noop.store_usage = noop.count = lambda *args: None  # type: ignore[method-assign]
    return noop


class Driver:
    """Calls the ASGI app directly with a prepared chat request."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.bodies = [json.dumps({"model": m, "stream": s, "messages": [{"role": "user", "content": "Say hello in one short sentence."}]}).encode()
                       for m, s in (("gpt-4", False), ("echo-large", False), ("gpt-4", True), ("gpt-4o", False))]
        self.scopes = [inprocess.request_scope("/v2/chat/completions", [(b"authorization", f"Bearer {KEY}".encode())], body)
                       for body in self.bodies]
        self.failures = 0

    async def request(self, i: int) -> None:
        body = self.bodies[i % len(self.bodies)]
        status, _ = await inprocess.call(self.app, self.scopes[i % len(self.scopes)], body)
        if status != 200:
            self.failures += 1

    async def run(self, count: int, offset: int) -> float:
        started = time.perf_counter()
        for i in range(count):
            await self.request(offset + i)
        return time.perf_counter() - started


async def request_cost(requests: int, rounds: int, directory: Path) -> dict[str, Any]:
    (directory / "config.yaml").write_text(yaml.safe_dump({
        "backends": {"echo": {"type": "echo", "models": ["echo", "echo-large"]}}, "default_backend": "echo",
        "auth": {"api_keys": [KEY]}, "usage": {"path": str(directory / "requests.db")}}))
    app = create_app(load_config(str(directory / "config.yaml"), env={}))
    app.reloader.watch = False
    ref = app.state_ref
    real, noop = ref.recorder, NoopRecorder(ref.recorder)
    await inprocess.lifespan(app, "startup")
    driver = Driver(app)
    per_round = max(1, requests // rounds)
    await driver.run(500, 0)  # warm up both paths
    ref.recorder = noop
    await driver.run(500, 0)
    times = {"on": 0.0, "off": 0.0}
    offset = 0
    for r in range(rounds):
        for mode in (("on", "off") if r % 2 == 0 else ("off", "on")):
            ref.recorder = real if mode == "on" else noop
            times[mode] += await driver.run(per_round, offset)
            offset += per_round
    ref.recorder = real
    await real.store.flush()
    written = real.store.written
    await inprocess.lifespan(app, "shutdown")
    total = per_round * rounds
    return {"requests": total, "on_rps": total / times["on"], "off_rps": total / times["off"],
            "cost": times["on"] / times["off"] - 1, "failures": driver.failures, "written": written,
            "dropped": real.store.dropped}


async def writers(label: str, open_store: StoreFactory, records: int) -> None:
    w = await writer_throughput(records, open_store)
    print(f"usage writer ({label}): {w['written']:,} of {w['offered']:,} records written in {w['seconds']:.2f}s "
          f"(enqueued in {w['enqueue_seconds']:.2f}s) = {w['rate']:,.0f} records/s; dropped {w['dropped']:,} "
          f"[target >= 5,000/s: {'ok' if w['rate'] >= 5000 else 'MISSED'}]")
    p = await paced_writer(10_000, 2.0, open_store)
    print(f"usage writer ({label}) at a steady 10,000 records/s: {p['written']:,} of {p['offered']:,} written in "
          f"{p['seconds']:.2f}s; dropped {p['dropped']:,}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--requests", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test",
                        help="PostgreSQL for the PostgreSQL writer's numbers (a schema of its own, dropped after)")
    parser.add_argument("--no-pg", action="store_true", help="skip the PostgreSQL writer")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        await writers("SQLite", lambda name: SQLiteUsageStore(str(directory / f"{name}.db")), args.records)
        if not args.no_pg:
            import uuid

            import psycopg

            schema = f"lip_bench_{uuid.uuid4().hex[:10]}"
            try:
                await writers("PostgreSQL", lambda name: PostgresUsageStore(args.pg_url, schema), args.records)
            finally:
                with psycopg.connect(args.pg_url, autocommit=True) as conn:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        c = await request_cost(args.requests, args.rounds, directory)
        print(f"requests in process ({c['requests']:,} each way, {args.rounds} alternating rounds): "
              f"recording on {c['on_rps']:,.0f} req/s, off {c['off_rps']:,.0f} req/s; "
              f"cost {c['cost'] * 100:+.1f}% [target <= 5%: {'ok' if c['cost'] <= 0.05 else 'MISSED'}]; "
              f"failures {c['failures']}, usage rows written {c['written']:,}, dropped {c['dropped']}")


if __name__ == "__main__":
    asyncio.run(main())
