"""Where circuit-breaker state is kept: a small store keyed by explicit (backend, model).

A failure is scoped to what failed: three 500s from one model open the circuit of that model
only, and the backend's other models keep serving. What says the whole backend is unreachable
(a connection failure, a failed background health check) counts against the backend's own
circuit, kept under the model :data:`WHOLE_BACKEND`; an open backend circuit skips every model.

The breaker's logic lives in :class:`router.http.health.HealthMonitor`; this module only keeps
its state behind :class:`CircuitStore`, so another implementation can keep it elsewhere (e.g.
shared by several workers). Times are the monitor's clock values (``time.monotonic`` by default;
a store shared across processes needs a clock they share).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterator, Protocol

__all__ = ["WHOLE_BACKEND", "Circuit", "CircuitStore", "InMemoryCircuitStore"]

WHOLE_BACKEND = ""  # the model under which a backend's own circuit is kept


@dataclass(slots=True)
class Circuit:
    """One circuit: failures in a row, open until (clock value; 0 = closed), a probe in flight."""

    failures: int = 0
    open_until: float = 0.0
    probing: bool = False  # half-open: one request is testing it
    last_error: str | None = None

    def state(self, now: float) -> str:
        if not self.open_until:
            return "closed"
        return "open" if now < self.open_until else "half_open"


class CircuitStore(Protocol):
    """Circuits per (backend, model); ``model`` :data:`WHOLE_BACKEND` is the backend's own."""

    def get(self, backend: str, model: str) -> Circuit | None:
        """The circuit, None when it has never failed (closed) or was cleared."""

    def put(self, backend: str, model: str, circuit: Circuit) -> None:
        """Set (replace) the circuit."""

    def clear(self, backend: str, model: str) -> None:
        """The circuit closed: forget it."""

    def items(self) -> Iterator[tuple[tuple[str, str], Circuit]]:
        """Every ((backend, model), circuit) kept, for reports (``/health/backends``, ``/metrics``)."""


class InMemoryCircuitStore:
    """A bounded dict in this process. Entries exist only for circuits with failures (a request
    that succeeds on a healthy model writes nothing); the oldest go first beyond ``max_entries``,
    as clients choose model names."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str], Circuit] = OrderedDict()

    def get(self, backend: str, model: str) -> Circuit | None:
        if not self._entries:
            return None
        return self._entries.get((backend, model))

    def put(self, backend: str, model: str, circuit: Circuit) -> None:
        entry = (backend, model)
        self._entries[entry] = circuit
        self._entries.move_to_end(entry)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def clear(self, backend: str, model: str) -> None:
        if self._entries:
            self._entries.pop((backend, model), None)

    def items(self) -> Iterator[tuple[tuple[str, str], Circuit]]:
        return iter(list(self._entries.items()))
