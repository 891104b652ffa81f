"""Circuit breakers shared by instances: the failure count of each circuit lives in Redis
(raised and reset by one Lua script), every change is published, and each instance applies it to
its own :class:`router.http.health.HealthMonitor` state — so dispatch's ``allow`` stays a local
read (no round trip per request), and a request that succeeds on a healthy backend sends nothing.

Background health checks: before each round, an instance claims each backend for one interval
(SET NX PX); only the claimant checks it and publishes the result for the others to show.
Circuits are kept per backend and per model of it (``router/circuits.py``); in Redis and in the
messages a circuit is named ``backend`` (the backend's own) or ``backend|model``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Mapping

from ..circuits import WHOLE_BACKEND, Circuit
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

    def outcome(self, backend: str, model: str, failed: bool) -> None:
        """Count this outcome of the circuit of ``model`` of ``backend`` (``WHOLE_BACKEND``: the
        backend's own) in the shared failure count, in the background (dispatch does not wait)."""
        idle_ms = int(self.monitor.open_seconds * 2000)
        name = circuit_name(backend, model)

        async def send() -> None:
            self.apply_count(name, await self.events.circuit(name, failed, idle_ms))

        self.events.store.background("circuit", send)

    def apply_count(self, name: str, failures: int) -> None:
        """The shared failure count of circuit ``name`` (after our own outcome, or another instance's)."""
        monitor = self.monitor
        backend, _, model = name.partition(SEPARATOR)
        circuits = monitor.circuits
        circuit = circuits.get(backend, model)
        if failures <= 0:
            if circuit is not None:
                if circuit.open_until:
                    log.info("backend %s%s recovered (seen by another instance): circuit closed", backend,
                             f" model {model}" if model else "")
                circuits.clear(backend, model)
            if model == WHOLE_BACKEND and backend in monitor.status:
                monitor.status[backend].ok = True
            return
        circuit = circuit or Circuit()
        circuit.failures = max(circuit.failures, failures)
        if circuit.failures >= monitor.failure_threshold and (
                not circuit.open_until or monitor.clock() >= circuit.open_until):
            log.warning("backend %s%s failing (%d in a row across instances): circuit open for %ss",
                        backend, f" model {model}" if model else "", circuit.failures, monitor.open_seconds)
            circuit.open_until = monitor.clock() + monitor.open_seconds
            if model == WHOLE_BACKEND:
                monitor._get(backend).ok = False
        circuits.put(backend, model, circuit)

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


SEPARATOR = "|"  # backend names have no "|"; model names may have ":" and "/"


def circuit_name(backend: str, model: str) -> str:
    return backend if model == WHOLE_BACKEND else f"{backend}{SEPARATOR}{model}"
