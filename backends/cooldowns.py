"""Where key cooldowns are kept: a small store keyed by explicit (backend, model, key label).

A provider's 429 or 401 is about one key *for one model* (quotas are per model): the key sits out
for that model only, and the backend's other models keep using it. The rotation logic (which key
next, how long to wait without a Retry-After) lives in :mod:`backends.keys`; this module only
keeps the state, behind :class:`CooldownStore`, so one shared store (in process here; another
implementation may keep it elsewhere, e.g. for several workers) can back every connector and
outlive a reload.

Times are the pool's clock values (``time.monotonic`` by default): a store shared across
processes must be given a clock they share (``time.time``).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterator, Protocol

__all__ = ["Cooldown", "CooldownStore", "InMemoryCooldownStore"]


@dataclass(slots=True)
class Cooldown:
    """One key's cooldown for one model: usable again at ``until``; ``failures`` in a row so far."""

    until: float
    failures: int = 1


class CooldownStore(Protocol):
    """The cooldowns of every backend's keys, per (backend, model, key label)."""

    def get(self, backend: str, model: str, key: str) -> Cooldown | None:
        """The key's cooldown for the model, None when it has none (or it was cleared)."""

    def put(self, backend: str, model: str, key: str, cooldown: Cooldown) -> None:
        """Set (replace) the key's cooldown for the model."""

    def clear(self, backend: str, model: str, key: str) -> None:
        """The key worked for the model: forget its cooldown and failure count."""

    def items(self) -> Iterator[tuple[tuple[str, str, str], Cooldown]]:
        """Every ((backend, model, key label), cooldown) kept, for reports (``/health/backends``)."""


class InMemoryCooldownStore:
    """A bounded dict in this process: entries exist only for keys that failed (most requests
    find the store empty and look nothing up); the oldest go first beyond ``max_entries``, as
    clients choose model names."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str, str], Cooldown] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, backend: str, model: str, key: str) -> Cooldown | None:
        if not self._entries:
            return None
        return self._entries.get((backend, model, key))

    def put(self, backend: str, model: str, key: str, cooldown: Cooldown) -> None:
        entry = (backend, model, key)
        self._entries[entry] = cooldown
        self._entries.move_to_end(entry)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def clear(self, backend: str, model: str, key: str) -> None:
        if self._entries:
            self._entries.pop((backend, model, key), None)

    def items(self) -> Iterator[tuple[tuple[str, str, str], Cooldown]]:
        return iter(list(self._entries.items()))
