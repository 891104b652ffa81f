"""One record per client request, finished exactly once: usage store, metrics, access log.

The pipeline fills a :class:`RequestRecord` as the request goes (plan, attempts, usage, guard
events); :meth:`Recorder.finish` queues it, and :meth:`Recorder.drain` turns each finished request
into its usage row (:func:`usage_row`, the one row builder), metric updates and an access line.
Streams finish when the stream ends — also when it was cut off, failed or the client went away.
Everything flows one way: the store and the metrics never call back up here; whoever reads them
(the usage and metrics endpoints, shutdown) drains the recorder first.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ..wire import fastjson
from ..wire.canonical import Usage
from .attempt import Attempt
from .logs import AccessLog
from .metrics import Metrics
from .usage import AuditRecord, UsageRow, UsageStore, json_column

access_log = AccessLog("llm_proxy.access")
log = logging.getLogger("llm_proxy.usage")
ACCOUNT_DELAY = 0.05  # seconds a finished request may wait to be accounted (see Recorder.drain)
ACCOUNT_BATCH = 256  # ... or until this many are waiting


@dataclass(slots=True)
class RequestRecord:
    request_id: str
    frontend: str
    requested_model: str
    session_id: str | None = None
    caller: str | None = None
    stream: bool = False
    started: float = field(default_factory=time.perf_counter)
    ts: float = field(default_factory=time.time)
    rules: tuple[str, ...] = ()
    route_rule: str | None = None
    attempts: list[Any] = field(default_factory=list)
    backend: str | None = None
    model: str | None = None
    status: int = 200
    finish_reason: str | None = None
    usage: Usage | None = None
    ttfb: float | None = None  # seconds
    guard_events: list[dict[str, Any]] = field(default_factory=list)
    cache_hit: bool = False
    error: str | None = None
    error_kind: str | None = None
    finished: bool = False
    path: str = ""
    key_id: str | None = None  # label of the provider key that answered


def access_line(rec: RequestRecord, elapsed_ms: float) -> tuple[str, Callable[[], dict[str, Any]]]:
    """The access-log message of a finished request, and its fields for JSON logs (made on demand)."""
    line = (f"POST {rec.path or rec.frontend} {rec.status} {elapsed_ms:.1f}ms request={rec.request_id} "
            f"session={rec.session_id} rule={rec.route_rule or '-'} backend={rec.backend or '-'} model={rec.model or '-'}")
    if rec.error_kind:
        line += f" error={rec.error_kind}"
    return line, lambda: {
        "request_id": rec.request_id, "session": rec.session_id, "caller": rec.caller, "status": rec.status,
        "latency_ms": round(elapsed_ms, 1), "rules": rec.rules, "backend": rec.backend, "model": rec.model,
        "stream": rec.stream}


def _attempts_json(attempts: list[Any]) -> str:
    """The attempts column. One Attempt (most requests) is written from a dict: orjson reads a
    slots dataclass field by field, ~60% slower; the text is the same (tested)."""
    if len(attempts) == 1 and type(attempt := attempts[0]) is Attempt:
        return fastjson.dumps_str([{"backend": attempt.backend, "model": attempt.model, "status": attempt.status,
                                    "latency_ms": attempt.latency_ms, "key_id": attempt.key_id,
                                    "error": attempt.error, "picked_by": attempt.picked_by,
                                    "on_error": attempt.on_error}], default=str)
    return json_column(attempts)


def usage_row(rec: RequestRecord, usage: Usage, elapsed: float, cost: float | None, rules_json: str,
              attempts_json: str) -> UsageRow:
    """The usage row of a finished request (``elapsed`` in seconds): the only place one is built,
    by field name. The two JSON columns worth caching or special-casing per request come in made
    (:meth:`Recorder.store_usage`); the rest is read here.

    Speed trick (the one in this module): the fields are assigned on a blank row instead of
    passed as 24 keywords to ``UsageRow(...)``. Matching 24 keyword arguments measured ~16,000
    instructions per call (valgrind, CPython 3.11), ~3% of a request's instructions
    (``inprocess_bench.py --instructions``); 24 slot assignments cost a tenth of that.
    tests/router/record/test_recorder_row.py checks that every field is set and equals what
    ``UsageRow(...)`` would hold."""
    row = _blank_row(UsageRow)
    row.ts = rec.ts
    row.request_id = rec.request_id
    row.session_id = rec.session_id
    row.caller = rec.caller
    row.frontend = rec.frontend
    row.requested_model = rec.requested_model
    row.backend = rec.backend
    row.model = rec.model
    row.status = rec.status
    row.finish_reason = rec.finish_reason
    row.prompt_tokens = usage.prompt_tokens
    row.completion_tokens = usage.completion_tokens
    row.cached_tokens = usage.cached_tokens
    row.tokens_estimated = int(usage.estimated)
    row.latency_ms = round(elapsed * 1000, 3)
    ttfb = rec.ttfb
    row.ttfb_ms = round(ttfb * 1000, 3) if ttfb is not None else None
    row.stream = int(rec.stream)
    row.cache_hit = int(rec.cache_hit)
    row.cost = cost
    row.route_rule = rec.route_rule
    row.rules = rules_json
    row.attempts = attempts_json
    row.guard_events = json_column(rec.guard_events) if rec.guard_events else "[]"
    row.error = rec.error
    row.key_id = rec.key_id
    return row


_blank_row = object.__new__  # a UsageRow with no field set yet (usage_row sets them all)


_STATUS = {code: str(code) for code in (200, 400, 401, 403, 404, 408, 413, 429, 500, 502, 503, 504)}


def _field(attempt: Any, name: str) -> Any:
    """A field of an attempt, which is a dispatch Attempt or (from tests and tools) a dict."""
    return attempt.get(name) if isinstance(attempt, dict) else getattr(attempt, name, None)


class Recorder:
    def __init__(self, store: UsageStore, metrics: Metrics, prices: Mapping[str, Mapping[str, float]] | None = None) -> None:
        self.store = store
        self.metrics = metrics
        self.prices = prices or {}
        self._dropped_seen = -1
        self._up_seen: bool | None = None
        self._pending: list[tuple[RequestRecord, Usage, float, float]] = []

    def cost(self, model: str | None, usage: Usage) -> float | None:
        """Price per million tokens from config (``prices: {model: {input, output}}``); unknown → None."""
        price = self.prices.get(model or "")
        if price is None:
            return None
        return round(usage.prompt_tokens * float(price.get("input", 0)) / 1e6
                     + usage.completion_tokens * float(price.get("output", 0)) / 1e6, 8)

    def finish(self, rec: RequestRecord) -> None:
        if rec.finished:
            return
        rec.finished = True
        elapsed = time.perf_counter() - rec.started
        self._pending.append((rec, rec.usage or Usage(), elapsed, time.time()))
        if len(self._pending) == 1:
            try:
                asyncio.get_running_loop().call_later(ACCOUNT_DELAY, self.drain)
            except RuntimeError:  # no event loop (tools, sync tests): account at once
                self.drain()
        elif len(self._pending) >= ACCOUNT_BATCH:
            self.drain()

    def drain(self) -> None:
        """Usage rows, metric updates and access-log lines of every request finished so far.

        Finished requests are accounted in batches, at most ``ACCOUNT_DELAY`` seconds later: done
        one by one between requests, the same work measured about twice as expensive in the
        live proxy (a per-request detour through code and data that a batch keeps warm). Every
        reader of usage rows or metrics calls this first (the usage and metrics endpoints), and so
        does shutdown before it closes the store, so nothing is read stale and nothing is lost.
        """
        pending, self._pending = self._pending, []
        try:
            for rec, usage, elapsed, _ended in pending:
                # Attempts stay as they are (dataclasses or dicts): orjson writes both, and the
                # metrics only look inside them when something failed.
                self.store_usage(rec, usage, elapsed, rec.attempts)
            for rec, usage, elapsed, _ended in pending:
                self.count(rec, usage, elapsed, rec.attempts)
            if access_log.enabled():  # the access lines, each stamped with when its request ended
                access_log.info_many([(*access_line(rec, elapsed * 1000), ended) for rec, _usage, elapsed, ended in pending])
        except Exception:  # noqa: BLE001 - accounting must never break a reader, shutdown or the loop
            log.exception("accounting %d finished requests failed", len(pending))
        store = self.store
        dropped = store.dropped
        if dropped != self._dropped_seen:  # also when no request finished (a scrape drains too)
            self._dropped_seen = dropped
            self.metrics.usage_dropped.set(dropped)
        up = getattr(store, "up", None)  # PostgreSQL's writer: can it write? (SQLite: no such state)
        if up is not self._up_seen:
            self._up_seen = up
            self.metrics.usage_store_up.labels("postgresql").set(1 if up else 0)

    def store_usage(self, rec: RequestRecord, usage: Usage, elapsed: float, attempts: list[Any]) -> None:
        """Hand the store the request's usage row (priced only when it succeeded)."""
        cost = self.cost(rec.model, usage) if self.prices and rec.status < 400 else None
        self.store.record(usage_row(rec, usage, elapsed, cost, json_column(rec.rules), _attempts_json(attempts)))

    def count(self, rec: RequestRecord, usage: Usage, elapsed: float, attempts: list[Any]) -> None:
        """Metric updates for one finished request."""
        m = self.metrics
        model = m.model_label(rec.model or rec.requested_model)
        backend = rec.backend or "-"
        status = rec.status
        m.requests.inc((rec.frontend, backend, model, _STATUS.get(status) or str(status)))
        m.latency.observe((rec.frontend, backend), elapsed)
        if rec.ttfb is not None:
            m.ttfb.observe((backend,), rec.ttfb)
        if usage.prompt_tokens:
            m.tokens.inc((backend, model, "prompt"), usage.prompt_tokens)
        if usage.completion_tokens:
            m.tokens.inc((backend, model, "completion"), usage.completion_tokens)
        if len(attempts) == 1 and type(attempts[0]) is Attempt and attempts[0].status == "ok":
            failed: list[Any] = []  # most requests: one attempt, and it worked
        else:
            failed = [a for a in attempts if _field(a, "status") != "ok"]
        for attempt in failed:
            m.errors.inc((_field(attempt, "backend") or "-", _field(attempt, "status") or "-"))
        if failed and status < 400:
            m.failovers.inc((backend,))
        if status == 429:
            # The proxy's own limits refuse before any backend answers (such attempts take no
            # time); a 429 passed on from the providers is theirs.
            # (The pipeline audits the proxy's own rejections.)
            own = all(_field(a, "status") == "rate_limited" and not _field(a, "latency_ms") for a in attempts)
            m.rate_limited.inc(("proxy" if own else "upstream",))
        for event in rec.guard_events:
            m.guard_events.inc((event.get("kind", "-"),))

    def audit(self, type_: str, actor: str | None, outcome: str, **detail: Any) -> None:
        self.store.audit(AuditRecord(ts=time.time(), type=type_, actor=actor, outcome=outcome, detail=detail))
