"""Rate limits shared by every instance: ``rpm``, ``tpm`` and ``concurrency`` in Redis.

One Lua script checks and charges all the limits one acquire names, atomically and all or
nothing, in one round trip (EVALSHA, sent with the other steps of the same loop turn, see
``client.py``); the request's session check rides along (``step.py``), so a request with limits
makes one round trip, not two. The same token-bucket arithmetic as
:class:`router.limits.InProcessLimiter`, on Redis' clock so instances with skewed clocks agree.
Concurrency slots are leases in a sorted set scored by their expiry: a held lease is renewed by
its instance every ``LEASE_SECONDS / 3``, so a killed instance's slots come back within
``LEASE_SECONDS``. Releases (and ``tpm``'s debit of the real token count) are written in the
background: nobody waits for them.

When Redis fails, ``fail_open`` answers from the process-local limiter (limits then hold per
instance, not across them), ``fail_closed`` raises the 503.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, Iterable

from dsl import ir

from ..limits import InProcessLimiter, Rejection, Reservation
from ..tasks import cancel_and_wait
from .client import RedisState, StateStoreUnavailable
from .step import NO_SESSION, STEP, Rider, SessionChanged

LEASE_SECONDS = 30.0
BUCKET_IDLE_MS = 600_000  # an idle bucket is full again after a minute; forgotten after ten

# KEYS: the reservation's keys. ARGV: lease id, tokens, idle ms, then kind and amount per key.
_RELEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local lease, tokens, idle_ms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
for i, key in ipairs(KEYS) do
  local kind, amount = ARGV[2 + 2 * i], tonumber(ARGV[3 + 2 * i])
  if kind == 'concurrency' then
    redis.call('ZREM', key, lease)
  elseif kind == 'tpm' and tokens > 0 then
    local b = redis.call('HMGET', key, 'level', 'stamp')
    local level = tonumber(b[1]) or amount
    local stamp = tonumber(b[2]) or now
    level = math.min(amount, level + math.max(0, now - stamp) * amount / 60) - tokens
    redis.call('HSET', key, 'level', tostring(level), 'stamp', tostring(now))
    redis.call('PEXPIRE', key, idle_ms)
  end
end
return 0
"""

# KEYS: sorted sets holding this instance's leases; ARGV: lease ms, then one lease id per key.
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local lease_ms = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', now + lease_ms / 1000, ARGV[1 + i])
  redis.call('PEXPIRE', key, lease_ms * 2)
end
return 0
"""


class RedisReservation(Reservation):
    """What one request holds in Redis: the limits, and its lease id for concurrency slots."""

    __slots__ = ("lease", "limits", "pending")

    def __init__(self, limiter: "RedisLimiter", lease: str, limits: list[tuple[str, ir.Limit]]) -> None:
        super().__init__(limiter)
        self.lease = lease
        self.limits = limits
        self.pending: asyncio.Task[None] | None = None  # the release being written


class RedisLimiter:
    """The :class:`router.limits.Limiter` interface on Redis (``acquire`` is awaited)."""

    shared = True

    def __init__(self, store: RedisState, lease_seconds: float = LEASE_SECONDS) -> None:
        self.store = store
        self.local = InProcessLimiter()  # fail_open's fallback
        self.lease_ms = int(lease_seconds * 1000)
        self.sha = store.client.register_script(STEP).sha
        self._release = store.client.register_script(_RELEASE)
        self._renew = store.client.register_script(_RENEW)
        self._held: dict[str, list[str]] = {}  # lease id -> concurrency keys, renewed while held
        self._renewer: asyncio.Task[None] | None = None

    def _key(self, lim: ir.Limit, value: str) -> str:
        return self.store.key("rl", lim.kind, str(lim.amount), lim.per, value)

    async def acquire(self, limits: Iterable[tuple[ir.Limit, str]], rider: Rider | None = None
                      ) -> Reservation | Rejection:
        """Charge ``limits`` all or nothing; with ``rider`` (the request's session check), in the
        same script call: a stale session raises :class:`SessionChanged` and charges nothing."""
        wanted = [(self._key(lim, value), lim, value) for lim, value in limits]
        held = [key for key, lim, _value in wanted if lim.kind == "concurrency"]
        lease = uuid.uuid4().hex if held else ""  # a lease id only for concurrency slots
        keys = [key for key, _lim, _value in wanted]
        args: list[object] = [len(keys) + (2 if rider is not None else 0)]
        if rider is not None:
            args += rider.keys
        args += keys
        args += rider.args if rider is not None else NO_SESSION
        args += (lease, self.lease_ms, BUCKET_IDLE_MS)
        for _key, lim, _value in wanted:
            args += (lim.kind, lim.amount)
        try:
            reply = await self.store.step(self.sha, STEP, tuple(args))
        except StateStoreUnavailable:
            if not self.store.fail_open:
                raise
            if rider is not None:
                rider.unsent()
            return self.local.acquire((lim, value) for _key, lim, value in wanted)
        refused = int(reply[0])
        if rider is not None:
            rider.settle(reply)  # raises SessionChanged when the session was changed elsewhere
        if refused:
            _key, lim, value = wanted[refused - 1]
            return Rejection(lim, value, max(0.05, int(reply[1]) / 1000.0))
        if held:
            self._held[lease] = held
            self._ensure_renewer()
        return RedisReservation(self, lease, [(key, lim) for key, lim, _value in wanted])

    def release(self, reservation: Reservation, tokens: int) -> None:
        if not isinstance(reservation, RedisReservation):
            self.local.release(reservation, tokens)  # taken from the fallback while Redis was down
            return
        self._held.pop(reservation.lease, None)
        if not any(lim.kind == "concurrency" or (lim.kind == "tpm" and tokens) for _key, lim in reservation.limits):
            return  # rpm alone: nothing to give back
        keys = [key for key, _lim in reservation.limits]
        args: list[object] = [reservation.lease, int(tokens), BUCKET_IDLE_MS]
        for _key, lim in reservation.limits:
            args += [lim.kind, lim.amount]
        reservation.pending = asyncio.get_running_loop().create_task(
            self.store.quietly("rate_limit_release", lambda: self._release(keys=keys, args=args)))

    def _ensure_renewer(self) -> None:
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.get_running_loop().create_task(self._renew_leases())

    async def _renew_leases(self) -> None:
        """Push the expiry of every lease this instance holds forward, while it holds any."""
        while self._held:
            await asyncio.sleep(self.lease_ms / 3000.0)
            keys, args = [], [self.lease_ms]
            for lease, held in list(self._held.items()):
                for key in held:
                    keys.append(key)
                    args.append(lease)
            if keys:
                try:
                    await self.store.run("lease_renew", lambda: self._renew(keys=keys, args=args))
                except StateStoreUnavailable:
                    pass

    async def aclose(self) -> None:
        await cancel_and_wait(self._renewer)
