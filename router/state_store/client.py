"""One Redis connection pool with a deadline on every call, and what happens when Redis fails.

Every call goes through :meth:`RedisState.run`: it is bounded by ``state.timeout_ms`` (a slow,
frozen or dead Redis never holds a request longer), and a failure marks the store down, counts
``llm_proxy_state_store_errors_total`` and logs a warning (once per outage, not per request).
The caller then gets :class:`StateStoreUnavailable`: with ``fail_closed`` it is the request's
answer (503), with ``fail_open`` each store catches it and serves from its process-local
fallback. redis-py reconnects on the next call by itself; the first call that succeeds marks
the store up again.

The hot path does not go through redis-py's client or pipeline objects: :meth:`RedisState.step`
queues one script call, and every call queued in one turn of the event loop goes to Redis
together, written and read on a connection of its own (redis-py's ``Connection``: its packer and
its hiredis reader) by one sender task. Measured with ``benchmarks/inprocess_bench.py --state
redis --instructions``: the client's pipeline (a Pipeline object, the pool's lock and bookkeeping
on every get and release, ``wait_for``'s task per socket write) cost more than the round trip's
system calls; see the commit that made this.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any, Awaitable, Callable, TypeVar

import redis.asyncio as aioredis
from hiredis import pack_command as pack  # in C, ~7x faster than redis-py's packer (redis[hiredis] >= 5 brings it)
from redis.exceptions import NoScriptError, RedisError, ResponseError

from backends.redaction import redact_url

from ..config import StateConfig
from ..errors import ProxyError
from ..tasks import cancel_and_wait

log = logging.getLogger("llm_proxy.state_store")


T = TypeVar("T")


class StateStoreUnavailable(ProxyError):
    """Redis did not answer in time (or refused): with ``fail_closed`` a 503 in the client's shape."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(503, f"the state store is unavailable (redis at {where}: {reason}); try again shortly",
                         "overloaded", headers={"Retry-After": "1"})


class RedisState:
    """The shared store's connection and policy. ``fail_open`` tells the stores to fall back."""

    def __init__(self, config: StateConfig, on_change: Callable[[bool], None] | None = None,
                 count_error: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.prefix = config.prefix
        self.timeout = config.timeout_ms / 1000.0
        self.fail_open = config.on_unavailable == "fail_open"
        self.where = redact_url(config.url)
        self.instance = uuid.uuid4().hex[:12]  # this process, in pub/sub messages
        self.up = True
        self.errors = 0
        self.last_error: str | None = None
        self._on_change = on_change or (lambda up: None)
        self._count_error = count_error or (lambda op: None)
        self.client = aioredis.from_url(
            config.url, socket_timeout=self.timeout, socket_connect_timeout=self.timeout,
            retry_on_timeout=False, health_check_interval=0, decode_responses=False)
        self._steps: list[tuple[str, str, tuple[Any, ...], asyncio.Future[Any]]] = []
        self._sender: asyncio.Task[None] | None = None
        self._connection: Any = None  # the hot path's own connection, made on first use
        self._scripts: tuple[str, ...] = ()  # the hot path's scripts, loaded at start and after an outage

    def key(self, *parts: str) -> str:
        """``prefix:part:part``: every key of this proxy under its prefix."""
        return ":".join((self.prefix, *parts))

    async def run(self, op: str, call: Callable[[], Awaitable[T]]) -> T:
        """``call()`` within the timeout; :class:`StateStoreUnavailable` when Redis fails."""
        try:
            # asyncio.timeout, not wait_for: no extra task per call (this runs on the hot path).
            async with asyncio.timeout(self.timeout):
                result = await call()
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            self.failed(op, exc)
            raise StateStoreUnavailable(self.where, self.last_error or "error") from None
        if not self.up:
            self._set_up(True)
        return result

    def failed(self, op: str, exc: BaseException) -> None:
        self.errors += 1
        self._count_error(op)
        reason = "timed out" if isinstance(exc, asyncio.TimeoutError) or "Timeout" in type(exc).__name__ \
            else f"{type(exc).__name__}: {exc}"[:200]
        self.last_error = reason
        if self.up:
            log.warning("state store redis at %s unavailable (%s during %s): %s", self.where, reason, op,
                        "serving with this process's own state" if self.fail_open else "answering 503")
            self._set_up(False)

    def _set_up(self, up: bool) -> None:
        if up and not self.up:
            log.warning("state store redis at %s is back", self.where)
            if self._scripts:  # a restarted Redis lost them: the next request should not pay for it
                self.background_task(self.preload(*self._scripts))
        self.up = up
        self._on_change(up)

    def background(self, op: str, call: Callable[[], Awaitable[Any]]) -> None:
        """A write nobody waits for (a release, a cache entry, an event): errors are counted only."""
        task = asyncio.get_running_loop().create_task(self.quietly(op, call))
        _PENDING.add(task)
        task.add_done_callback(_PENDING.discard)

    async def quietly(self, op: str, call: Callable[[], Awaitable[Any]]) -> None:
        """``call`` through :meth:`run`, its failure counted and logged but not raised."""
        try:
            await self.run(op, call)
        except StateStoreUnavailable:
            pass

    # ---- the hot path: script calls of one loop turn in one round trip ---------------------------

    def step(self, sha: str, script: str, args: tuple[Any, ...]) -> "asyncio.Future[Any]":
        """The reply of ``EVALSHA sha *args`` (``args`` starts with the number of keys), sent with
        every other step queued in this turn of the loop. The future fails with
        :class:`StateStoreUnavailable` when Redis does not answer within ``timeout_ms`` of the
        batch being written (a step queued behind a batch in flight waits at most twice that)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._steps.append((sha, script, args, future))
        if self._sender is None:
            self._sender = asyncio.get_running_loop().create_task(self._send_steps())
        return future

    async def _send_steps(self) -> None:
        try:
            while self._steps:
                batch, self._steps = self._steps, []
                try:
                    async with asyncio.timeout(self.timeout):
                        replies = await self._round_trip(batch)
                except (RedisError, OSError, asyncio.TimeoutError) as exc:
                    await self._drop_connection()
                    self.failed("state_step", exc)
                    error = StateStoreUnavailable(self.where, self.last_error or "error")
                    for *_call, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    continue
                if not self.up:
                    self._set_up(True)
                for (*_call, future), reply in zip(batch, replies):
                    if not future.done():
                        if isinstance(reply, ResponseError):
                            future.set_exception(reply)
                        else:
                            future.set_result(reply)
        finally:
            self._sender = None

    async def _round_trip(self, batch: list[tuple[str, str, tuple[Any, ...], Any]]) -> list[Any]:
        """Write the batch's EVALSHAs, read their replies; a script Redis lost (a restart) is
        loaded and the batch sent once more."""
        conn = self._connection or await self._connect()
        for attempt in (1, 2):
            await conn.send_packed_command([pack(("EVALSHA", sha, *args)) for sha, _s, args, _f in batch],
                                           check_health=False)
            replies = []
            for _ in batch:
                try:
                    replies.append(await conn.read_response())
                except ResponseError as exc:  # one script's error: the others' replies still follow
                    replies.append(exc)
            if attempt == 1 and any(isinstance(r, NoScriptError) for r in replies):
                await self._load(conn, {s for _sha, s, _a, _f in batch})
                continue
            return replies
        raise NoScriptError("a state script could not be loaded")  # pragma: no cover

    @staticmethod
    async def _load(conn: Any, scripts: set[str]) -> None:
        await conn.send_packed_command(conn.pack_commands([("SCRIPT", "LOAD", script) for script in scripts]),
                                       check_health=False)
        for _ in scripts:
            await conn.read_response()

    def background_task(self, coro: Awaitable[Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        _PENDING.add(task)
        task.add_done_callback(_PENDING.discard)

    async def preload(self, *scripts: str) -> None:
        """Connect the hot path's connection and load its scripts before the first request (a
        first request would otherwise spend three round trips of its timeout on that); again when
        Redis comes back after an outage."""
        self._scripts = scripts
        try:
            async with asyncio.timeout(max(1.0, self.timeout)):
                conn = self._connection or await self._connect()
                await self._load(conn, set(scripts))
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            await self._drop_connection()
            log.debug("state store scripts not preloaded (%s): loaded when first used", exc)

    async def _connect(self) -> Any:
        pool = self.client.connection_pool
        # No socket timeout of its own: every batch is bounded by ``asyncio.timeout``, and
        # redis-py's per-write ``wait_for`` would start a task per round trip.
        conn = self._connection = pool.connection_class(**{**pool.connection_kwargs, "socket_timeout": None})
        await conn.connect()
        return conn

    async def _drop_connection(self) -> None:
        conn, self._connection = self._connection, None
        if conn is not None:
            try:
                await conn.disconnect(nowait=True)
            except Exception:  # noqa: BLE001 - a broken connection is dropped whatever it says
                pass

    async def ping(self) -> bool:
        try:
            await self.run("ping", self.client.ping)
            return True
        except StateStoreUnavailable:
            return False

    async def aclose(self) -> None:
        await cancel_and_wait(self._sender)
        await self._drop_connection()
        try:
            await self.client.aclose()
        except Exception:  # noqa: BLE001 - closing a broken connection must not fail shutdown
            pass


_PENDING: set[asyncio.Task[Any]] = set()  # background writes: the loop holds tasks only weakly


def now() -> float:
    return time.time()


def drop_prefix(url: str, prefix: str) -> None:
    """Delete every key under ``prefix:`` in the Redis at ``url``: what a run with a key prefix of
    its own (a test, ``benchmarks/inprocess_bench.py --state redis``) leaves behind. Synchronous,
    for after the run's event loop has ended; bounded by a 2 s socket timeout per call."""
    import redis  # the blocking client: only here, the proxy itself uses redis.asyncio

    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
