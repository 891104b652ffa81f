"""The proxy or the pass-through with a clock at each step of a stream's way to its first byte.

python benchmarks/_stamped.py proxy|passthrough OUT.json ARGS...
(ARGS: the proxy's command line, or _passthrough.py's PORT UPSTREAM_URL aiohttp)

Wraps, in this process only, the points a streamed request passes on its way to the client's
first body byte: the request's bytes arriving (uvicorn's protocol), the upstream request written
and the first upstream bytes read (aiohttp's writer and protocol), for the proxy also its stages
before the upstream request (the responder, the body decoded, the session, commands, plan, guards,
dispatch, the connector's send) and after it (the upstream response handed back by
``HttpBackend.call``, its first event decoded by ``EventStream.__anext__``, the reply made by
``serve_chat``), then the reply's head and first body written (uvicorn's send). Each stamp costs
well under a microsecond; the proxy's own total is read a few µs high. On SIGUSR1 it writes the median of each step over the requests so far (the first 20
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


def wrap_async(owner: Any, attr: str, after: str | None = None, before: str | None = None) -> None:
    original = getattr(owner, attr)

    async def stamped(*args: Any, **kwargs: Any) -> Any:
        if before:
            mark(before)
        result = await original(*args, **kwargs)
        if after:
            mark(after)
        return result
    setattr(owner, attr, stamped)


def wrap_after(owner: Any, attr: str, after: str) -> None:
    original = getattr(owner, attr)

    def stamped(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
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
    import router.pipeline
    import router.pipeline.dispatch
    import router.pipeline.session

    # Before the upstream request: Falcon and the middleware (auth), then the pipeline's stages.
    # (Module functions are wrapped where their caller looks them up.)
    resources, pipeline = router.http.resources, router.pipeline
    wrap_async(resources.ChatResource, "on_post", before="responder called")
    wrap_async(resources, "read_chat", "body decoded")
    wrap_async(pipeline.Pipeline, "chat", before="pipeline entered")
    wrap_after(router.pipeline.session, "conversation_key", "conversation key")
    wrap_async(pipeline, "resolve_session", "session found")
    wrap_async(pipeline.Pipeline, "_commands", "commands scanned")
    wrap_after(pipeline.Pipeline, "_plan", "planned")
    wrap_async(pipeline.Pipeline, "_guards", "guards built")
    wrap_async(router.pipeline.dispatch.Dispatcher, "stream", before="dispatch entered")
    wrap_sync(backends.http.HttpBackend, "_send", "connector sends")
    STEPS[1:1] = ["responder called", "body decoded", "pipeline entered", "conversation key", "session found",
                  "commands scanned", "planned", "guards built", "dispatch entered", "connector sends"]
    # After the upstream's first bytes.
    wrap_async(backends.http.HttpBackend, "call", "upstream response handed back")
    wrap_async(backends.http.EventStream, "__anext__", "first event decoded")
    wrap_async(resources, "serve_chat", "reply made")
    STEPS[-2:-2] = ["upstream response handed back", "first event decoded", "reply made"]


def report(*_: Any) -> None:
    done = [m for m in marks[20:] if all(step in m for step in STEPS)]
    steps = {f"{a} -> {b}": statistics.median((m[b] - m[a]) / 1000 for m in done) for a, b in zip(STEPS, STEPS[1:])}
    for a, b in (("request in", "upstream request written"), ("upstream bytes read", "head written"),
                 ("request in", "first body written")):
        steps[f"{a} -> {b}"] = statistics.median((m[b] - m[a]) / 1000 for m in done)
    OUT.write_text(json.dumps({"requests": len(done), "steps_us": steps}))


signal.signal(signal.SIGUSR1, report)
if WHO == "proxy":
    from router.cli import main

    sys.exit(main(ARGS))
sys.argv = [str(HERE / "_passthrough.py"), *ARGS]
runpy.run_path(str(HERE / "_passthrough.py"), run_name="__main__")
