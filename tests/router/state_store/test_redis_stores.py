"""Sessions and cache entries as stored in the real Redis: owner-scoped, expiring, JSON only."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from redis_support import REDIS_URL
from router.config import StateConfig
from router.sessions import Session
from router.state_store.cache import MAX_ENTRY_BYTES, RedisResponseCache, decode_response, encode_response
from router.state_store.client import RedisState, drop_prefix
from router.state_store.histories import SharedToolHistories
from router.state_store.sessions import RedisSessionRepository
from router.wire.canonical import ChatResponse, TextPart, ThinkingPart, ToolCallPart, Usage


def store(prefix: str) -> RedisState:
    return RedisState(StateConfig("redis", REDIS_URL, prefix, "fail_open", 200))


async def test_drop_prefix_removes_the_prefix_keys_and_no_others(prefix):
    """What the tests' and inprocess_bench's clean-up does: ``prefix:*`` goes, a neighbouring
    prefix that merely starts the same (``prefix-other:``) and the bare ``prefix`` key stay."""
    client = aioredis.from_url(REDIS_URL)
    try:
        mine = [f"{prefix}:ss:k:{i}" for i in range(1500)]  # more than one SCAN batch
        others = [f"{prefix}-other:ss:k", prefix]
        await client.mset({key: "1" for key in mine + others})
        await asyncio.to_thread(drop_prefix, REDIS_URL, prefix)
        assert await client.exists(*mine) == 0
        assert await client.exists(*others) == 2
    finally:
        await client.delete(f"{prefix}-other:ss:k", prefix)
        await client.aclose()


async def test_sessions_belong_to_their_owner_and_expire(prefix):
    repo = RedisSessionRepository(store(prefix), ttl_seconds=0.5, max_history=2)
    mine = await repo.get_or_create("s1", "key-a")
    mine.backend, mine.route_edits = "other", [{"name": "x"}]
    for i in range(3):
        mine.add_history({"n": i}, 10)
    await repo.save(mine)
    again = await repo.get("s1", "key-a")
    assert again is not None and again.backend == "other" and again.route_edits == [{"name": "x"}]
    assert [h["n"] for h in again.history] == [1, 2]  # trimmed to max_history on save
    assert await repo.get("s1", "key-b") is None  # another caller sending the same id
    await asyncio.sleep(0.7)
    assert await repo.get("s1", "key-a") is None  # idle past the TTL
    await repo.store.aclose()


async def test_cache_entries_round_trip_expire_and_are_capped(prefix):
    cache = RedisResponseCache(store(prefix))
    answer = ChatResponse("id1", "m", [ThinkingPart("hmm", "sig"), TextPart("hello"),
                                       ToolCallPart("c1", "f", '{"a":1}')], "tool_calls", Usage(3, 4), 17)
    assert decode_response(encode_response(answer)) == answer
    assert cache.put("k1", answer, 1)
    await asyncio.sleep(0.2)  # written in the background
    assert await cache.fetch("k1") == answer
    await asyncio.sleep(1.1)
    assert await cache.fetch("k1") is None
    huge = ChatResponse("id2", "m", [TextPart("x" * (MAX_ENTRY_BYTES + 1))])
    assert not cache.put("k2", huge, 60)
    assert not cache.put("k3", ChatResponse("id3", "m", [TextPart("partial")], "error"), 60)
    # never a pickle: what is stored is JSON a person can read
    client = aioredis.from_url(REDIS_URL)
    assert cache.put("k4", answer, 60)
    await asyncio.sleep(0.2)
    raw = await client.get(f"{prefix}:rc:k4")
    assert raw is not None and raw.startswith(b"{")
    await client.aclose()
    await cache.store.aclose()


async def test_shared_tool_histories_are_kept_in_redis_and_counted_here(prefix):
    """A history counted by one instance is loaded by another; the map this process keeps them in
    is the one ``/v2/admin/runtime`` counts (``ToolHistories._histories``)."""
    session = Session(id="agent-1", owner="key-a")
    first, second = SharedToolHistories(store(prefix)), SharedToolHistories(store(prefix))
    try:
        await first.load(session)
        first.of(session).record("read_file:{\"path\": \"a\"}")
        await first.keep(session)
        await second.load(session)
        assert second.of(session).to_json() == first.of(session).to_json() != {}
        assert len(first._histories) == len(second._histories) == 1
    finally:
        await first.store.aclose()
        await second.store.aclose()
