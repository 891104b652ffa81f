"""The shared stores of one process, built from ``state:`` once at start (a reload keeps them):
the Redis handle, the limiter, the response cache, the event channel and the repository
factories of sessions and stored Responses, plus a watcher that pings Redis every second so ``/health`` and the
``llm_proxy_state_store_up`` gauge follow an outage even when no request comes."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Mapping

from backends.keys import KeyPool

from ..config import SessionConfig, StateConfig
from ..responses_store import MAX_STORED, ResponseStore
from ..tasks import cancel_and_wait
from .cache import RedisResponseCache
from .client import RedisState
from .events import StateEvents
from .histories import SharedToolHistories
from .limits import RedisLimiter
from .sessions import RedisDocumentRepository, RedisSessionRepository
from .step import STEP

if TYPE_CHECKING:  # pragma: no cover
    from ..record.metrics import Metrics

WATCH_SECONDS = 1.0


class SharedStores:
    def __init__(self, config: StateConfig, metrics: "Metrics | None" = None) -> None:
        self.config = config
        self.metrics = metrics
        self.store = RedisState(config, on_change=self._on_change, count_error=self._count)
        self.limiter = RedisLimiter(self.store)
        self.cache = RedisResponseCache(self.store)
        self.events = StateEvents(self.store)
        self.histories = SharedToolHistories(self.store)
        self._watch: asyncio.Task[None] | None = None
        if metrics is not None:
            metrics.state_store_up.labels("redis").set(1)

    def sessions(self, config: SessionConfig) -> RedisSessionRepository:
        return RedisSessionRepository(self.store, config.ttl_seconds, config.max_history, config.max_sessions)

    def responses(self, config: SessionConfig) -> ResponseStore:
        """Stored Responses replies in Redis (``prefix:resp:<caller>:<id>``), with the session's
        idle TTL; each bounded by ``MAX_STORED_BYTES`` like in process."""
        return ResponseStore(RedisDocumentRepository(self.store, "resp", config.ttl_seconds,
                                                     min(config.max_sessions, MAX_STORED)))

    def share_key_cooldowns(self, backends: Mapping[str, Any]) -> None:
        """Publish each connector's key cooldowns to the other instances (connectors without a key
        pool, such as echo, have none)."""
        for name, backend in backends.items():
            pool = getattr(backend, "keys", None)
            if isinstance(pool, KeyPool) and pool.on_cool_down is None:
                pool.on_cool_down = lambda model, label, seconds, name=name: self.events.publish(
                    "cooldown", backend=name, model=model, label=label, seconds=seconds)

    @staticmethod
    def apply_key_cooldown(backends: Mapping[str, Any], message: dict[str, Any]) -> None:
        pool = getattr(backends.get(str(message.get("backend"))), "keys", None)
        if isinstance(pool, KeyPool):
            pool.cooled_elsewhere(str(message.get("label")), float(message.get("seconds") or 0.0),
                                  str(message.get("model") or ""))

    def _on_change(self, up: bool) -> None:
        if self.metrics is not None:
            self.metrics.state_store_up.labels("redis").set(1 if up else 0)

    def _count(self, op: str) -> None:
        if self.metrics is not None:
            self.metrics.state_store_errors.labels("redis", op).inc()

    def health(self) -> dict[str, Any]:
        """For ``/health``: which store, and whether it answers."""
        return {"store": "redis", "url": self.store.where, "prefix": self.config.prefix, "up": self.store.up,
                "on_unavailable": self.config.on_unavailable,
                **({} if self.store.up else {"error": self.store.last_error})}

    async def start(self) -> None:
        await self.store.ping()
        await self.store.preload(STEP)
        await self.events.start()
        if self._watch is None:
            self._watch = asyncio.get_running_loop().create_task(self._watching())

    async def _watching(self) -> None:
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            await self.store.ping()

    async def stop(self) -> None:
        await cancel_and_wait(self._watch)
        self._watch = None
        await self.events.stop()
        await self.limiter.aclose()
        await self.store.aclose()
