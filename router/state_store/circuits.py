"""Circuit breakers shared by instances: the failure count of each circuit lives in Redis
(raised and reset by one Lua script), every change is published, and each instance applies it to
its own :class:`router.http.health.HealthMonitor` state — so dispatch's ``allow`` stays a local
read (no round trip per request), and a request that succeeds on a healthy backend sends nothing.

Background health checks: before each round, an instance claims each backend for one interval
(SET NX PX); only the claimant checks it and publishes the result for the others to show.
Circuits are named by the string the monitor records (the backend today; a backend+model key
works unchanged).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Mapping

from .events import StateEvents

if TYPE_CHECKING:  # pragma: no cover
    from ..http.health import BackendStatus, HealthMonitor

log = logging.getLogger("llm_proxy.health")


class SharedCircuits:
    def __init__(self, events: StateEvents, monitor: "HealthMonitor") -> None:
        self.events = events
        self.monitor = monitor
        events.on("circuit", lambda m: self.apply_count(str(m.get("name")), int(m.get("failures") or 0)))
        events.on("check", self.apply_check)

    def outcome(self, name: str, failed: bool) -> None:
        """Count this outcome in the shared failure count, in the background (dispatch does not wait)."""
        idle_ms = int(self.monitor.open_seconds * 2000)

        async def send() -> None:
            self.apply_count(name, await self.events.circuit(name, failed, idle_ms))

        self.events.store.background("circuit", send)

    def apply_count(self, name: str, failures: int) -> None:
        """The shared failure count of ``name`` (after our own outcome, or another instance's)."""
        monitor = self.monitor
        status = monitor._get(name)
        if failures <= 0:
            if status.open_until:
                log.info("backend %s recovered (seen by another instance): circuit closed", name)
            status.failures, status.open_until, status.ok = 0, 0.0, True
            return
        status.failures = max(status.failures, failures)
        if status.failures >= monitor.failure_threshold and (
                not status.open_until or monitor.clock() >= status.open_until):
            log.warning("backend %s failing (%d in a row across instances): circuit open for %ss",
                        name, status.failures, monitor.open_seconds)
            status.ok = False
            status.open_until = monitor.clock() + monitor.open_seconds

    async def claim_checks(self, backends: Mapping[str, Any], interval: float) -> dict[str, Any]:
        """The backends this instance checks in this round (the others are checked elsewhere)."""
        claimed = {}
        for name, backend in backends.items():
            if await self.events.claim(f"hc:{name}", int(interval * 1000)):
                claimed[name] = backend
        return claimed

    def checked(self, name: str, status: "BackendStatus") -> None:
        self.events.publish("check", name=name, ok=status.ok, latency_ms=status.latency_ms,
                            error=status.last_error, at=status.checked_at)

    def apply_check(self, message: dict[str, Any]) -> None:
        """A background check another instance ran: its result, shown here too."""
        monitor = self.monitor
        name = str(message.get("name"))
        if name not in monitor.ref.state.backends:
            return
        status = monitor._get(name)
        status.checked_at = message.get("at")
        status.latency_ms = message.get("latency_ms")
        if not message.get("ok"):
            status.ok, status.last_error = False, message.get("error")
        monitor.metrics.backend_up.labels(name).set(1 if status.ok else 0)
