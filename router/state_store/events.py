"""What instances tell each other, over one Redis pub/sub channel (``prefix:events``).

- ``circuit``: a circuit's shared failure count after a failure or a recovery (the count itself
  lives in Redis, raised and reset atomically): every instance opens or closes its own copy, so
  dispatch's ``allow`` stays a local read, no round trip per request.
- ``check``: the result of a background health check, made by one instance per interval.
- ``reload``: ``POST /v2/admin/reload`` reached one instance; every other reloads its own copy.

Messages from this instance are ignored when they come back. The subscriber reconnects by
itself; what was published while it was away is lost (circuits then catch up with the next
failure or success, reloads with the next reload).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Awaitable, Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ..tasks import cancel_and_wait
from .client import RedisState, StateStoreUnavailable

log = logging.getLogger("llm_proxy.state_store")

Handler = Callable[[dict[str, Any]], Awaitable[None] | None]

# KEYS[1]: the circuit's failure counter. ARGV: 1 = failed / 0 = succeeded, idle ms.
_CIRCUIT = """
if ARGV[1] == '1' then
  local n = redis.call('INCR', KEYS[1])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
  return n
end
redis.call('DEL', KEYS[1])
return 0
"""


class StateEvents:
    def __init__(self, store: RedisState) -> None:
        self.store = store
        self.channel = store.key("events")
        self.handlers: dict[str, Handler] = {}
        self._task: asyncio.Task[None] | None = None
        self._circuit = store.client.register_script(_CIRCUIT)
        self.connected = asyncio.Event()

    def on(self, kind: str, handler: Handler) -> None:
        self.handlers[kind] = handler

    def publish(self, kind: str, **payload: Any) -> None:
        message = json.dumps({"k": kind, "from": self.store.instance, **payload})
        self.store.background(f"publish_{kind}", lambda: self.store.client.publish(self.channel, message))

    async def circuit(self, name: str, failed: bool, idle_ms: int) -> int:
        """The shared failure count of circuit ``name`` after this outcome (published to the others)."""
        key = self.store.key("cb", name)
        count = int(await self.store.run("circuit", lambda: self._circuit(keys=[key], args=[1 if failed else 0, idle_ms])))
        self.publish("circuit", name=name, failures=count)
        return count

    async def claim(self, what: str, interval_ms: int) -> bool:
        """True for the one instance that may do ``what`` in this interval (SET NX PX)."""
        key = self.store.key("claim", what)
        try:
            return bool(await self.store.run("claim", lambda: self.store.client.set(
                key, self.store.instance, nx=True, px=interval_ms)))
        except StateStoreUnavailable:
            return True  # nobody can coordinate: check on our own

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._listen())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _listen(self) -> None:
        cfg = self.store.config
        delay = 0.1
        while True:
            # Its own connection without a read timeout: a subscriber waits for messages.
            client = aioredis.from_url(cfg.url, socket_connect_timeout=self.store.timeout)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await asyncio.wait_for(pubsub.subscribe(self.channel), max(1.0, self.store.timeout))
                self.connected.set()
                delay = 0.1
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None:
                        await self._dispatch(message.get("data"))
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, asyncio.TimeoutError) as exc:
                self.connected.clear()
                log.debug("state events subscriber lost redis (%s); reconnecting", exc)
            finally:
                try:
                    await pubsub.aclose()
                    await client.aclose()
                except Exception:  # noqa: BLE001
                    pass
            await asyncio.sleep(delay)
            delay = min(2.0, delay * 2)

    async def _dispatch(self, data: Any) -> None:
        try:
            message = json.loads(data)
        except (TypeError, ValueError):
            return
        if not isinstance(message, dict) or message.get("from") == self.store.instance:
            return
        handler = self.handlers.get(str(message.get("k")))
        if handler is None:
            return
        try:
            result = handler(message)
            if asyncio.iscoroutine(result):
                await result
        except Exception:  # noqa: BLE001 - one bad message must not stop the subscriber
            log.exception("state event %r failed", message.get("k"))
