"""The usage and audit store in PostgreSQL (``usage.url``), so several proxies share one account.

Same rows, same queries and answers as the SQLite store (:mod:`.usage`), with the statistics
computed in SQL. What differs is what a server database needs:

- Schema created and migrated at start, versioned in a ``usage_schema_version`` table of the
  configured schema (``usage.schema``, default ``public``); each migration runs once, under an
  advisory lock, so instances starting together do not race. No external migration tool.
  Version 2 turned the JSON columns (``rules``, ``attempts``, ``guard_events``, audit ``detail``)
  from TEXT into JSONB in place.
- Writing is off the request path: ``record``/``audit`` append to a bounded queue; a writer task
  sends batches with binary ``COPY`` (one statement per batch, ~2 us of loop time per row),
  committed without waiting for the WAL flush, as the SQLite store commits without fsync. A batch
  the database refuses (not one it cannot be reached for) is dropped and counted, so one bad row
  never blocks the queue.
- PostgreSQL down or unreachable: the writer keeps the batch it could not write at the head of
  the queue and retries with backoff (a warning once per outage); the queue stays bounded
  (``queue_size``), so records that arrive when it is full are dropped and counted in ``dropped``
  (the ``llm_proxy_usage_records_dropped`` metric). Requests never wait for the database.
  The pool reconnects by itself when the server is back, and the queue is written then.
- Reads while the database is down raise :class:`UsageStoreUnavailable` (the endpoints answer 503).

Driver: psycopg 3 with psycopg_pool (see the commit that added it for the measurement).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any

import psycopg
from psycopg import postgres, pq
from psycopg.adapt import Dumper
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ..config import safe_url
from ..tasks import cancel_and_wait
from .usage import (
    GROUPS, QUEUE_SIZE, SPEND_INDEXES, USAGE_COLUMNS, QueuedWrites, SpendScope, UsageRow, UsageStoreUnavailable,
    clean_totals, spend_query, usage_dict,
)

log = logging.getLogger("llm_proxy.usage")

SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")  # also in schemas/config.schema.json
CONNECT_TIMEOUT = 5  # seconds to open a connection (a dead host must not stall the writer long)
READ_TIMEOUT = 5.0  # seconds a usage endpoint waits for a connection before answering 503
DOWN_READ_TIMEOUT = 1.0  # ... when the writer already found the database away
RETRY_MIN, RETRY_MAX = 0.5, 5.0  # seconds between the writer's attempts while the database is down
# Seconds without a record after which the writer checks the database anyway (``SELECT 1``), so
# ``/health`` and ``llm_proxy_usage_store_up`` follow an outage (and the recovery) when no request comes.
PROBE_SECONDS = 2.0
CLOSE_TIMEOUT = 5.0  # seconds shutdown waits for the last rows when the database is down

# The columns of UsageRow, in order, written out so that a field added to UsageRow without a
# migration here fails a test (tests/router/record/test_usage_pg.py) instead of writing the wrong columns.
# Version 1's table, as it was created (migrations below change it and add columns; never edit this).
_USAGE_TABLE = """
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ts DOUBLE PRECISION NOT NULL, request_id TEXT, session_id TEXT, caller TEXT, frontend TEXT,
    requested_model TEXT, backend TEXT, model TEXT, status INTEGER, finish_reason TEXT,
    prompt_tokens BIGINT, completion_tokens BIGINT, cached_tokens BIGINT, tokens_estimated SMALLINT,
    latency_ms DOUBLE PRECISION, ttfb_ms DOUBLE PRECISION, stream SMALLINT, cache_hit SMALLINT,
    cost DOUBLE PRECISION, route_rule TEXT, rules TEXT, attempts TEXT, guard_events TEXT, error TEXT
"""
# The same columns' types for binary COPY (psycopg then sends each value as that type). The JSON
# lists (and the audit detail) are JSONB since schema version 2: the rows hold them as JSON text
# already, which ``_JsonbText`` sends as binary JSONB (a version byte before the text), so the
# database parses it once and nothing is decoded and re-encoded on the event loop.
_USAGE_TYPES = ("float8", "text", "text", "text", "text", "text", "text", "text", "int4", "text", "int8", "int8",
                "int8", "int2", "float8", "float8", "int2", "int2", "float8", "text", "jsonb", "jsonb", "jsonb",
                "text", "text")
_AUDIT_TYPES = ("float8", "text", "text", "text", "jsonb")
_JSON_COLUMNS = ("rules", "attempts", "guard_events")


class _JsonbText(Dumper):
    """JSON text as binary JSONB for ``COPY ... (FORMAT BINARY)``: JSONB's binary form is the
    version byte 1 followed by the JSON text, so a str the recorder already serialized goes out as
    it is (psycopg's own JSONB dumper would serialize the str again, as a JSON string)."""

    format = pq.Format.BINARY
    oid = postgres.types["jsonb"].oid

    def dump(self, obj: str) -> bytes:
        return b"\x01" + obj.encode()


# (version, statements): append new versions, never edit an applied one. ``{s}`` is the schema.
MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (1, (
        f"CREATE TABLE {{s}}.usage ({_USAGE_TABLE})",
        "CREATE INDEX usage_ts ON {s}.usage (ts)",
        "CREATE TABLE {s}.audit (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
        "ts DOUBLE PRECISION NOT NULL, type TEXT, actor TEXT, outcome TEXT, detail TEXT)",
        "CREATE INDEX audit_ts ON {s}.audit (ts)",
    )),
    # The JSON columns as JSONB (queryable with PostgreSQL's JSON operators, validated on insert);
    # rewritten in place, in the migration's transaction: every row is kept, or none is changed.
    (2, (
        *(f"ALTER TABLE {{s}}.usage ALTER COLUMN {c} TYPE JSONB USING NULLIF({c}, '')::jsonb" for c in _JSON_COLUMNS),
        "ALTER TABLE {s}.audit ALTER COLUMN detail TYPE JSONB USING NULLIF(detail, '')::jsonb",
    )),
    # budget(..., per=key): the provider key an answer came with, and the budgets' spend indexes.
    (3, (
        "ALTER TABLE {s}.usage ADD COLUMN key_id TEXT",
        *(statement.format(t="{s}.usage") for statement in SPEND_INDEXES),
    )),
)
_MIGRATION_LOCK = 0x6C69_7075_7361_6765 & 0x7FFF_FFFF_FFFF_FFFF  # "lipusage": one advisory lock id

# What says "the database cannot be reached now" (retry later), as opposed to a refused batch.
_UNREACHABLE = (psycopg.OperationalError, PoolTimeout, OSError)

_GROUPS_PG = {**GROUPS, "day": "to_char(to_timestamp(ts) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"}


def quote_ident(name: str) -> str:
    """A schema name as an SQL identifier (config allows only ``SCHEMA_NAME``; quoted anyway)."""
    return '"' + name.replace('"', '""') + '"'


class PostgresUsageStore(QueuedWrites):
    """The :class:`~.usage.UsageStore` on PostgreSQL: one pool for the writer and the readers;
    the queue and ``dropped``/``written`` counters as the SQLite store's, plus ``up``."""

    def __init__(self, url: str, schema: str | None = None, *, retention_days: int = 30, queue_size: int = QUEUE_SIZE,
                 batch_size: int = 2000, flush_interval: float = 0.2, pool_size: int = 4,
                 read_timeout: float = READ_TIMEOUT) -> None:
        self.url = url
        self.schema = schema or "public"
        if not SCHEMA_NAME.match(self.schema):
            raise ValueError(f"usage.schema {self.schema!r}: letters, digits and _ only, not starting with a digit")
        self._s = quote_ident(self.schema)
        self.retention_days = retention_days
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.dropped = 0
        self.written = 0
        self.up = True  # False while the writer cannot reach the database
        self.last_error: str | None = None  # why it could not, while it cannot (for /health)
        self._queue_size = queue_size
        self._pending: list[tuple[str, tuple[Any, ...]]] = []
        self._pool_size = pool_size
        self._read_timeout = read_timeout
        self._pool: AsyncConnectionPool | None = None
        self._migrated = False
        self._writer: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._closing = False
        self._warned_drop = False
        self._last_prune = 0.0
        cols = ", ".join(USAGE_COLUMNS)
        self._copy_usage = f"COPY {self._s}.usage ({cols}) FROM STDIN (FORMAT BINARY)"
        self._copy_audit = f"COPY {self._s}.audit (ts, type, actor, outcome, detail) FROM STDIN (FORMAT BINARY)"

    # ---- connections and schema -----------------------------------------------------------------

    def _new_pool(self) -> AsyncConnectionPool:
        return AsyncConnectionPool(
            self.url, min_size=1, max_size=self._pool_size, open=False, timeout=self._read_timeout,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT,
                    "application_name": "llm-interactive-proxy"},
            check=AsyncConnectionPool.check_connection, reconnect_timeout=3600.0, name="usage")

    async def _connection_pool(self) -> AsyncConnectionPool:
        if self._pool is None:
            self._pool = self._new_pool()
            await self._pool.open(wait=False)
        if not self._migrated:
            await self._migrate(self._pool)
        return self._pool

    async def _migrate(self, pool: AsyncConnectionPool) -> None:
        """Create the schema and apply the migrations not applied yet (each in its transaction)."""
        async with pool.connection() as conn:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self._s}")
                await conn.execute(f"CREATE TABLE IF NOT EXISTS {self._s}.usage_schema_version "
                                   "(version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
                cur = await conn.execute(f"SELECT COALESCE(MAX(version), 0) FROM {self._s}.usage_schema_version")
                current = (await cur.fetchone())[0]  # type: ignore[index]
                for version, statements in MIGRATIONS:
                    if version <= current:
                        continue
                    for statement in statements:
                        await conn.execute(statement.format(s=self._s))
                    await conn.execute(f"INSERT INTO {self._s}.usage_schema_version (version) VALUES (%s)", (version,))
                    log.info("usage store: PostgreSQL schema %s migrated to version %d", self.schema, version)
        self._migrated = True

    async def start(self) -> None:
        """Start the writer. The database may be down: the writer connects (and migrates) when it can."""
        if self._writer is None:
            self._closing = False
            self._wake, self._idle = asyncio.Event(), asyncio.Event()
            if self._pending:
                self._wake.set()
            else:
                self._idle.set()
            self._writer = asyncio.get_running_loop().create_task(self._run())

    # ---- writing --------------------------------------------------------------------------------

    def _put(self, item: tuple[str, tuple[Any, ...]]) -> bool:
        pending = self._pending
        if len(pending) >= self._queue_size:
            self.dropped += 1
            if not self._warned_drop:
                self._warned_drop = True
                log.warning("usage queue full (PostgreSQL %s): dropping records (dropped so far: %d)",
                            "unreachable" if not self.up else "behind", self.dropped)
            return False
        if not pending and self._wake is not None:
            self._wake.set()
            self._idle.clear()  # type: ignore[union-attr]
        pending.append(item)
        return True

    async def _run(self) -> None:
        assert self._wake is not None and self._idle is not None
        try:  # connect and migrate at start; a database that is down is retried with the first rows
            await self._connection_pool()
        except _UNREACHABLE as exc:
            self._went_down(exc)
        delay = RETRY_MIN
        while True:
            if not self._wake.is_set():
                try:
                    await asyncio.wait_for(self._wake.wait(), PROBE_SECONDS)
                except TimeoutError:  # nothing to write for a while: is the database there?
                    await self._probe()
                    continue
            deadline = time.monotonic() + self.flush_interval
            while not self._closing and len(self._pending) < self.batch_size and time.monotonic() < deadline:
                await asyncio.sleep(min(0.02, self.flush_interval))
            batch = self._pending[:self.batch_size]
            try:
                await self._write_batch(batch)
            except asyncio.CancelledError:
                raise
            except _UNREACHABLE as exc:  # the database is down or away: keep the rows, retry
                self._went_down(exc)
                self._idle.set()  # nothing more can be done now: flush() returns
                await asyncio.sleep(delay)
                delay = min(RETRY_MAX, delay * 2)
                self._idle.clear()
                continue
            except Exception:  # noqa: BLE001 - rows the database refuses: retrying would block the queue
                log.exception("usage store: PostgreSQL refused a batch of %d records (dropped)", len(batch))
                del self._pending[:len(batch)]
                self.dropped += len(batch)
                if not self._pending:
                    self._wake.clear()
                    self._idle.set()
                continue
            del self._pending[:len(batch)]
            self.written += len(batch)
            delay = RETRY_MIN
            self._came_back("writing the queued records")
            self._warned_drop = False
            if not self._pending:
                self._wake.clear()
                self._idle.set()

    def _went_down(self, exc: BaseException) -> None:
        """Mark the database away; warn once per outage."""
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        self.last_error = f"{type(exc).__name__}: {first_line}" if first_line else type(exc).__name__
        if self.up:
            self.up = False
            log.warning("usage store: cannot reach PostgreSQL (%s); queueing up to %d records and retrying",
                        self.last_error, self._queue_size)

    def _came_back(self, doing: str) -> None:
        """Mark the database reachable; say so once at the end of an outage."""
        self.last_error = None
        if not self.up:
            self.up = True
            log.warning("usage store: PostgreSQL reachable again; %s", doing)

    async def _probe(self) -> None:
        """One ``SELECT 1`` through the pool (connecting and migrating first if never done)."""
        try:
            pool = await self._connection_pool()
            async with pool.connection(timeout=self._read_timeout if self.up else DOWN_READ_TIMEOUT) as conn:
                await conn.execute("SELECT 1")
        except asyncio.CancelledError:
            raise
        except _UNREACHABLE as exc:
            self._went_down(exc)
            return
        except Exception:  # noqa: BLE001 - the probe must never end the writer
            log.exception("usage store: probing PostgreSQL failed")
            return
        self._came_back("no records were waiting" if not self._pending else "writing the queued records")

    def health(self) -> dict[str, Any]:
        """For ``/health``: which store, whether it writes, and what waits or was lost meanwhile."""
        return {"store": "postgresql", "url": safe_url(self.url), "schema": self.schema, "up": self.up,
                "queued": len(self._pending), "dropped": self.dropped,
                **({} if self.up else {"error": self.last_error})}

    async def _write_batch(self, batch: list[tuple[str, tuple[Any, ...]]]) -> None:
        pool = await self._connection_pool()
        async with pool.connection() as conn:
            async with conn.transaction():
                async with conn.cursor() as cur:
                    # As the SQLite store's commits skip fsync: a batch is committed without
                    # waiting for the WAL flush (a database crash may lose the last ~0.6 s of usage
                    # rows, never corrupt them).
                    await cur.execute("SET LOCAL synchronous_commit = off")
                    cur.adapters.register_dumper(None, _JsonbText)  # this cursor's COPY only
                    usage = [row for kind, row in batch if kind == "usage"]
                    audits = [row for kind, row in batch if kind == "audit"]
                    if usage:
                        async with cur.copy(self._copy_usage) as copy:
                            copy.set_types(_USAGE_TYPES)
                            for row in usage:
                                await copy.write_row(row)
                    if audits:
                        async with cur.copy(self._copy_audit) as copy:
                            copy.set_types(_AUDIT_TYPES)
                            for row in audits:
                                await copy.write_row(row)
                    now = time.time()
                    if self.retention_days > 0 and now - self._last_prune > 3600:
                        cutoff = now - self.retention_days * 86400
                        await cur.execute(f"DELETE FROM {self._s}.usage WHERE ts < %s", (cutoff,))
                        await cur.execute(f"DELETE FROM {self._s}.audit WHERE ts < %s", (cutoff,))
                        self._last_prune = now

    async def close(self) -> None:
        """Write what is queued (for up to ``CLOSE_TIMEOUT`` when the database is down), stop, close."""
        if self._writer is not None:
            self._closing = True
            deadline = time.monotonic() + CLOSE_TIMEOUT
            while self._pending and self.up and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            if self._pending:
                log.warning("usage store: %d records not written to PostgreSQL at shutdown", len(self._pending))
            await cancel_and_wait(self._writer)
            self._writer = self._wake = self._idle = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
            self._migrated = False

    # ---- reading --------------------------------------------------------------------------------

    async def _query(self, sql: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
        try:
            pool = await self._connection_pool()
            # While the writer finds the database away, a read waits briefly: a dashboard gets its
            # 503 in about a second instead of after the full wait for a connection.
            async with pool.connection(timeout=self._read_timeout if self.up else DOWN_READ_TIMEOUT) as conn:
                async with conn.cursor(row_factory=dict_row) as cur:
                    await cur.execute(sql, args)
                    return await cur.fetchall()
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise UsageStoreUnavailable(f"the usage store (PostgreSQL) is unavailable: {type(exc).__name__}") from exc

    async def stats(self, since: float | None = None, until: float | None = None,
                    group_by: str | None = None, *, caller: str | None = None) -> dict[str, Any]:
        """Totals (and groups) of the records in the time range; only ``caller``'s when given."""
        where, args = _where(since, until, caller)
        totals_sql = ("SELECT COUNT(*) AS requests, COUNT(*) FILTER (WHERE status >= 400) AS errors, "
                      "SUM(prompt_tokens) AS prompt_tokens, SUM(completion_tokens) AS completion_tokens, "
                      "SUM(cached_tokens) AS cached_tokens, SUM(cost) AS cost, COUNT(cost) AS priced, "
                      f"AVG(latency_ms) AS avg_latency_ms, SUM(cache_hit) AS cache_hits FROM {self._s}.usage" + where)
        totals = (await self._query(totals_sql, args))[0]
        out: dict[str, Any] = {"since": since, "until": until, "totals": clean_totals(totals)}
        if group_by:
            column = _GROUPS_PG[group_by]
            rows = await self._query(f"SELECT {column} AS key, COUNT(*) AS requests, "
                                     "COUNT(*) FILTER (WHERE status >= 400) AS errors, "
                                     "SUM(prompt_tokens) AS prompt_tokens, SUM(completion_tokens) AS completion_tokens, "
                                     "SUM(cost) AS cost, COUNT(cost) AS priced, AVG(latency_ms) AS avg_latency_ms "
                                     f"FROM {self._s}.usage{where} GROUP BY 1 ORDER BY requests DESC, 1 LIMIT 1000",
                                     args)
            out["group_by"] = group_by
            out["groups"] = [clean_totals(r) for r in rows]
        return out

    async def recent(self, limit: int = 50, cursor: int | None = None, *,
                     caller: str | None = None) -> tuple[list[dict[str, Any]], int | None]:
        """Newest first, a page of ``limit`` below ``cursor``; only ``caller``'s records when given."""
        clauses = [c for c, v in (("id < %s", cursor), ("caller = %s", caller)) if v]
        sql = (f"SELECT id, {', '.join(USAGE_COLUMNS)} FROM {self._s}.usage"
               + (" WHERE " + " AND ".join(clauses) if clauses else "") + " ORDER BY id DESC LIMIT %s")
        args = tuple(v for v in (cursor, caller) if v) + (limit,)
        items = [usage_dict(r) for r in await self._query(sql, args)]
        return items, (items[-1]["id"] if len(items) == limit else None)

    async def spent(self, since: float, scope: SpendScope) -> float:
        """The recorded cost of ``scope``'s requests since ``since`` (what budgets count)."""
        sql, args = spend_query(f"{self._s}.usage", since, scope, "%s")
        return float((await self._query(sql, args))[0]["spent"] or 0.0)

    async def audit_logs(self, since: float | None = None, type_: str | None = None, limit: int = 50,
                         cursor: int | None = None, *, actor: str | None = None) -> tuple[list[dict[str, Any]], int | None]:
        """Audit rows, newest first; ``actor``: only that caller's (a client key's own rows)."""
        clauses, args = [], []
        for clause, value in (("ts >= %s", since), ("type = %s", type_), ("id < %s", cursor), ("actor = %s", actor)):
            if value is not None:
                clauses.append(clause)
                args.append(value)
        sql = (f"SELECT id, ts, type, actor, outcome, detail FROM {self._s}.audit"
               + (" WHERE " + " AND ".join(clauses) if clauses else "") + " ORDER BY id DESC LIMIT %s")
        items = [{**r, "detail": r["detail"] or {}} for r in await self._query(sql, tuple(args) + (limit,))]
        return items, (items[-1]["id"] if len(items) == limit else None)


def _where(since: float | None, until: float | None, caller: str | None) -> tuple[str, tuple[Any, ...]]:
    clauses, args = [], []
    for clause, value in (("ts >= %s", since), ("ts < %s", until), ("caller = %s", caller)):
        if value is not None:
            clauses.append(clause)
            args.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(args)
