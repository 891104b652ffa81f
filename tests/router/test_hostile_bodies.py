"""Hostile request bodies (issue "hold against hostile input", the high items): no single request
keeps the event loop from others, and a message cannot grow a session's routes without bound."""

from __future__ import annotations

import asyncio
import gc
import http.client
import json
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from dsl import bounds
from proxy_support import FRONTENDS, LiveServer, chat, reply_text, write_config
from router.app import create_app

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


# The bodies at 10 MiB whose longest loop step was over or near the bound before the scanner
# searched window by window and large requests were freed in parts (hostile_bench, slowest
# /health: route-append flood ~101 ms, lines then one command ~106 ms, many small messages 90-120
# ms). The backtick bodies take seconds of CPU each at this size; they are held at 1 MiB above.
DEFAULT_SIZE_BODIES = ("route-append flood", "lines then one command", "many small messages")
LOOP_STEP_BOUND = 0.07  # s of CPU: the 100 ms target, with room


def server_cpu() -> float:
    """CPU seconds of the calling thread (the server's event loop) and of the large-request worker
    threads (``router/wire/offload.py``), which hold the GIL the loop needs while they run.

    Not the whole process's CPU time: that also counts the test's own client thread sending the
    10 MB body (its kernel time, on the other core while the loop runs), which made a step read up
    to ~10 ms longer than the server's work in it and the bound flaky."""
    total = time.thread_time()
    for thread in threading.enumerate():
        if thread.name.startswith("large-request") and thread.ident is not None:
            try:
                total += time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
            except OSError:  # the thread ended between enumerate() and the read
                pass
    return total


def responses_body(chat_body: bytes, store: bool) -> bytes:
    """A chat completions body's messages as a Responses request's input items."""
    body = json.loads(chat_body)
    return json.dumps({"model": body["model"], "input": body["messages"], "store": store}).encode()


LARGE_REQUESTS = [(name, "/v2/chat/completions") for name in DEFAULT_SIZE_BODIES] + [
    ("many small messages, responses store=false", "/v2/responses"),
    ("many small messages, responses store=true", "/v2/responses")]


@pytest.mark.parametrize("name,path", LARGE_REQUESTS)
def test_parsing_and_decoding_a_default_max_body_leave_the_loop_free(tmp_path: Path, name: str, path: str) -> None:
    """At the default ``max_body_bytes`` (10 MiB), no step of the event loop that serves a hostile
    request -- the whole request: reading, JSON parse, decode, command scanning, the answer, freeing
    it -- runs for more than ``LOOP_STEP_BOUND`` of the server's CPU time (``server_cpu``; CPU time,
    not wall time: the machine running the suite may be loaded), so ``/health`` on the same loop
    answers within 100 ms. Before: one ``orjson.loads`` of the "many small messages" body held the loop 270-340
    ms, full garbage collections during its decode 105-211 ms each, freeing it at once 45-85 ms; one
    regex search of the command scanner over a 10 MB message without backticks 350 ms (route-append
    flood) and over 10 MB of short lines 150 ms; freeing a Responses body of as many input items
    at once 66-67 ms (the other front ends already freed theirs in parts)."""
    bodies = hostile_bench.hostile_bodies(10 * 1024 * 1024)
    if path == "/v2/responses":
        raw = responses_body(bodies["many small messages"], store=name.endswith("store=true"))
    else:
        raw = bodies[name]
    config = write_config(tmp_path, max_body_bytes=10 * 1024 * 1024)
    server = LiveServer(create_app(config, disable_auth=True)).start()
    state = {"on": True, "longest": 0.0}

    async def tick() -> None:
        last = server_cpu()
        while state["on"]:
            await asyncio.sleep(0)
            now = server_cpu()
            state["longest"], last = max(state["longest"], now - last), now

    try:
        ticker = asyncio.run_coroutine_threadsafe(tick(), server.loop())
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=600)
        conn.request("POST", path, raw, {"content-type": "application/json", "host": "localhost"})
        response = conn.getresponse()
        assert response.status == 200, response.read()[:300]
        assert response.read()
        conn.close()
        state["on"] = False
        ticker.result(timeout=10)
    finally:
        state["on"] = False
        server.stop()
        gc.unfreeze()  # the server's loop ended before the proxy's own unfreeze timer could run
    assert state["longest"] < LOOP_STEP_BOUND, f"{name}: {state['longest'] * 1000:.0f} ms"


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


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_a_large_conversation_is_answered_whole_before_it_is_let_go(client, frontend) -> None:
    """A body over ``offload.LARGE_BYTES`` is freed a part at a time after its answer (``let_go``):
    the answer, and the next request, are as for any other body."""
    turns = [("user" if n % 2 == 0 else "assistant", f"turn {n} " + "x" * 40) for n in range(8000)]
    turns.append(("user", "the last word"))
    first = chat(client, frontend, turns)
    assert reply_text(frontend, first) == "the last word"
    assert reply_text(frontend, chat(client, frontend, "and again")) == "and again"
