"""Backend health: background checks, and a circuit breaker that dispatch consults.

Each backend is checked on an interval (its connector's cheap ``health()``), and at once when
its own circuit opens. A circuit is per (backend, model) (:mod:`router.circuits`): after
``failure_threshold`` consecutive failures of a model it opens and dispatch skips that model of
that backend (falling over to the next target) for ``open_seconds``, then lets one request through
(half-open); a success closes it, a failure re-opens it. Connection failures and failed checks
count against the backend's own circuit, which skips every model. When every target of a request
is open, dispatch still tries them rather than fail unasked.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from ..circuits import WHOLE_BACKEND, Circuit, CircuitStore, InMemoryCircuitStore
from ..tasks import cancel_and_wait

if TYPE_CHECKING:  # pragma: no cover
    from ..record.metrics import Metrics
    from ..state_store.circuits import SharedCircuits
    from ..state import StateRef


log = logging.getLogger("llm_proxy.health")


# Failures that say the backend itself is unreachable, whatever the model: they count against
# the backend's own circuit. Every other failure (5xx, 429, timeouts, auth) is the model's.
BACKEND_WIDE = frozenset({"connection"})
# Failures that are the client's to fix say nothing about health.
NOT_HEALTH = frozenset({"bad_request", "not_found"})


@dataclass(slots=True)
class BackendStatus:
    """The last background check of a backend (the circuits are in the :class:`CircuitStore`)."""

    ok: bool = True
    latency_ms: float | None = None
    last_error: str | None = None
    checked_at: float | None = None


class HealthMonitor:
    """Checks the current state's backends (``ref.state``: a reload may add or remove some) and
    reports them in ``metrics``; dispatch consults :meth:`allow` and reports with :meth:`record`.

    Circuits are per (backend, model), kept in ``circuits``: a model's failures open that model's
    circuit; connection failures and failed checks open the backend's own (every model skipped).
    """

    def __init__(self, ref: "StateRef", metrics: "Metrics", *, interval: float = 30.0, failure_threshold: int = 3,
                 open_seconds: float = 30.0, check_timeout: float = 10.0,
                 clock: Callable[[], float] = time.monotonic, circuits: CircuitStore | None = None) -> None:
        self.ref = ref
        self.metrics = metrics
        self.interval = interval
        self.failure_threshold = failure_threshold
        self.open_seconds = open_seconds
        self.check_timeout = check_timeout
        self.clock = clock
        self.circuits: CircuitStore = circuits if circuits is not None else InMemoryCircuitStore()
        self.status: dict[str, BackendStatus] = {}
        self.shared: "SharedCircuits | None" = None  # several instances on one Redis (state_store/circuits.py)
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        if metrics is not None:
            metrics.registry.register(_ScopeCollector(self))

    def _get(self, backend: str) -> BackendStatus:
        status = self.status.get(backend)
        if status is None:
            status = self.status[backend] = BackendStatus()
        return status

    def circuit(self, backend: str, model: str = WHOLE_BACKEND) -> Circuit:
        """The circuit of ``backend`` (``model`` given: of that model of it); a closed one when none is kept."""
        return self.circuits.get(backend, model) or Circuit()

    # ---- circuit breaker (called by dispatch) --------------------------------------------------

    def _blocked(self, circuit: Circuit | None, now: float) -> bool:
        if circuit is None or not circuit.open_until:
            return False
        return now < circuit.open_until or circuit.probing

    def allow(self, backend: str, model: str = WHOLE_BACKEND) -> bool:
        """May a request call ``model`` of ``backend`` now? Neither the backend's circuit nor the
        model's may be open; a half-open one lets this request through as its single probe."""
        circuits = self.circuits
        whole = circuits.get(backend, WHOLE_BACKEND)
        own = circuits.get(backend, model) if model != WHOLE_BACKEND else None
        if whole is None and own is None:
            return True
        now = self.clock()
        if self._blocked(whole, now) or self._blocked(own, now):
            return False
        for scope, circuit in ((WHOLE_BACKEND, whole), (model, own)):
            if circuit is not None and circuit.open_until:
                circuit.probing = True  # half-open: this request is the probe
                circuits.put(backend, scope, circuit)
        return True

    def record(self, backend: str, ok: bool, kind: str | None = None, model: str = WHOLE_BACKEND) -> None:
        """A request's outcome for ``model`` of ``backend`` (a check's: the backend's own)."""
        if kind in NOT_HEALTH:
            return
        circuits = self.circuits
        whole = circuits.get(backend, WHOLE_BACKEND)
        own = circuits.get(backend, model) if model != WHOLE_BACKEND else None
        shared = self.shared  # several instances: each circuit's count is shared (state_store/circuits.py)
        if ok:
            for scope, circuit in ((WHOLE_BACKEND, whole), (model, own)):
                if circuit is not None:
                    if circuit.open_until:
                        log.info("backend %s%s recovered: circuit closed", backend, _of(scope))
                    circuits.clear(backend, scope)
                    if shared is not None:
                        shared.outcome(backend, scope, False)
            status = self.status.get(backend)
            if status is not None:
                status.ok = True
            return
        for scope, circuit in ((WHOLE_BACKEND, whole), (model, own)):
            if circuit is not None and circuit.probing:  # the probe is over, whatever it found
                circuit.probing = False
                circuits.put(backend, scope, circuit)
        scope = WHOLE_BACKEND if kind in BACKEND_WIDE or model == WHOLE_BACKEND else model
        circuit = (whole if scope == WHOLE_BACKEND else own) or Circuit()
        circuit.failures += 1
        circuit.last_error = kind
        if circuit.failures >= self.failure_threshold:
            now = self.clock()
            if not circuit.open_until or now >= circuit.open_until:
                log.warning("backend %s%s failing (%d in a row, last: %s): circuit open for %ss",
                            backend, _of(scope), circuit.failures, kind, self.open_seconds)
            circuit.open_until = now + self.open_seconds
            if scope == WHOLE_BACKEND:
                self._get(backend).ok = False
                self._wake.set()  # check it now, not at the next interval
        circuits.put(backend, scope, circuit)
        if shared is not None:
            shared.outcome(backend, scope, True)

    # ---- background checks ---------------------------------------------------------------------

    async def check_all(self) -> None:
        """Probe every backend whose config leaves ``health_check`` on (a backend that bills per
        call, or has no cheap probe, sets it off: it is then judged by real requests alone)."""
        state = self.ref.state
        configs = state.config.backends
        backends = {name: b for name, b in state.backends.items()
                    if name not in configs or configs[name].health_check}
        if self.shared is not None:  # one instance per interval checks each backend
            backends = await self.shared.claim_checks(backends, self.interval)
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
            status.ok, status.last_error = True, None
        else:
            # A failed check counts like a failed request of the backend itself: a backend that
            # stays down opens its circuit even when no traffic reaches it, and dispatch skips it
            # (every model) until a check passes.
            self.record(name, False, error or "check_failed")
            status.ok, status.last_error = False, error
        self.metrics.backend_up.labels(name).set(1 if status.ok else 0)
        if self.shared is not None:
            self.shared.checked(name, status)

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
        """Per backend: its last check and its own circuit (``scope: backend``), the circuits of its
        models that failed (``models``) and its keys cooling down per model (``key_cooldowns``)."""
        now = self.clock()
        names = list(self.ref.state.backends)
        models: dict[str, dict[str, Any]] = {name: {} for name in names}
        for (backend, model), circuit in self.circuits.items():
            if model != WHOLE_BACKEND and backend in models:
                models[backend][model] = _circuit_report(circuit, now)
        cooling: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        cooldowns = getattr(self.ref.state, "cooldowns", None)
        for (backend, model, key), cooldown in cooldowns.items() if cooldowns is not None else ():
            if backend in cooling and cooldown.until > now:
                cooling[backend].append({"key": key, "model": model or None, "scope": "key+model",
                                         "retry_in_s": round(cooldown.until - now, 3)})
        out: dict[str, Any] = {}
        for name in names:
            s, own = self._get(name), self.circuit(name)
            out[name] = {"ok": s.ok and own.state(now) != "open", "state": own.state(now), "scope": "backend",
                         "latency_ms": s.latency_ms, "last_error": own.last_error or s.last_error,
                         "checked_at": s.checked_at, "consecutive_failures": own.failures,
                         "models": models[name], "key_cooldowns": cooling[name]}
        return out


def _of(model: str) -> str:
    return f" model {model}" if model != WHOLE_BACKEND else ""


def _circuit_report(circuit: Circuit, now: float) -> dict[str, Any]:
    return {"state": circuit.state(now), "scope": "backend+model", "consecutive_failures": circuit.failures,
            "last_error": circuit.last_error,
            "open_for_s": round(max(0.0, circuit.open_until - now), 3) if circuit.open_until else 0.0}


class _ScopeCollector:
    """``/metrics`` series read from the stores at scrape time: open circuits per (backend, model;
    ``*`` = the whole backend) and keys cooling down per (backend, model)."""

    def __init__(self, monitor: HealthMonitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterator[Metric]:
        monitor = self.monitor
        now = monitor.clock()
        label = monitor.metrics.model_label
        circuits = GaugeMetricFamily("llm_proxy_circuit_open", "1 while a circuit is open or half-open, per "
                                     "backend and model (model=\"*\": the whole backend)", labels=("backend", "model"))
        for (backend, model), circuit in monitor.circuits.items():
            if circuit.open_until:
                circuits.add_metric((backend, "*" if model == WHOLE_BACKEND else label(model)), 1.0)
        yield circuits
        counts: dict[tuple[str, str], int] = {}
        state = getattr(monitor.ref, "state", None)
        cooldowns = getattr(state, "cooldowns", None)
        for (backend, model, _key), cooldown in cooldowns.items() if cooldowns is not None else ():
            if cooldown.until > now:
                labels = (backend, label(model) if model else "-")
                counts[labels] = counts.get(labels, 0) + 1
        keys = GaugeMetricFamily("llm_proxy_key_cooldowns", "API keys cooling down, per backend and model",
                                 labels=("backend", "model"))
        for labels, count in counts.items():
            keys.add_metric(labels, float(count))
        yield keys
