"""API-key rotation: round-robin over a backend's keys, with cooldown for keys that failed.

A key that got 429 or 401 for a model sits out for that model until its cooldown ends (the
provider's Retry-After when given); the state is kept in a :class:`~backends.cooldowns.CooldownStore`.
Keys are identified outside this module only by their labels (:func:`key_label`), never shown.

Which keys one call may use is the caller's to say, and which one it used the connector's to
report: both travel in a :class:`KeyChoice` the caller passes and reads back.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from .cooldowns import Cooldown, CooldownStore, InMemoryCooldownStore


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
    """One API key of a backend. ``label`` is what may be shown."""

    value: str
    label: str


@dataclass(slots=True)
class KeyPool:
    """Round-robin key choice that skips keys cooling down for the model asked for.

    Cooldowns are kept in ``store`` under (``backend``, model, key label): a key rate-limited
    for one model still serves the backend's other models. The store may be shared by every
    connector (the server passes one that outlives reloads); by default each pool has its own.
    """

    keys: list[Key] = field(default_factory=list)
    clock: Callable[[], float] = time.monotonic
    default_cooldown: float = 30.0
    backend: str = ""
    store: CooldownStore = field(default_factory=InMemoryCooldownStore)
    # Told of each cooldown (model, key label, seconds): several instances on one state store share them.
    on_cool_down: Callable[[str, str, float], None] | None = None
    _next: int = 0

    @classmethod
    def of(cls, keys: tuple[str, ...] | list[str], clock: Callable[[], float] = time.monotonic,
           backend: str = "", store: CooldownStore | None = None) -> "KeyPool":
        pool = cls([Key(k, key_label(k)) for k in keys] or [Key("", "bk-none")], clock, backend=backend)
        if store is not None:
            pool.store = store
        return pool

    def __len__(self) -> int:
        return len(self.keys)

    def _usable(self, key: Key, model: str, now: float) -> bool:
        cooldown = self.store.get(self.backend, model, key.label)
        return cooldown is None or cooldown.until <= now

    def candidates(self, model: str = "") -> list[Key]:
        """Keys to try for one call of ``model``, in rotation order, keys cooling down for it left out."""
        n = len(self.keys)
        now = self.clock()
        if n == 1:  # the common case: nothing to rotate
            key = self.keys[0]
            return [key] if self._usable(key, model, now) else []
        start = self._next
        self._next = (self._next + 1) % n
        order = [self.keys[(start + i) % n] for i in range(n)]
        return [k for k in order if self._usable(k, model, now)]

    def cool_down(self, key: Key, seconds: float | None, model: str = "") -> None:
        """``key`` failed for ``model`` (429, 401): it sits out for that model for ``seconds``
        (the provider's hint), else for a back-off that grows with its failures in a row."""
        previous = self.store.get(self.backend, model, key.label)
        failures = (previous.failures if previous is not None else 0) + 1
        wait = seconds if seconds is not None else min(self.default_cooldown * failures, 300.0)
        self.store.put(self.backend, model, key.label, Cooldown(self.clock() + max(wait, 0.0), failures))
        if self.on_cool_down is not None:
            self.on_cool_down(model, key.label, max(wait, 0.0))

    def cooled_elsewhere(self, label: str, seconds: float, model: str = "") -> None:
        """Another instance saw this key fail for ``model``: it sits out here too (never shortened)."""
        if not any(key.label == label for key in self.keys):
            return
        until = self.clock() + max(seconds, 0.0)
        previous = self.store.get(self.backend, model, label)
        if previous is None or previous.until < until:
            self.store.put(self.backend, model, label,
                           Cooldown(until, previous.failures if previous is not None else 1))

    def succeeded(self, key: Key, model: str = "") -> None:
        self.store.clear(self.backend, model, key.label)

    def retry_after(self, model: str = "") -> float:
        """Seconds until the first key is usable again for ``model``."""
        now = self.clock()
        waits = []
        for key in self.keys:
            cooldown = self.store.get(self.backend, model, key.label)
            waits.append(0.0 if cooldown is None else cooldown.until - now)
        return max(0.0, min(waits))
