"""``GET /v2/admin/runtime``: the process's own gauges, for soak runs and for operators chasing a leak.

Memory that grows under hours of traffic is found by watching the process (resident memory, open
file descriptors, asyncio tasks) next to the sizes of everything it keeps between requests:
sessions, tool-call histories, the response cache, the rule planner's memo, the session rule sets,
metric series, rate-limit buckets, the usage queue. Every one of those structures is bounded; this
report shows each size so a soak can see it level off (``benchmarks/soak.py`` samples it once a
second). It is an operator endpoint behind the same admin gate as ``/metrics``: sizes tell
nothing secret, but nothing here is for clients.

Reading the sizes is cheap (``len`` of a few dicts, ``/proc/self/statm``, a directory listing of
``/proc/self/fd``), so sampling does not disturb what it measures.
"""

from __future__ import annotations

import asyncio
import os
import resource
import sys
from typing import TYPE_CHECKING, Any

import falcon.asgi

from .admin import AdminGate
from .edge import logged

if TYPE_CHECKING:  # pragma: no cover
    from ..pipeline import Pipeline
    from ..state import StateRef


def rss_bytes() -> int:
    """Resident memory now (``/proc/self/statm``; the peak from ``getrusage`` where there is no /proc)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # pragma: no cover - not Linux
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def rss_anon_bytes() -> int | None:
    """The anonymous part of the resident memory (the heap and stacks, ``RssAnon`` in
    ``/proc/self/status``): what a leak grows. The rest of RSS is file pages (libraries, SQLite's
    mapped files) that the kernel may drop or bring back at any time. None where there is no /proc."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    return None  # pragma: no cover - not Linux


def open_fds() -> int | None:
    for folder in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(folder))
        except OSError:  # pragma: no cover - neither exists
            continue
    return None  # pragma: no cover


def _len(obj: Any) -> int | None:
    try:
        return len(obj)
    except TypeError:
        return None


def structure_sizes(ref: StateRef, pipeline: Pipeline) -> dict[str, int | None]:
    """The size of each bounded structure the process keeps between requests."""
    from dsl import session as session_rules

    state = ref.state
    metrics = ref.metrics
    store = ref.recorder.store
    limiter = state.dispatcher.limiter
    series = [metrics.requests, metrics.errors, metrics.failovers, metrics.latency, metrics.ttfb, metrics.tokens,
              metrics.rate_limited, metrics.guard_events]
    return {
        "sessions": _len(state.sessions),
        "tool_histories": len(pipeline.histories._histories),
        "response_cache": len(pipeline.cache),
        "plan_memo": len(state.ruleset._plans),
        "target_terms_memo": len(state.ruleset._terms),
        "session_rulesets": session_rules._compiled.cache_info().currsize,
        "session_chains": session_rules._chain.cache_info().currsize,
        "metric_series": sum(len(s.values) for s in series),
        "rate_limit_buckets": _len(getattr(limiter, "_buckets", ())) or 0,
        "rate_limit_inflight": _len(getattr(limiter, "_inflight", ())) or 0,
        "usage_queue": len(store._pending or ()),
        "recorder_pending": len(ref.recorder._pending),
        "auth_accepted": _len(getattr(state.auth, "_accepted", ())) or 0,
        "routing_stats": _len(getattr(state.dispatcher.stats, "_ttfb", ())) or 0,
        "stored_responses": _len(getattr(state.responses, "repository", ())) or 0,
    }


def runtime_report(ref: StateRef, pipeline: Pipeline) -> dict[str, Any]:
    """The gauges; the recorder hands over what it holds first (as before every read of metrics: the
    metrics never call back into it),
    so the metric series are those of every finished request."""
    ref.recorder.drain()
    return {
        "rss_bytes": rss_bytes(),
        "rss_anon_bytes": rss_anon_bytes(),
        "open_fds": open_fds(),
        "asyncio_tasks": len(asyncio.all_tasks()),
        "structures": structure_sizes(ref, pipeline),
    }


@logged
class RuntimeResource:
    def __init__(self, gate: AdminGate, ref: StateRef, pipeline: Pipeline) -> None:
        self.gate, self.ref, self.pipeline = gate, ref, pipeline

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        self.gate.authorize(req)
        resp.media = runtime_report(self.ref, self.pipeline)
