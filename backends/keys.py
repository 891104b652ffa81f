"""API-key rotation: round-robin over a backend's keys, with cooldown for keys that failed.

A key that got 429 or 401 sits out until its cooldown ends (the provider's Retry-After when given).
Keys are identified outside this module only by their labels (:func:`key_label`), never shown.

Which keys one call may use is the caller's to say, and which one it used the connector's to
report: both travel in a :class:`KeyChoice` the caller passes and reads back.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable


def key_label(key: str) -> str:
    """Id of a backend key for logs and usage records: a short hash, never the key."""
    return "bk-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:10] if key else "bk-none"


@dataclass(slots=True)
class KeyChoice:
    """One call's say over its backend key, between dispatch and a connector.

    ``allow`` (from the plan's per-key rate limits; None allows every key; it may return an
    awaitable, then awaited) is asked about each
    key's label before the connector sends with it. ``used`` is written by the connector: the
    label of the last key it sent with, None when it sent nothing (echo, or no key allowed).
    """

    allow: Callable[[str], bool | Awaitable[bool]] | None = None
    used: str | None = None


@dataclass(slots=True)
class Key:
    """One API key of a backend, with its cooldown. ``label`` is what may be shown."""

    value: str
    label: str
    cool_until: float = 0.0
    failures: int = 0


@dataclass(slots=True)
class KeyPool:
    """Round-robin key choice that skips keys in cooldown."""

    keys: list[Key] = field(default_factory=list)
    clock: Callable[[], float] = time.monotonic
    default_cooldown: float = 30.0
    # Told of each cooldown (key label, seconds): several instances on one state store share them.
    on_cool_down: Callable[[str, float], None] | None = None
    _next: int = 0

    @classmethod
    def of(cls, keys: tuple[str, ...] | list[str], clock: Callable[[], float] = time.monotonic) -> "KeyPool":
        return cls([Key(k, key_label(k)) for k in keys] or [Key("", "bk-none")], clock)

    def __len__(self) -> int:
        return len(self.keys)

    def candidates(self) -> list[Key]:
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

    def cool_down(self, key: Key, seconds: float | None) -> None:
        key.failures += 1
        wait = seconds if seconds is not None else min(self.default_cooldown * key.failures, 300.0)
        key.cool_until = self.clock() + max(wait, 0.0)
        if self.on_cool_down is not None:
            self.on_cool_down(key.label, max(wait, 0.0))

    def cooled_elsewhere(self, label: str, seconds: float) -> None:
        """Another instance saw this key fail: it sits out here too (never shortened)."""
        for key in self.keys:
            if key.label == label:
                key.cool_until = max(key.cool_until, self.clock() + max(seconds, 0.0))

    def succeeded(self, key: Key) -> None:
        key.failures = 0

    def retry_after(self) -> float:
        """Seconds until the first key is usable again."""
        now = self.clock()
        return max(0.0, min(k.cool_until for k in self.keys) - now)
