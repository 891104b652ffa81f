"""A bounded map whose entries go after a time without use, or when it is full, least recently
used first: what the in-memory sessions, the rate-limit buckets, the tool-call histories and a
shared store's local copies are kept in.

Why not cachetools' ``TTLCache``, which they used before: every request reads its session (a hit,
then written back so that the idle timer restarts; or, for most anonymous conversations, a miss)
and, when limited, its buckets, and each of those went through the cache's timer context, its
linked list and an ``expire()`` pass. Here one ``OrderedDict`` holds the entries in order of last use, which is also
the order in which they expire (every use gives the same ``ttl``), so expiring is popping from
the front until an entry still lives. Measured with ``inprocess_bench.py --instructions``: see
the commit that brought it in.

An entry used at time ``t`` lives while ``clock() < t + ttl`` (as ``TTLCache``'s did).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class IdleLRU(Generic[K, V]):
    """At most ``maxsize`` entries, each gone ``ttl`` seconds after its last use. Reading an entry
    with :meth:`use` counts as a use; :meth:`peek` does not."""

    __slots__ = ("maxsize", "ttl", "clock", "_entries")

    def __init__(self, maxsize: int, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self.ttl = ttl
        self.clock = clock
        # key -> (the time it expires, value), oldest use first
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def use(self, key: K) -> V | None:
        """The live value of ``key`` (its idle timer restarted), or None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        now = self.clock()
        if not now < entry[0]:
            self._expire(now)
            return None
        self._entries[key] = (now + self.ttl, entry[1])
        self._entries.move_to_end(key)
        return entry[1]

    def peek(self, key: K) -> V | None:
        """The live value of ``key`` without counting as a use, or None."""
        entry = self._entries.get(key)
        if entry is None or not self.clock() < entry[0]:
            return None
        return entry[1]

    def put(self, key: K, value: V) -> None:
        """Keep ``value`` under ``key`` as just used; expired entries go, then the least
        recently used while there are more than ``maxsize``."""
        now = self.clock()
        self._expire(now)
        entries = self._entries
        entries[key] = (now + self.ttl, value)
        entries.move_to_end(key)
        while len(entries) > self.maxsize:
            entries.popitem(last=False)

    def pop(self, key: K) -> V | None:
        """Remove ``key``; its value if it was live, else None."""
        entry = self._entries.pop(key, None)
        if entry is None or not self.clock() < entry[0]:
            return None
        return entry[1]

    def __len__(self) -> int:
        """Live entries (the expired ones go first)."""
        self._expire(self.clock())
        return len(self._entries)

    def _expire(self, now: float) -> None:
        entries = self._entries
        while entries:
            key, (expires, _value) = next(iter(entries.items()))
            if now < expires:
                return
            del entries[key]
