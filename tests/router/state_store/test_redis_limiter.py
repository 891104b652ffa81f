"""The Redis limiter on the real Redis (a prefix per test): the same arithmetic as the in-process
one, all or nothing, concurrency leases that expire when their holder stops renewing them, and
both ``on_unavailable`` policies against a port where no Redis listens."""

from __future__ import annotations

import asyncio
import time

import pytest

from dsl import ir
from redis_support import REDIS_URL, free_port
from router.config import StateConfig
from router.limits import Rejection, Reservation
from router.state_store.client import RedisState, StateStoreUnavailable
from router.state_store.limits import RedisLimiter


def limiter(prefix: str, url: str = REDIS_URL, policy: str = "fail_open", lease: float = 30.0) -> RedisLimiter:
    return RedisLimiter(RedisState(StateConfig("redis", url, prefix, policy, 1000)), lease_seconds=lease)


async def test_rpm_admits_its_amount_then_refuses_with_a_retry(prefix):
    lim = limiter(prefix)
    rpm = ir.Limit("rpm", 3, "caller")
    results = [await lim.acquire([(rpm, "k1")]) for _ in range(4)]
    assert [isinstance(r, Reservation) for r in results] == [True, True, True, False]
    refused = results[-1]
    assert isinstance(refused, Rejection) and 0.05 <= refused.retry_after <= 20.5
    assert isinstance(await lim.acquire([(rpm, "k2")]), Reservation)  # another scope value, another bucket
    await lim.store.aclose()


async def test_all_or_nothing(prefix):
    lim = limiter(prefix)
    wide, narrow = ir.Limit("rpm", 10, "backend"), ir.Limit("rpm", 1, "session")
    assert isinstance(await lim.acquire([(wide, "b"), (narrow, "s")]), Reservation)
    refused = await lim.acquire([(wide, "b"), (narrow, "s")])
    assert isinstance(refused, Rejection) and refused.limit is narrow
    # the refused request charged nothing: wide has 9 left, not 8
    for _ in range(9):
        assert isinstance(await lim.acquire([(wide, "b")]), Reservation)
    assert isinstance(await lim.acquire([(wide, "b")]), Rejection)
    await lim.store.aclose()


async def test_tpm_is_debited_with_the_real_usage(prefix):
    lim = limiter(prefix)
    tpm = ir.Limit("tpm", 1000, "caller")
    first = await lim.acquire([(tpm, "c")])
    assert isinstance(first, Reservation)
    first.release(5000)  # far over: the bucket goes negative
    await first.pending
    assert isinstance(await lim.acquire([(tpm, "c")]), Rejection)
    await lim.store.aclose()


async def test_concurrency_slots_are_released_and_leases_expire(prefix):
    lim = limiter(prefix)
    one = ir.Limit("concurrency", 1, "backend")
    held = await lim.acquire([(one, "b")])
    assert isinstance(held, Reservation) and isinstance(await lim.acquire([(one, "b")]), Rejection)
    held.release(0)
    await held.pending
    again = await lim.acquire([(one, "b")])
    assert isinstance(again, Reservation)
    # A killed instance: its lease is not renewed, and the slot comes back when it expires.
    dead = limiter(prefix, lease=0.5)
    dead_prefix_slot = await dead.acquire([(ir.Limit("concurrency", 1, "session"), "s")])
    assert isinstance(dead_prefix_slot, Reservation)
    await dead.aclose()  # stops renewing, as a killed process would
    other = limiter(prefix)
    assert isinstance(await other.acquire([(ir.Limit("concurrency", 1, "session"), "s")]), Rejection)
    await asyncio.sleep(0.7)
    assert isinstance(await other.acquire([(ir.Limit("concurrency", 1, "session"), "s")]), Reservation)
    for each in (lim, dead, other):
        await each.store.aclose()


async def test_a_held_lease_is_renewed(prefix):
    lim = limiter(prefix, lease=0.6)
    slot = await lim.acquire([(ir.Limit("concurrency", 1, "caller"), "c")])
    assert isinstance(slot, Reservation)
    await asyncio.sleep(1.2)  # two lease lengths: only renewal keeps it
    assert isinstance(await limiter(prefix).acquire([(ir.Limit("concurrency", 1, "caller"), "c")]), Rejection)
    slot.release(0)
    await slot.pending
    await lim.aclose()
    await lim.store.aclose()


@pytest.mark.parametrize("policy", ["fail_open", "fail_closed"])
async def test_no_redis_there(prefix, policy):
    lim = limiter(prefix, url=f"redis://127.0.0.1:{free_port()}/0", policy=policy)
    rpm = ir.Limit("rpm", 1, "caller")
    started = time.monotonic()
    if policy == "fail_open":  # the process-local limiter answers: its own rpm(1) holds
        assert isinstance(await lim.acquire([(rpm, "c")]), Reservation)
        assert isinstance(await lim.acquire([(rpm, "c")]), Rejection)
    else:
        with pytest.raises(StateStoreUnavailable) as info:
            await lim.acquire([(rpm, "c")])
        assert info.value.status == 503 and "state store is unavailable" in info.value.message
    assert time.monotonic() - started < 1.0
    assert not lim.store.up and lim.store.errors >= 1
    await lim.store.aclose()


async def test_concurrent_acquires_go_together_and_stay_exact(prefix):
    lim = limiter(prefix)
    rpm = ir.Limit("rpm", 10, "caller")
    sent = []
    original = lim.store._round_trip

    async def counting(batch):
        sent.append(len(batch))
        return await original(batch)

    lim.store._round_trip = counting  # type: ignore[method-assign]
    results = await asyncio.gather(*(lim.acquire([(rpm, "c")]) for _ in range(32)))
    assert sum(isinstance(r, Reservation) for r in results) == 10
    assert max(sent) > 1 and sum(sent) == 32  # pipelined, not one round trip each
    await lim.store.aclose()


async def test_a_restarted_redis_gets_the_script_again(prefix):
    from redis_support import PrivateRedis

    server = PrivateRedis().start()
    try:
        lim = limiter(prefix, url=server.url)
        rpm = ir.Limit("rpm", 100, "caller")
        assert all(isinstance(r, Reservation) for r in await asyncio.gather(*(lim.acquire([(rpm, "c")]) for _ in range(3))))
        await lim.store.client.script_flush()  # as after a restart: the script is gone
        assert all(isinstance(r, Reservation) for r in await asyncio.gather(*(lim.acquire([(rpm, "c")]) for _ in range(3))))
        assert isinstance(await lim.acquire([(rpm, "c")]), Reservation)
        assert lim.store.errors == 0
        await lim.store.aclose()
    finally:
        server.stop()
