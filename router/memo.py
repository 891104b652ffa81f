"""A small bounded memo keyed by an object's identity, for values derived from immutable objects
that come back on every request (a plan's ``post`` tuple, a config, a rules tuple).

Hashing such objects by content costs per request what the lookup should save; their ``id()`` is
free, but ids are reused once an object is freed. Each entry therefore holds its owner: while the
entry exists the owner lives, so its id cannot be reused, and a lookup checks it is the same object.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Generic, TypeVar

V = TypeVar("V")


class IdentityMemo(Generic[V]):
    """Values by a key that contains ``id(owner)``; cleared when ``limit`` entries are reached."""

    __slots__ = ("_entries", "_limit")

    def __init__(self, limit: int) -> None:
        self._entries: dict[Hashable, tuple[Any, V]] = {}
        self._limit = limit

    def get(self, key: Hashable, owner: Any) -> V | None:
        entry = self._entries.get(key)
        return entry[1] if entry is not None and entry[0] is owner else None

    def put(self, key: Hashable, owner: Any, value: V) -> V:
        if len(self._entries) >= self._limit:
            self._entries.clear()
        self._entries[key] = (owner, value)
        return value
