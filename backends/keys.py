"""API-key rotation: round-robin over a backend's keys, with cooldown for keys that failed.

A key that got 429 or 401 sits out until its cooldown ends (the provider's Retry-After when given).
Keys are identified outside this module only by :func:`router.auth.key_id`-style ids, never shown.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Callable


def key_label(key: str) -> str:
    """Id of a backend key for logs and usage records: a short hash, never the key."""
    return "bk-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:10] if key else "bk-none"


@dataclass(slots=True)
class _Key:
    value: str
    label: str
    cool_until: float = 0.0
    failures: int = 0


@dataclass(slots=True)
class KeyPool:
    """Round-robin key choice that skips keys in cooldown."""

    keys: list[_Key] = field(default_factory=list)
    clock: Callable[[], float] = time.monotonic
    default_cooldown: float = 30.0
    _next: int = 0

    @classmethod
    def of(cls, keys: tuple[str, ...] | list[str], clock: Callable[[], float] = time.monotonic) -> "KeyPool":
        return cls([_Key(k, key_label(k)) for k in keys] or [_Key("", "bk-none")], clock)

    def __len__(self) -> int:
        return len(self.keys)

    def candidates(self) -> list[_Key]:
        """Keys to try for one call, in rotation order, cooled-down keys left out."""
        n = len(self.keys)
        if n == 1:  # the common case: nothing to rotate
            key = self.keys[0]
            return [key] if key.cool_until <= 0.0 or key.cool_until <= self.clock() else []
        now = self.clock()
        start = self._next
        self._next = (self._next + 1) % n
        order = [self.keys[(start + i) % n] for i in range(n)]
        return [k for k in order if k.cool_until <= now]

    def cool_down(self, key: _Key, seconds: float | None) -> None:
        key.failures += 1
        wait = seconds if seconds is not None else min(self.default_cooldown * key.failures, 300.0)
        key.cool_until = self.clock() + max(wait, 0.0)

    def succeeded(self, key: _Key) -> None:
        key.failures = 0

    def retry_after(self) -> float:
        """Seconds until the first key is usable again."""
        now = self.clock()
        return max(0.0, min(k.cool_until for k in self.keys) - now)
