"""Keyed JSON documents with an idle TTL in Redis: what sessions (and any other per-session
record, such as stored Responses) are kept as, under ``prefix:<kind>:<owner>:<id>``.

A kind of its own per record type: ``RedisDocuments(state, "s", ttl)`` holds sessions; another
repository takes another kind and gets the same timeouts, fallback and accounting.
"""

from __future__ import annotations

from typing import Any

from ..wire import fastjson
from .client import RedisState


class RedisDocuments:
    def __init__(self, store: RedisState, kind: str, ttl_seconds: float) -> None:
        self.store = store
        self.kind = kind
        self.ttl_ms = max(1, int(ttl_seconds * 1000))

    def key(self, owner: str | None, doc_id: str) -> str:
        # Owners are key ids (no ':' matters: the id is last and validated by the caller).
        return self.store.key(self.kind, owner or "-", doc_id)

    async def get(self, owner: str | None, doc_id: str) -> Any | None:
        """The document, its idle timer restarted (GETEX: one round trip), or None."""
        key = self.key(owner, doc_id)
        raw = await self.store.run(f"{self.kind}_get", lambda: self.store.client.getex(key, px=self.ttl_ms))
        return None if raw is None else fastjson.loads(raw)

    async def put(self, owner: str | None, doc_id: str, value: Any) -> None:
        key, data = self.key(owner, doc_id), fastjson.dumps(value)
        await self.store.run(f"{self.kind}_put", lambda: self.store.client.set(key, data, px=self.ttl_ms))

    async def delete(self, owner: str | None, doc_id: str) -> None:
        key = self.key(owner, doc_id)
        await self.store.run(f"{self.kind}_delete", lambda: self.store.client.delete(key))
