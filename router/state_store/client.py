"""One Redis connection pool with a deadline on every call, and what happens when Redis fails.

Every call goes through :meth:`RedisState.run`: it is bounded by ``state.timeout_ms`` (a slow,
frozen or dead Redis never holds a request longer), and a failure marks the store down, counts
``llm_proxy_state_store_errors_total`` and logs a warning (once per outage, not per request).
The caller then gets :class:`StateStoreUnavailable`: with ``fail_closed`` it is the request's
answer (503), with ``fail_open`` each store catches it and serves from its process-local
fallback. redis-py reconnects on the next call by itself; the first call that succeeds marks
the store up again.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any, Awaitable, Callable, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from backends.redaction import redact_url

from ..config import StateConfig
from ..errors import ProxyError

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

    async def ping(self) -> bool:
        try:
            await self.run("ping", self.client.ping)
            return True
        except StateStoreUnavailable:
            return False

    async def aclose(self) -> None:
        try:
            await self.client.aclose()
        except Exception:  # noqa: BLE001 - closing a broken connection must not fail shutdown
            pass


_PENDING: set[asyncio.Task[Any]] = set()  # background writes: the loop holds tasks only weakly


def now() -> float:
    return time.time()
