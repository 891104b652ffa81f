"""Hostile request bodies (issue "hold against hostile input", the high items): no single request
keeps the event loop from others, and a message cannot grow a session's routes without bound."""

from __future__ import annotations

import asyncio
import gc
import sys
import time
import uuid
from pathlib import Path

import orjson
import pytest

from dsl import bounds
from proxy_support import FRONTENDS, chat, reply_text
from router.frontends import frontend_for_path
from router.http.edge import parse_body
from router.wire.offload import off_loop, pause_gc, resume_gc

BENCHMARKS = str(Path(__file__).resolve().parents[2] / "benchmarks")
if BENCHMARKS not in sys.path:
    sys.path.insert(0, BENCHMARKS)

import hostile_bench  # noqa: E402


def test_health_answers_within_100ms_while_any_hostile_body_is_handled() -> None:
    """The proxy runs as its own process with ``max_body_bytes`` of 1 MiB; each body is just under
    it. Before the fix, 84 KB of `a` pieces and commands held /health for 8.7 s."""
    slowest = hostile_bench.run(1024 * 1024, report=lambda line: None)
    assert set(slowest) == set(hostile_bench.hostile_bodies(1024 * 1024))
    assert max(slowest.values()) < 0.1, {name: f"{s * 1000:.0f} ms" for name, s in slowest.items()}


def test_parsing_and_decoding_a_default_max_body_leave_the_loop_free() -> None:
    """At the default ``max_body_bytes`` (10 MiB), the body-sized steps before the pipeline (JSON
    parse, codec decode in a worker thread) never keep the event loop from running for 100 ms of
    the process's CPU time (CPU time, not wall time: the machine running the suite may be loaded).
    Before, one ``orjson.loads`` of the 9 MB "many small messages" body held it 270-340 ms, and
    full garbage collections during the decode 105-211 ms each. (End to end, ``hostile_bench`` at
    10 MiB still sees 90-120 ms on this body: issue 12's target is not fully met yet.)"""
    raw = hostile_bench.hostile_bodies(10 * 1024 * 1024)["many small messages"]
    decode = frontend_for_path("/v2/chat/completions", "POST").codec.decode_request
    messages = len(orjson.loads(raw)["messages"])

    async def longest_hold() -> float:
        done, longest = False, 0.0

        async def tick() -> None:
            nonlocal longest
            last = time.process_time()
            while not done:
                await asyncio.sleep(0)
                now = time.process_time()
                longest, last = max(longest, now - last), now

        ticker = asyncio.ensure_future(tick())
        pause_gc()
        try:
            body = await parse_body(raw)
            request = await off_loop(decode, body)
            assert len(request.messages) == messages
        finally:
            resume_gc()
            done = True
            await ticker
        return longest

    try:
        assert asyncio.run(longest_hold()) < 0.1
    finally:
        gc.unfreeze()  # asyncio.run ended before the proxy's own unfreeze timer could run


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_a_flood_of_route_appends_is_refused_at_once_and_changes_nothing(client, frontend) -> None:
    session = "t-" + uuid.uuid4().hex[:12]
    flood = " ".join(["!/route-append(m, echo:x)"] * 3000)
    started = time.perf_counter()
    text = reply_text(frontend, chat(client, frontend, flood, session=session))
    assert time.perf_counter() - started < 2  # 149 s before the bound
    assert "too many commands in one message" in text and "nothing was changed" in text.lower()
    assert "Session rules: none" in reply_text(frontend, chat(client, frontend, "!/route-list", session=session))


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_a_session_route_has_at_most_the_bound_of_targets(client, frontend) -> None:
    session = "t-" + uuid.uuid4().hex[:12]
    for _ in range(bounds.MAX_CHAIN_LINKS // 4):
        text = reply_text(frontend, chat(client, frontend, "!/route-append(m, echo:a -> echo:b -> echo:c -> echo:d)",
                                         session=session))
        assert "route for m:" in text
    refused = reply_text(frontend, chat(client, frontend, "!/route-append(m, echo:e)", session=session))
    assert "nothing was changed" in refused.lower() and f"at most {bounds.MAX_CHAIN_LINKS}" in refused
    listing = reply_text(frontend, chat(client, frontend, "!/route-list", session=session))
    assert listing.count("echo:a") == bounds.MAX_CHAIN_LINKS // 4 and "echo:e" not in listing


def test_a_session_has_routes_for_at_most_the_bound_of_models(client) -> None:
    session = "t-" + uuid.uuid4().hex[:12]
    for start in range(0, bounds.MAX_SESSION_ROUTES, bounds.MAX_COMMANDS_PER_MESSAGE):
        batch = " ".join(f"!/route-append(m{n}, echo:x)" for n in range(start, start + bounds.MAX_COMMANDS_PER_MESSAGE))
        assert "nothing was changed" not in reply_text("openai", chat(client, "openai", batch, session=session)).lower()
    refused = reply_text("openai", chat(client, "openai", "!/route-append(one-more, echo:x)", session=session))
    assert "nothing was changed" in refused.lower() and "clear one first" in refused
    replaced = reply_text("openai", chat(client, "openai", "!/route-prepend(m0, echo:y)", session=session))
    assert "route for m0: echo:y -> echo:x" in replaced  # a model that has a route may still change it
