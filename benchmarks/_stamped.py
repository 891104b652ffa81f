"""The proxy or the pass-through with a clock at each step of a stream's way to its first byte.

python benchmarks/_stamped.py proxy|passthrough OUT.json ARGS...
(ARGS: the proxy's command line, or _passthrough.py's PORT UPSTREAM_URL aiohttp)

Wraps, in this process only, the points a streamed request passes on its way to the client's
first body byte: the request's bytes arriving (uvicorn's protocol), the upstream request written
and the first upstream bytes read (aiohttp's writer and protocol), for the proxy also the upstream
response handed back (``HttpBackend.call``), its first event decoded (``EventStream.__anext__``)
and the reply made (``serve_chat``), then the reply's head and first body written (uvicorn's
send). On SIGUSR1 it writes the median of each step over the requests so far (the first 20
skipped) to OUT.json. For ``ttfb_segments.py``; one request at a time (the clock keeps the
latest request's marks only).
"""

from __future__ import annotations

import json
import runpy
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp.client_proto
import aiohttp.http_writer
import uvicorn.protocols.http.httptools_impl as uvicorn_http

WHO, OUT, ARGS = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
HERE = Path(__file__).resolve().parent
clock = time.perf_counter_ns
marks: list[dict[str, int]] = []


def mark(name: str) -> None:
    if marks:
        marks[-1].setdefault(name, clock())


def wrap_sync(owner: Any, attr: str, before: str | None = None) -> None:
    original = getattr(owner, attr)

    def stamped(self: Any, *args: Any) -> Any:
        if before:
            mark(before)
        return original(self, *args)
    setattr(owner, attr, stamped)


def wrap_async(owner: Any, attr: str, after: str) -> None:
    original = getattr(owner, attr)

    async def stamped(*args: Any, **kwargs: Any) -> Any:
        result = await original(*args, **kwargs)
        mark(after)
        return result
    setattr(owner, attr, stamped)


original_received = uvicorn_http.HttpToolsProtocol.data_received


def received(self: Any, data: bytes) -> None:
    if data.startswith(b"POST"):
        marks.append({"request in": clock()})
    original_received(self, data)


uvicorn_http.HttpToolsProtocol.data_received = received  # type: ignore[method-assign]
original_send = uvicorn_http.RequestResponseCycle.send


async def sent(self: Any, message: dict[str, Any]) -> None:
    await original_send(self, message)
    if message["type"] == "http.response.start":
        mark("head written")
    elif message["type"] == "http.response.body" and message.get("body"):
        mark("first body written")


uvicorn_http.RequestResponseCycle.send = sent  # type: ignore[method-assign]
wrap_sync(aiohttp.http_writer.StreamWriter, "_write", "upstream request written")
wrap_sync(aiohttp.http_writer.StreamWriter, "_writelines", "upstream request written")
wrap_sync(aiohttp.client_proto.ResponseHandler, "data_received", "upstream bytes read")
STEPS = ["request in", "upstream request written", "upstream bytes read", "head written", "first body written"]
if WHO == "proxy":
    import backends.http
    import router.http.resources

    wrap_async(backends.http.HttpBackend, "call", "upstream response handed back")
    wrap_async(backends.http.EventStream, "__anext__", "first event decoded")
    wrap_async(router.http.resources, "serve_chat", "reply made")
    STEPS[3:3] = ["upstream response handed back", "first event decoded", "reply made"]


def report(*_: Any) -> None:
    done = [m for m in marks[20:] if all(step in m for step in STEPS)]
    steps = {f"{a} -> {b}": statistics.median((m[b] - m[a]) / 1000 for m in done) for a, b in zip(STEPS, STEPS[1:])}
    for a, b in (("upstream bytes read", "head written"), ("request in", "first body written")):
        steps[f"{a} -> {b}"] = statistics.median((m[b] - m[a]) / 1000 for m in done)
    OUT.write_text(json.dumps({"requests": len(done), "steps_us": steps}))


signal.signal(signal.SIGUSR1, report)
if WHO == "proxy":
    from router.cli import main

    sys.exit(main(ARGS))
sys.argv = [str(HERE / "_passthrough.py"), *ARGS]
runpy.run_path(str(HERE / "_passthrough.py"), run_name="__main__")
