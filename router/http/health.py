"""Backend health: background checks, and a circuit breaker that dispatch consults.

Each backend is checked on an interval (its connector's cheap ``health()``), and at once when
requests to it fail several times in a row. After ``failure_threshold`` consecutive failures the
circuit opens: dispatch skips the backend (falling over to the next target) for ``open_seconds``,
then lets one request through (half-open); a success closes the circuit, a failure re-opens it.
When every target of a request is open, dispatch still tries them rather than fail unasked.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from ..tasks import cancel_and_wait

if TYPE_CHECKING:  # pragma: no cover
    from ..record.metrics import Metrics
    from ..state import StateRef


log = logging.getLogger("llm_proxy.health")


@dataclass(slots=True)
class BackendStatus:
    ok: bool = True
    latency_ms: float | None = None
    last_error: str | None = None
    checked_at: float | None = None
    failures: int = 0  # consecutive failed requests or checks
    open_until: float = 0.0  # circuit open until (monotonic); 0 = closed
    probing: bool = False  # half-open: one request is testing the backend

    def state(self, now: float) -> str:
        if not self.open_until:
            return "closed"
        return "open" if now < self.open_until else "half_open"


class HealthMonitor:
    """Checks the current state's backends (``ref.state``: a reload may add or remove some) and
    reports them in ``metrics``; dispatch consults :meth:`allow` and reports with :meth:`record`."""

    def __init__(self, ref: "StateRef", metrics: "Metrics", *, interval: float = 30.0, failure_threshold: int = 3,
                 open_seconds: float = 30.0, check_timeout: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ref = ref
        self.metrics = metrics
        self.interval = interval
        self.failure_threshold = failure_threshold
        self.open_seconds = open_seconds
        self.check_timeout = check_timeout
        self.clock = clock
        self.status: dict[str, BackendStatus] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def _get(self, backend: str) -> BackendStatus:
        status = self.status.get(backend)
        if status is None:
            status = self.status[backend] = BackendStatus()
        return status

    # ---- circuit breaker (called by dispatch) --------------------------------------------------

    def allow(self, backend: str) -> bool:
        status = self.status.get(backend)
        if status is None or not status.open_until:
            return True
        if self.clock() < status.open_until or status.probing:
            return False
        status.probing = True  # half-open: this request is the probe
        return True

    def record(self, backend: str, ok: bool, kind: str | None = None) -> None:
        """A request's outcome. Client errors (bad request, not found) say nothing about health."""
        if kind in ("bad_request", "not_found"):
            return
        status = self._get(backend)
        status.probing = False
        if ok:
            if status.open_until:
                log.info("backend %s recovered: circuit closed", backend)
            status.failures, status.open_until, status.ok = 0, 0.0, True
            return
        status.failures += 1
        status.last_error = kind
        if status.failures >= self.failure_threshold:
            if not status.open_until or self.clock() >= status.open_until:
                log.warning("backend %s failing (%d in a row, last: %s): circuit open for %ss",
                            backend, status.failures, kind, self.open_seconds)
            status.ok = False
            status.open_until = self.clock() + self.open_seconds
            self._wake.set()  # check it now, not at the next interval

    # ---- background checks ---------------------------------------------------------------------

    async def check_all(self) -> None:
        """Probe every backend whose config leaves ``health_check`` on (a backend that bills per
        call, or has no cheap probe, sets it off: it is then judged by real requests alone)."""
        state = self.ref.state
        configs = state.config.backends
        backends = {name: b for name, b in state.backends.items()
                    if name not in configs or configs[name].health_check}
        results = await asyncio.gather(*(self._check(name, b) for name, b in backends.items()), return_exceptions=True)
        for name, result in zip(backends, results):
            if isinstance(result, BaseException):
                self._set(name, False, None, type(result).__name__)

    async def _check(self, name: str, backend: Any) -> None:
        try:
            health = await asyncio.wait_for(backend.health(), self.check_timeout)
        except asyncio.TimeoutError:
            self._set(name, False, None, "timeout")
            return
        self._set(name, health.ok, health.latency_ms, health.error)

    def _set(self, name: str, ok: bool, latency_ms: float | None, error: str | None) -> None:
        status = self._get(name)
        status.checked_at = time.time()
        status.latency_ms = round(latency_ms, 3) if latency_ms is not None else None
        if ok:
            self.record(name, True)
        else:
            # A failed check counts like a failed request: a backend that stays down opens its
            # circuit even when no traffic reaches it, and dispatch skips it until a check passes.
            self.record(name, False, error or "check_failed")
            status.ok, status.last_error = False, error
        self.metrics.backend_up.labels(name).set(1 if status.ok else 0)

    async def _run(self) -> None:
        while True:
            try:
                await self.check_all()
            except Exception:  # noqa: BLE001 - monitoring must never die
                log.exception("health check round failed")
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval)
            except asyncio.TimeoutError:
                pass

    async def start(self) -> None:
        if self._task is None:
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    def report(self) -> dict[str, Any]:
        now = self.clock()
        out: dict[str, Any] = {}
        for name in self.ref.state.backends:
            s = self._get(name)
            out[name] = {"ok": s.ok, "state": s.state(now), "latency_ms": s.latency_ms, "last_error": s.last_error,
                         "checked_at": s.checked_at, "consecutive_failures": s.failures}
        return out
