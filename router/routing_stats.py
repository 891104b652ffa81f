"""What the group strategies observe about targets: time to first byte and requests in flight.

A small service with an explicit interface (:class:`RoutingStats`), so a shared implementation can
replace the in-process one later without touching dispatch or the strategies. The in-process
implementation keeps, per ``backend:model``:

- an exponentially weighted average of the time to first byte (``alpha`` 0.3: the last few calls
  dominate, so a target that slowed down or recovered is noticed within a handful of requests);
- the number of requests in flight (started, reply not yet ended).

Bounded: at most ``max_targets`` targets are remembered, the oldest dropped when it is full. Every
target a request reached is observed, and clients name models, so a client spraying model names
would fill any bound: 1,024 keeps every target of a large rule set and costs ~150 KB at most.
"""

from __future__ import annotations

from typing import Protocol


class RoutingStats(Protocol):
    """The interface dispatch and the strategies use."""

    def ttfb(self, target: str) -> float | None:
        """Average seconds to the first byte, None before the first measurement."""

    def in_flight(self, target: str) -> int:
        """Requests sent to ``target`` whose reply has not ended."""

    def observe_ttfb(self, target: str, seconds: float) -> None:
        """One measured time to first byte of a successful call."""

    def started(self, target: str) -> None:
        """A request was sent to ``target``."""

    def finished(self, target: str) -> None:
        """The reply of a request sent to ``target`` ended (or the call failed)."""


class InProcessRoutingStats:
    """:class:`RoutingStats` in this process' memory (per worker)."""

    def __init__(self, alpha: float = 0.3, max_targets: int = 1024) -> None:
        self.alpha = alpha
        self.max_targets = max_targets
        self._ttfb: dict[str, float] = {}
        self._flights: dict[str, int] = {}

    def ttfb(self, target: str) -> float | None:
        return self._ttfb.get(target)

    def in_flight(self, target: str) -> int:
        return self._flights.get(target, 0)

    def observe_ttfb(self, target: str, seconds: float) -> None:
        current = self._ttfb.get(target)
        if current is None:
            if len(self._ttfb) >= self.max_targets:
                del self._ttfb[next(iter(self._ttfb))]
            self._ttfb[target] = seconds
        else:
            self._ttfb[target] = current + self.alpha * (seconds - current)

    def started(self, target: str) -> None:
        self._flights[target] = self._flights.get(target, 0) + 1

    def finished(self, target: str) -> None:
        left = self._flights.get(target, 0) - 1
        if left > 0:
            self._flights[target] = left
        else:
            self._flights.pop(target, None)
