"""Sessions in Redis: the :class:`router.sessions.SessionRepository` interface, shared by every
instance (a ``!/backend(...)`` set through one is used by the next request through another).

Each session is one JSON document (``Session.to_json``) with the idle expiry of
``session.ttl_seconds``, restarted on every read and write. ``get`` returns a fresh copy: callers
already follow the repository's contract (change it, then ``save``). When Redis fails, ``fail_open``
serves from an in-process repository (sessions then live per instance until Redis is back).
"""

from __future__ import annotations

import logging
import time

from ..sessions import InMemorySessionRepository, Session, SessionRepository, _check_id
from .client import RedisState, StateStoreUnavailable
from .documents import RedisDocuments

log = logging.getLogger("llm_proxy.state_store")


class RedisSessionRepository(SessionRepository):
    def __init__(self, store: RedisState, ttl_seconds: float = 86400.0, max_history: int = 100,
                 max_sessions: int = 10_000) -> None:
        self.store = store
        self.max_history = max_history
        self.documents = RedisDocuments(store, "s", ttl_seconds)
        self.local = InMemorySessionRepository(ttl_seconds, max_sessions, max_history)

    def _fallback(self) -> None:
        if not self.store.fail_open:
            raise StateStoreUnavailable(self.store.where, self.store.last_error or "error")

    async def get(self, session_id: str, owner: str | None = None) -> Session | None:
        _check_id(session_id)
        try:
            data = await self.documents.get(owner, session_id)
        except StateStoreUnavailable:
            self._fallback()
            return await self.local.get(session_id, owner)
        if data is None:
            return None
        try:
            session = Session.from_json(data)
        except ValueError as exc:
            log.warning("session %s in redis is corrupt (%s); starting a fresh session", session_id, exc)
            return None
        return session if session.id == session_id and session.owner == owner else None

    async def get_or_create(self, session_id: str, owner: str | None = None) -> Session:
        session = await self.get(session_id, owner)
        if session is None:
            session = Session(id=session_id, owner=owner)
            await self.save(session)
        return session

    async def save(self, session: Session) -> None:
        _check_id(session.id)
        session.updated_at = time.time()
        session.trim_history(self.max_history)
        try:
            await self.documents.put(session.owner, session.id, session.to_json())
        except StateStoreUnavailable:
            self._fallback()
            await self.local.save(session)

    async def delete(self, session_id: str, owner: str | None = None) -> None:
        _check_id(session_id)
        await self.local.delete(session_id, owner)
        try:
            await self.documents.delete(owner, session_id)
        except StateStoreUnavailable:
            self._fallback()
