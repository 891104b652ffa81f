"""The proxy with parts of its default path switchable, for on/off comparisons in one benchmark run.

python benchmarks/_proxy_variant.py switchable --config FILE --port P
python benchmarks/_proxy_variant.py parts FILE_OF_PARTS --config FILE --port P
  switchable: usage records and metric updates on; SIGUSR2 switches them off, SIGUSR1 on again.
              Comparing one process with itself keeps differences between processes (memory
              layout, hash seeds, what each has served before) out of a small difference.
  parts:      every part of the default path on; SIGUSR2 switches off the parts named in
              FILE_OF_PARTS (comma-separated, read at each signal), SIGUSR1 turns all on again.
              ``request_path`` (``DIAGNOSTIC_PARTS``, installed only when the environment has
              ``LIP_BENCH_REQUEST_PATH=1``) switches off the whole request path: what is left is
              the pass-through's work in the proxy's own process.
              The parts (``PARTS``) are the per-request work a plain request does beyond
              forwarding, which an operator could do without: ``feature_cost.py`` measures what
              each costs. Switched off, a part is skipped as if it did not exist (a measuring aid,
              not a mode of the proxy: nothing of it is configurable).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import router.record.recorder as recording  # noqa: E402

# The per-request work of a plain request beyond forwarding it: what each does.
PARTS = {
    "usage": "the usage row and the metric updates of each request (Recorder.store_usage, .count)",
    "access_log": "the access-log line of each request",
    "conversation": "finding the session of a request that names none (the conversation key and its lookup); "
                    "such requests get a blank session",
    "routing_stats": "the routing statistics (what fastest/least_busy read) and the health monitor's record",
    "response_guards": "the agent guards' look at each reply (guard_response)",
}
# Measured only when named: not a part one could do without, the yardstick of the others.
DIAGNOSTIC_PARTS = {
    "request_path": "the whole request path (decoding, session, rules, guards, dispatch, encoding, accounting): "
                    "the body is forwarded to the default backend and its reply returned as it came, as the "
                    "pass-through does, in this same proxy process (its server, middleware and protocol)",
}


def install_parts(off: set[str], diagnostic: bool = False, static: bool = False) -> None:
    """Wrap each part's entry point so that it is skipped while its name is in ``off``; with
    ``diagnostic`` also the request path (``DIAGNOSTIC_PARTS``). ``static``: ``off`` is fixed for
    the process (``inprocess_bench.py --parts-off``): the parts in it are replaced, the others left
    as they are, without the switch's own call per use (which counted ~4% of a request's
    instructions with every switch in place)."""
    import router.pipeline as pipeline
    import router.routing_stats as routing_stats
    from router.http.health import HealthMonitor
    from router.pipeline import session as session_stage
    from router.sessions import Session

    def switched(owner: object, name: str, part: str, replacement):  # type: ignore[no-untyped-def]
        if static:
            if part in off:
                setattr(owner, name, replacement)
            return
        original = getattr(owner, name)

        def run(*args, **kwargs):  # type: ignore[no-untyped-def]
            return (replacement if part in off else original)(*args, **kwargs)
        setattr(owner, name, run)

    def nothing(*_args, **_kwargs) -> None:  # type: ignore[no-untyped-def]
        return None

    switched(recording.Recorder, "store_usage", "usage", nothing)
    switched(recording.Recorder, "count", "usage", nothing)
    switched(recording.AccessLog, "enabled", "access_log", lambda _self: False)
    resolve = session_stage.resolve_session

    async def blank_session(ex):  # type: ignore[no-untyped-def]
        ctx = ex.ctx
        if session_stage.sent_session_id(ctx.headers, ctx.session_hint) is not None or ex.state.sessions.speculative:
            return await resolve(ex)  # a named session (or a shared store): as always
        ctx.session_id = ex.record.session_id = "anonymous"
        ex.session_source, ex.anonymous = session_stage.CONVERSATION, True
        ex.session = Session(id="anonymous", owner=ctx.caller)
        ex.headers = {"x-request-id": ctx.request_id}
    switched(pipeline, "resolve_session", "conversation", blank_session)
    for name in ("started", "finished", "observe_ttfb"):
        switched(routing_stats.InProcessRoutingStats, name, "routing_stats", nothing)
    switched(HealthMonitor, "record", "routing_stats", nothing)

    async def unguarded(ex, response):  # type: ignore[no-untyped-def]
        return response
    switched(pipeline, "guard_response", "response_guards", unguarded)
    if diagnostic:
        install_request_path_switch(off)


def install_request_path_switch(off: set[str]) -> None:
    """``request_path`` off: chat requests do only what the pass-through does. Falcon wants its
    responders to be coroutine functions, so this one is wrapped by one that always runs (one
    coroutine call more per request, on and off alike)."""
    from router.http.resources import ChatResource

    serve = ChatResource.on_post

    async def forward(resource, req, resp):  # type: ignore[no-untyped-def]
        state = resource.ref.state
        backend = state.backends[state.config.default_backend]
        body = await req.stream.read()
        async with backend.session.post(f"{backend.base_url}/chat/completions", data=body,
                                        headers={"Content-Type": "application/json"}) as reply:
            resp.data = await reply.read()
            resp.status = reply.status
        resp.content_type = "application/json"

    async def on_post(resource, req, resp):  # type: ignore[no-untyped-def]
        await (forward if "request_path" in off else serve)(resource, req, resp)
    ChatResource.on_post = on_post  # type: ignore[method-assign]


def main() -> None:
    variant = sys.argv[1] if len(sys.argv) > 1 else ""
    off: set[str] = set()
    if variant == "switchable":  # the usage part alone (proxy_bench.py's recording cost)
        signal.signal(signal.SIGUSR1, lambda *_: off.discard("usage"))
        signal.signal(signal.SIGUSR2, lambda *_: off.add("usage"))
        install_parts(off)
        args = sys.argv[2:]
    elif variant == "parts":
        parts_file, args = Path(sys.argv[2]), sys.argv[3:]

        def switch_off(*_: object) -> None:
            names = set(filter(None, parts_file.read_text().strip().split(",")))
            unknown = names - set(PARTS) - set(DIAGNOSTIC_PARTS)
            if unknown:  # (feature_cost.py checks the names before it writes them)
                print(f"unknown parts {sorted(unknown)}; known: {', '.join([*PARTS, *DIAGNOSTIC_PARTS])}",
                      file=sys.stderr)
            off.clear()
            off.update(names)

        signal.signal(signal.SIGUSR2, switch_off)
        signal.signal(signal.SIGUSR1, lambda *_: off.clear())
        # The request-path switch wraps every chat request in one more coroutine: only when asked for.
        install_parts(off, diagnostic=os.environ.get("LIP_BENCH_REQUEST_PATH") == "1")
    else:
        raise SystemExit(f"unknown variant {variant!r}")

    from router.cli import main as serve  # noqa: PLC0415 - after the patches

    sys.exit(serve(args))


if __name__ == "__main__":
    main()
