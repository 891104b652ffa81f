"""The proxy's own CPU per request, without sockets: where to look when proxy_bench.py's ratio is low.

python benchmarks/inprocess_bench.py [--requests 10000] [--rounds 5] [--profile] [--instructions]
                                     [--stream [--chunks N] [--pair CLIENT->PROVIDER] [--ttfb]]
                                     [--state memory|redis [--redis-url URL]] [--variant V] [--strategies]

Calls the ASGI app directly (no uvicorn, no network) with the full default path of proxy_bench.py:
auth, session, the shipped example rules, OpenAI in and out, guards, usage record, metrics and the
access log (to an in-memory stream). The backend is an OpenAI connector minus its socket: it
encodes the request to OpenAI JSON and decodes a canned OpenAI reply, so the wire work is counted.
Next to it, a bare Falcon app that reads the body and returns bytes: the least any Falcon app does.
Prints the best round of each (µs per request) and the difference — the proxy's own code.
``--profile`` adds a cProfile listing of the proxy (slower; use it for where, not how much).
``--instructions`` counts machine instructions per request instead of timing (valgrind's
callgrind, the difference between runs of 500 and 1,500 requests): slow (~1 min) but the same
from run to run, so a change can be compared on a noisy shared machine (A/B to ~0.5%).
``--stream`` measures a streamed request instead: the real OpenAI connector (its key handling,
SSE parsing and stream decoding) reads a canned 9-event OpenAI stream (``--chunks`` text chunks,
default 7, plus the finish chunk and ``[DONE]``), one upstream read per event as providers send
them, through the guards and the client's encoder to an ASGI ``send``; the bare app answers
with the same bytes as one SSE body per event. ``--stream --instructions`` counts that path.
``--variant group|fastest|least_busy|cheapest`` routes the request through a two-member group of
two socketless backends (``(up:bench-a | up2:bench-b)``, or that group with the strategy) instead of
the default backend; ``--strategies`` (with ``--instructions``) counts each variant and prints what
each strategy adds to a request over the plain group, in instructions and in µs: the difference
divided by the plain group's own instructions per µs (its callgrind count over its best timed round
in this same run), the issue's target being at most 5 µs.
``--state memory|redis`` is proxy_bench.py's Redis-state variant in process: the same path plus an
``rpm`` limit on the route, its state in this process or in the real Redis (``--redis-url``, under
a key prefix of this run, removed afterwards). The Redis calls are real round trips over a
socket: ``--instructions`` then counts the proxy's side of them (Redis' own work is not counted).
``--pair`` picks the client and provider formats of the stream (default ``openai->openai``; also
``responses->anthropic``, ``anthropic->openai``, ``openai->gemini``, the cross-format streams of
proxy_bench.py), each with its provider's canned stream of ``--chunks`` text deltas.
``--session-header`` sends ``x-session-id: bench-session`` with every request: the path of clients
that name their session (Claude Code, Codex), whose session is found and kept on every request,
where without it the session is a conversation key that is looked up and not found.
``--one-read`` hands the connector the whole upstream stream in one read instead of one read per
event (a short reply, or a fast network: what proxy_bench.py's fake upstream does at one stream).
``--ttfb`` measures each stream only up to its first body byte (the ASGI ``send`` of the first
``http.response.body``): what the proxy does before the client sees anything, the in-process
side of proxy_bench's "added TTFB". Timed, the rest of each stream is cancelled untimed; counted
(``--instructions``), the rest never runs (the requests stay suspended, the garbage collector is
off so that it does not walk them, and the process ends with ``os._exit``), so the count is
everything up to the first write plus the first step of the tasks started by then, without the
collector's share and without the hang-up watcher each suspended request would start once its
grace is over (``router/http/hangup.py``: under valgrind every request outlives it; a live
stream over within the grace never starts one).
``--parts-off usage,access_log,...`` switches parts of the default path off (``_proxy_variant.py``'s
``PARTS``, as ``feature_cost.py`` does live, each replaced by what it is switched to, the rest
left as they are): ``feature_cost.py --instructions`` counts what each part costs this way.
Live numbers are larger than these (cache effects of a busy process): use proxy_bench.py for
the targets, this for finding what to make cheaper.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import logging
import os
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import falcon.asgi  # noqa: E402

from backends.base import Backend  # noqa: E402
from backends.keys import KeyChoice  # noqa: E402
from router.wire import fastjson  # noqa: E402
from router.app import create_app  # noqa: E402
from router.wire.canonical import ChatRequest, ChatResponse  # noqa: E402
from router.config import load_config  # noqa: E402
from router.http import inprocess  # noqa: E402
from router.http.hangup import SCOPE_KEY as HANGUP  # noqa: E402
from router.record.logs import setup_logging  # noqa: E402
from router.state_store.client import drop_prefix  # noqa: E402
from router.wire import openai as wire  # noqa: E402

KEY = "bench-client-key"
BODY = json.dumps({"model": "bench", "messages": [{"role": "user", "content": "Say hello in one short sentence."}]}).encode()
STREAM_BODY = json.dumps({"model": "bench", "stream": True,
                          "messages": [{"role": "user", "content": "Say hello in one short sentence."}]}).encode()
REPLY = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1700000000, "model": "bench",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello from the benchmark upstream."},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20}}).encode()


class SocketlessOpenAI(Backend):
    """What an OpenAI connector does to a request and a reply, without the HTTP round trip."""

    async def complete(self, request: ChatRequest, keys: KeyChoice | None = None) -> ChatResponse:
        fastjson.dumps(wire.encode_request(request))
        return wire.decode_response(fastjson.loads(REPLY))

    def stream(self, request: ChatRequest, keys: KeyChoice | None = None) -> Any:  # pragma: no cover - not measured here
        raise NotImplementedError


def stream_frames(chunks: int) -> list[bytes]:
    """The OpenAI upstream's SSE events, one per read: ``chunks`` text chunks, the finish chunk, [DONE]."""
    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return b"data: " + json.dumps({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000,
                                       "model": "bench", "choices": [{"index": 0, "delta": delta,
                                                                      "finish_reason": finish}]}).encode() + b"\n\n"
    return [chunk({"role": "assistant", "content": ""}), *(chunk({"content": f"tok{i} "}) for i in range(chunks)),
            chunk({}, "stop"), b"data: [DONE]\n\n"][1:]


def anthropic_frames(chunks: int) -> list[bytes]:
    """An Anthropic Messages stream, one event per read, as benchmarks/_upstream.py sends it."""
    def event(name: str, data: dict[str, Any]) -> bytes:
        return f"event: {name}\ndata: ".encode() + json.dumps({"type": name, **data}).encode() + b"\n\n"
    return [event("message_start", {"message": {"id": "msg_bench", "type": "message", "role": "assistant",
                                                "model": "bench", "content": [], "stop_reason": None,
                                                "usage": {"input_tokens": 12, "output_tokens": 1}}}),
            event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
            *(event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": f"tok{i} "}})
              for i in range(chunks)),
            event("content_block_stop", {"index": 0}),
            event("message_delta", {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": chunks}}),
            event("message_stop", {})]


def gemini_frames(chunks: int) -> list[bytes]:
    """A Gemini ``streamGenerateContent?alt=sse`` stream, one candidate per read."""
    def candidate(text: str, last: bool) -> bytes:
        cand: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}
        data: dict[str, Any] = {"candidates": [cand], "modelVersion": "bench"}
        if last:
            cand["finishReason"] = "STOP"
            data["usageMetadata"] = {"promptTokenCount": 12, "candidatesTokenCount": chunks,
                                     "totalTokenCount": 12 + chunks}
        return b"data: " + json.dumps(data).encode() + b"\r\n\r\n"
    return [candidate(f"tok{i} ", i == chunks - 1) for i in range(chunks)]


# --pair: (client path, request body, backend name, the provider's frames)
PAIRS: dict[str, tuple[str, bytes, str, Any]] = {
    "openai->openai": ("/v2/chat/completions", STREAM_BODY, "up", stream_frames),
    "responses->anthropic": ("/v2/responses", json.dumps({"model": "ant:bench", "stream": True,
                                                          "input": "Say hello in one short sentence."}).encode(),
                             "ant", anthropic_frames),
    "anthropic->openai": ("/v2/messages", json.dumps({"model": "bench", "max_tokens": 64, "stream": True, "messages": [
        {"role": "user", "content": "Say hello in one short sentence."}]}).encode(), "up", stream_frames),
    "openai->gemini": ("/v2/chat/completions", json.dumps({"model": "gem:bench", "stream": True, "messages": [
        {"role": "user", "content": "Say hello in one short sentence."}]}).encode(), "gem", gemini_frames),
}


class CannedStream:
    """An aiohttp response's surface as the connector reads it, over canned SSE events."""

    status = 200

    def __init__(self, frames: list[bytes]) -> None:
        self.content = self
        self._frames = iter(frames)

    async def readany(self) -> bytes:
        return next(self._frames, b"")

    async def iter_any(self) -> Any:  # what the connector read before it read with ``readany``
        for frame in self._frames:
            yield frame

    def close(self) -> None:
        pass

    def release(self) -> None:
        pass


def socketless_streams(backend: Any, frames: list[bytes]) -> None:
    """``backend`` (the real OpenAI connector) with its HTTP send replaced by the canned stream."""
    async def send(method: str, url: str, key: str, body: Any, params: Any = None) -> CannedStream:
        fastjson.dumps(body)
        return CannedStream(frames)
    backend._send = send


async def call(app: Any, request_scope: dict[str, Any], body: bytes = BODY) -> int:
    status, _ = await inprocess.call(app, request_scope, body)
    await asyncio.sleep(0)  # let the usage writer and other tasks run, as in a server
    return status


async def first_byte(app: Any, request_scope: dict[str, Any], body: bytes, cancel: bool = True) -> float:
    """Seconds from the call to the first ``http.response.body`` send (``--ttfb``). The request is
    then cancelled (untimed), or with ``cancel=False`` left suspended in that send for good."""
    wrote = asyncio.get_running_loop().create_future()

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and not wrote.done():
            wrote.set_result(time.perf_counter())
            await asyncio.Event().wait()

    started = time.perf_counter()
    this_scope = dict(request_scope)
    task = asyncio.ensure_future(app(this_scope, inprocess.receive_once(body), send))
    first = await wrote
    hangup = this_scope.get(HANGUP)
    if hangup is not None:
        # As when the stream ends within its grace: no hang-up watcher later. A request left
        # suspended (``cancel=False``) would otherwise start one once its grace is over, and under
        # valgrind every request outlives it: a watcher task per stream counted as first-byte work.
        hangup._stop_watching()
    if cancel:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        await asyncio.sleep(0)
    else:
        _suspended.append(task)
    return first - started


_suspended: list[Any] = []  # --ttfb under valgrind: requests left in their first send


def _forget_suspended() -> None:
    """Drop the suspended requests and collect them (``--forget-every``, for py-spy runs of
    ``--only proxy --ttfb``: samples under this function are the teardown, not the path measured)."""
    _suspended.clear()
    gc.collect()


async def best_round(app: Any, request_scope: dict[str, Any], requests: int, rounds: int, body: bytes = BODY) -> float:
    for _ in range(500):
        assert await call(app, request_scope, body) == 200
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(requests):
            await call(app, request_scope, body)
        best = min(best, (time.perf_counter() - started) / requests * 1e6)
    return best


async def best_round_ttfb(app: Any, request_scope: dict[str, Any], requests: int, rounds: int, body: bytes) -> float:
    for _ in range(300):
        await first_byte(app, request_scope, body)
    best = float("inf")
    for _ in range(rounds):
        total = 0.0
        for _ in range(requests):
            total += await first_byte(app, request_scope, body)
        best = min(best, total / requests * 1e6)
    return best


class Bare:
    def __init__(self, frames: list[bytes] | None = None) -> None:
        self.frames = frames

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        await req.stream.read()
        if self.frames is None:
            resp.data = REPLY
            resp.content_type = "application/json"
            return
        resp.content_type = "text/event-stream"
        resp.stream = self.relay()

    async def relay(self) -> Any:
        for frame in self.frames or ():
            yield frame


def instructions_per_request(which: str, extra: tuple[str, ...] = (), runs: tuple[int, int] | None = None) -> float:
    """Instructions of 1,000 more requests: (run of 1,500) - (run of 500), over 1,000 (streams:
    200 more, 300 - 100; ``runs``: other request counts). The two runs go side by side (valgrind
    is single-threaded)."""
    import re
    import subprocess
    from concurrent.futures import ThreadPoolExecutor

    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind (apt install valgrind)")

    def count(requests: int) -> int:
        with tempfile.TemporaryDirectory() as out:
            done = subprocess.run(
                ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/cg.out", sys.executable, __file__,
                 "--only", which, "--requests", str(requests), *extra],
                capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"}, check=True)
        found = re.search(r"Collected : ([\d,]+)", done.stderr)
        if found is None:
            raise SystemExit(f"no instruction count in valgrind's output:\n{done.stderr[-2000:]}")
        return int(found.group(1).replace(",", ""))

    # A stream costs several requests' instructions: fewer of them give the same precision sooner.
    short_run, long_run = runs or ((100, 300) if "--stream" in extra else (500, 1500))
    with ThreadPoolExecutor(2) as pool:
        short, long = pool.map(count, (short_run, long_run))
    return (long - short) / (long_run - short_run)


# ``--variant``: the route of the benchmark's requests, a plain group or a strategy over the same members.
VARIANTS = {
    "group": "(up:bench-a | up2:bench-b)",
    "fastest": "fastest(up:bench-a | up2:bench-b)",
    "least_busy": "least_busy(up:bench-a | up2:bench-b)",
    "cheapest": "cheapest(up:bench-a | up2:bench-b)",
}


def variant_config(variant: str | None) -> str:
    """config.yaml lines beyond the default path's: a second backend and prices for the variants."""
    if variant is None:
        return ""
    return ("  up2:\n    type: openai-compatible\n    base_url: http://127.0.0.1:9/v1\n"
            "prices:\n  bench-a: {input: 2.5, output: 10}\n  bench-b: {input: 0.15, output: 0.6}\n")


async def strategy_costs(requests: int, rounds: int) -> None:
    """Instructions per request of each variant (callgrind), and the plain group's µs per request
    (best timed round, run here without valgrind) to turn the differences into µs."""
    counts = {name: instructions_per_request("proxy", ("--variant", name)) for name in VARIANTS}
    plain_us = await timed_variant("group", requests, rounds)
    per_us = counts["group"] / plain_us
    print(f"plain group: {counts['group']:,.0f} instructions, {plain_us:.1f} µs per request "
          f"(best of {rounds} rounds of {requests}): {per_us:,.0f} instructions per µs")
    for name in ("fastest", "least_busy", "cheapest"):
        added = counts[name] - counts["group"]
        print(f"  {name:10} {counts[name]:11,.0f} instructions  {added:+8,.0f} over the group = "
              f"{added / per_us:+.2f} µs   (target: at most 5 µs)")


async def timed_variant(variant: str, requests: int, rounds: int) -> float:
    work = Path(tempfile.mkdtemp())
    try:
        proxy, proxy_scope = await build_proxy(work, variant)
        return await best_round(proxy, proxy_scope, requests, rounds, BODY)
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def build_proxy(work: Path, variant: str | None, frames: list[bytes] | None = None,
                      body: bytes = BODY, state: argparse.Namespace | None = None, *, backend: str = "up",
                      path: str = "/v2/chat/completions") -> tuple[Any, dict[str, Any]]:
    """The proxy app on the default path (and the variant's route), started, and its request scope.
    ``state``: the parsed arguments when ``--state`` is given (an rpm limit on the route, the
    state in memory or in Redis)."""
    (work / "routes.d").mkdir()
    shutil.copy(ROOT / "routes.d" / "10-examples.yaml", work / "routes.d")
    if variant is not None:
        (work / "routes.d" / "05-variant.yaml").write_text(
            f"rules:\n  - name: variant\n    when: model == \"bench\"\n    route: {VARIANTS[variant]}\n")
    config_text = ("backends:\n  up:\n    type: openai-compatible\n    base_url: http://127.0.0.1:9/v1\n"
                   "  ant:\n    type: anthropic\n    base_url: http://127.0.0.1:9\n    api_key: upstream-key\n"
                   "  gem:\n    type: gemini\n    gemini_api_base_url: http://127.0.0.1:9\n    api_key: upstream-key\n"
                   f"{variant_config(variant)}default_backend: up\nauth:\n  api_keys: [{KEY}]\n")
    if state is not None and state.state:
        (work / "routes.d" / "20-limit.yaml").write_text("rules:\n  - name: bench-limit\n    limits: rpm(100000000)\n")
        # A generous timeout: under valgrind a round trip takes far longer than 50 ms of loop time.
        config_text += (f"state:\n  store: {state.state}\n  url: {state.redis_url}\n"
                        f"  prefix: {state.prefix or 'lipinproc'}\n  timeout_ms: 10000\n")
    (work / "config.yaml").write_text(config_text)
    config = load_config(str(work / "config.yaml"), env={})
    setup_logging("info", "text", [KEY])
    logging.getLogger().handlers[0].stream = io.StringIO()  # the access log, kept off the terminal
    if frames is not None:
        proxy = create_app(config)
        socketless_streams(proxy.state_ref.state.backends[backend], frames)
    else:
        backends = {"up": SocketlessOpenAI("up")} | ({"up2": SocketlessOpenAI("up2")} if variant else {})
        proxy = create_app(config, backends=backends)
    proxy.reloader.watch = False
    await inprocess.lifespan(proxy, "startup")
    headers = [(b"authorization", f"Bearer {KEY}".encode())]
    if getattr(state, "session_header", False):
        headers.append((b"x-session-id", b"bench-session"))
    return proxy, inprocess.request_scope(path, headers, body)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--instructions", action="store_true")
    parser.add_argument("--stream", action="store_true", help="a streamed request (see above)")
    parser.add_argument("--chunks", type=int, default=7, help="text chunks per stream (with --stream)")
    parser.add_argument("--state", choices=["memory", "redis"],
                        help="the Redis-state variant: an rpm limit on the route, state in memory or in Redis")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0", help="the Redis of --state redis")
    parser.add_argument("--prefix", help=argparse.SUPPRESS)  # the Redis key prefix (one per run)
    parser.add_argument("--variant", choices=list(VARIANTS), help="route through a group or strategy (see above)")
    parser.add_argument("--strategies", action="store_true", help="with --instructions: each strategy over the group")
    parser.add_argument("--pair", choices=sorted(PAIRS), default="openai->openai",
                        help="client and provider formats of the stream (with --stream)")
    parser.add_argument("--one-read", action="store_true",
                        help="the upstream's whole stream in one read (with --stream), as proxy_bench's fake "
                             "upstream sends a short reply")
    parser.add_argument("--ttfb", action="store_true", help="streams only up to their first body byte")
    parser.add_argument("--session-header", action="store_true", help="requests name their session (see above)")
    parser.add_argument("--parts-off", help="comma-separated parts of the default path to switch off "
                                            "(benchmarks/_proxy_variant.py PARTS; feature_cost.py --instructions)")
    parser.add_argument("--only", choices=["bare", "proxy"], help=argparse.SUPPRESS)  # one app, --requests once
    parser.add_argument("--forget-every", type=int, default=0, help=argparse.SUPPRESS)  # see _forget_suspended
    args = parser.parse_args()
    if args.ttfb and not args.stream:
        raise SystemExit("--ttfb measures streams: add --stream")
    if args.state == "redis" and not args.prefix:
        args.prefix = f"lipinproc-{os.getpid()}-{int(time.time())}"
        try:
            await main_with(args)
        finally:
            drop_prefix(args.redis_url, args.prefix)
        return
    await main_with(args)


async def main_with(args: argparse.Namespace) -> None:
    if args.parts_off is not None:
        from _proxy_variant import PARTS, install_parts

        off = {part for part in args.parts_off.split(",") if part}
        if off - set(PARTS):
            raise SystemExit(f"unknown parts {sorted(off - set(PARTS))}; known: {', '.join(PARTS)}")
        if not args.instructions:  # (counted, the runs under valgrind switch them)
            install_parts(off, static=True)  # (none off: the proxy as it is)
    if args.instructions and args.strategies:
        await strategy_costs(args.requests if args.requests != 10_000 else 5_000, args.rounds)
        return
    what = "request"
    if args.stream:
        what = f"stream ({args.pair}{', its upstream in one read' if args.one_read else ''}{', to its first byte' if args.ttfb else ''})"
    if args.instructions:
        extra: tuple[str, ...] = ("--stream", "--chunks", str(args.chunks), "--pair", args.pair) if args.stream else ()
        extra += ("--ttfb",) if args.ttfb else ()
        extra += ("--one-read",) if args.one_read else ()
        extra += ("--session-header",) if args.session_header else ()
        extra += ("--variant", args.variant) if args.variant else ()
        extra += ("--parts-off", args.parts_off) if args.parts_off is not None else ()
        if args.state:
            extra += ("--state", args.state, "--redis-url", args.redis_url, *(("--prefix", args.prefix) if args.prefix else ()))
        for which in ("bare", "proxy"):
            print(f"  {which:6} {instructions_per_request(which, extra):9,.0f} instructions per {what}")
        return
    work = Path(tempfile.mkdtemp())
    try:
        if args.stream and args.variant:
            raise SystemExit("--variant measures a JSON request (not with --stream)")
        path, body, backend, make_frames = PAIRS[args.pair] if args.stream else ("/v2/chat/completions", BODY, "up", None)
        frames = make_frames(args.chunks) if make_frames is not None else None
        if frames is not None and args.one_read:
            frames = [b"".join(frames)]
        proxy, proxy_scope = await build_proxy(work, args.variant, frames, body, args, backend=backend, path=path)
        bare = falcon.asgi.App()
        bare.add_route("/v1/chat/completions", Bare(frames))
        bare_scope = inprocess.request_scope("/v1/chat/completions", [], body)
        if args.only:  # under valgrind (see instructions_per_request): warm up, then exactly --requests
            app, only_scope = (bare, bare_scope) if args.only == "bare" else (proxy, proxy_scope)
            if args.ttfb:  # the requests stay suspended in their first send; nothing tears them down
                gc.disable()  # (the collector would walk every suspended request: a cost live servers do not have)
                for i in range(300 + args.requests):
                    await first_byte(app, only_scope, body, cancel=False)
                    if args.forget_every and i % args.forget_every == 0:
                        _forget_suspended()
                sys.stdout.flush()
                os._exit(0)
            for _ in range(300 + args.requests):
                await call(app, only_scope, body)
            return
        if args.ttfb:
            bare_us = await best_round_ttfb(bare, bare_scope, args.requests, args.rounds, body)
            proxy_us = await best_round_ttfb(proxy, proxy_scope, args.requests, args.rounds, body)
        else:
            bare_us = await best_round(bare, bare_scope, args.requests, args.rounds, body)
            proxy_us = await best_round(proxy, proxy_scope, args.requests, args.rounds, body)
        print(f"in process, best of {args.rounds} rounds of {args.requests} "
              f"{f'streams ({args.pair}, {args.chunks} text chunks)' if args.stream else 'requests'}"
              f"{', to the first byte' if args.ttfb else ''}:")
        print(f"  bare Falcon app (read body, return bytes)   {bare_us:7.1f} µs per request")
        print(f"  proxy, full default path, socketless backend {proxy_us:6.1f} µs per request")
        print(f"  the proxy's own code                         {proxy_us - bare_us:6.1f} µs per request")
        if args.profile:
            if args.ttfb:
                gc.disable()  # requests are left suspended (see --only): the collector would walk them all
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(args.requests):
                if args.ttfb:  # left suspended: the listing shows the path up to the first byte only
                    await first_byte(proxy, proxy_scope, body, cancel=False)
                else:
                    await call(proxy, proxy_scope, body)
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(30)
            print(out.getvalue())
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
