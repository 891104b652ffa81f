"""Sessions in Redis: the :class:`router.sessions.SessionRepository` interface, shared by every
instance (a ``!/backend(...)`` set through one is used by the next request through another).

A session is a hash ``prefix:ss:<owner>:<id>`` holding its settings (``Session.to_json`` without
the history, as JSON) and a version raised by every write, and a list ``prefix:sh:<owner>:<id>``
holding its history, newest last; both expire after ``session.ttl_seconds`` idle.

The request path does not read the session before planning (that would be a round trip of its
own): it plans on the copy this process saw last (:meth:`RedisSessionRepository.begin`), and
the request's step (``step.py``) checks that copy's version in the same atomic script call that
charges its limits, writing what the request changed (a history entry, a one-off consumed, a
session named by a header stored for the first time). When the version differs, the step writes
and charges nothing and hands back the current settings: the request is planned again on them.

The repository interface (``get``, ``save``, ``get_or_create``, ``delete``; commands use it)
reads and writes Redis directly. When Redis fails, ``fail_open`` serves from this process's copies
and an in-process repository (sessions then live per instance until Redis is back).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ..idle_lru import IdleLRU
from ..sessions import InMemorySessionRepository, Session, SessionChanged, SessionRepository, _check_id
from ..wire import fastjson
from .client import RedisState, StateStoreUnavailable
from .documents import RedisDocuments
from .step import NO_LIMITS, STEP

log = logging.getLogger("llm_proxy.state_store")

# KEYS: the session's hash and history list. ARGV: idle ms.
# Returns {0} when there is none, else {version, settings, {history entries}}; the idle timer restarts.
_READ = """
local have = redis.call('HMGET', KEYS[1], 'v', 'd')
if not have[1] then return {0} end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[1]))
return {tonumber(have[1]), have[2], redis.call('LRANGE', KEYS[2], 0, -1)}
"""

# KEYS: the session's hash and history list. ARGV: idle ms, settings, then the history (oldest first).
# Returns the new version.
_WRITE = """
local v = redis.call('HINCRBY', KEYS[1], 'v', 1)
redis.call('HSET', KEYS[1], 'd', ARGV[2])
redis.call('DEL', KEYS[2])
for i = 3, #ARGV do redis.call('RPUSH', KEYS[2], ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[1]))
return v
"""

Seen = tuple[int, "Session | None", tuple[str, str]]  # (version, settings, keys) as this process last saw them


def settings_json(session: Session) -> bytes:
    """What the session hash holds: everything but the history (that is a list of its own)."""
    data = session.to_json()
    del data["history"]
    return fastjson.dumps(data)


def _bare_copy(session: Session) -> Session:
    """A request's own copy of a seen session: its own history list (empty: the history is
    appended in Redis) and one-off; params and route edits are shared, read-only on the request
    path (commands work on a copy read fresh from Redis)."""
    return Session(session.id, session.owner, session.backend, session.model, session.project, session.project_dir,
                   session.temperature, session.interactive, session.params, session.route_edits, session.oneoff,
                   [], session.created_at, session.updated_at)


class RedisSessionRepository(SessionRepository):
    speculative = True  # the request path plans on the seen copy and checks it in its step (see above)

    def __init__(self, store: RedisState, ttl_seconds: float = 86400.0, max_history: int = 100,
                 max_sessions: int = 10_000) -> None:
        self.store = store
        self.max_history = max_history
        self.ttl_ms = max(1, int(ttl_seconds * 1000))
        self.local = InMemorySessionRepository(ttl_seconds, max_sessions, max_history)
        self._seen: IdleLRU[tuple[str | None, str], Seen] = IdleLRU(max_sessions, ttl_seconds)
        self._read = store.client.register_script(_READ)
        self._write = store.client.register_script(_WRITE)
        self.step_sha = store.client.register_script(STEP).sha

    def __len__(self) -> int:
        """Sessions this process holds a copy of (bounded by ``session.max_sessions``)."""
        return len(self._seen)

    def keys(self, owner: str | None, session_id: str) -> tuple[str, str]:
        # Owners are key ids; the id is last and validated by the caller.
        tail = f"{owner or '-'}:{session_id}"
        return self.store.key("ss", tail), self.store.key("sh", tail)

    def _fallback(self) -> None:
        if not self.store.fail_open:
            raise StateStoreUnavailable(self.store.where, self.store.last_error or "error")

    def _decode(self, session_id: str, owner: str | None, raw: Any) -> Session | None:
        try:
            session = Session.from_json(raw)
        except ValueError as exc:
            log.warning("session %s in redis is corrupt (%s); starting a fresh session", session_id, exc)
            return None
        return session if session.id == session_id and session.owner == owner else None

    # ---- the request path ------------------------------------------------------------------------

    def begin(self, session_id: str, owner: str | None, named: bool) -> "SessionStep":
        """The request's session as this process last saw it (no round trip), and its step part.
        ``named``: the client named the session (a header): it is stored if it is not yet."""
        key = (owner, session_id)
        seen = self._seen.peek(key)
        if seen is None:
            seen = (0, None, self.keys(owner, session_id))
        version, session, keys = seen
        anonymous = session is None and not named
        return SessionStep(self, key, keys, Session(session_id, owner) if session is None else _bare_copy(session),
                           version, anonymous)

    # ---- the repository interface ----------------------------------------------------------------

    async def get(self, session_id: str, owner: str | None = None) -> Session | None:
        _check_id(session_id)
        keys = self.keys(owner, session_id)
        try:
            reply = await self.store.run("session_get", lambda: self._read(keys=keys, args=[self.ttl_ms]))
        except StateStoreUnavailable:
            self._fallback()
            return await self.local.get(session_id, owner)
        version = int(reply[0])
        session = None if version == 0 else self._decode(session_id, owner, reply[1])
        if session is None:
            self._seen.put((owner, session_id), (version, None, keys))
            return None
        self._seen.put((owner, session_id), (version, _bare_copy(session), keys))
        session.history = [fastjson.loads(entry) for entry in reply[2]]
        return session

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
        keys = self.keys(session.owner, session.id)
        args = [self.ttl_ms, settings_json(session), *(fastjson.dumps(entry) for entry in session.history)]
        try:
            version = await self.store.run("session_put", lambda: self._write(keys=keys, args=args))
        except StateStoreUnavailable:
            self._fallback()
            await self.local.save(session)
            self._seen.put((session.owner, session.id), (self._seen_version(session), _bare_copy(session), keys))
            return
        self._seen.put((session.owner, session.id), (int(version), _bare_copy(session), keys))

    def _seen_version(self, session: Session) -> int:
        seen = self._seen.peek((session.owner, session.id))
        return seen[0] if seen is not None else 0

    async def delete(self, session_id: str, owner: str | None = None) -> None:
        _check_id(session_id)
        await self.local.delete(session_id, owner)
        self._seen.pop((owner, session_id))
        keys = self.keys(owner, session_id)
        try:
            await self.store.run("session_delete", lambda: self.store.client.delete(*keys))
        except StateStoreUnavailable:
            self._fallback()


class SessionStep:
    """One request's session part of its step (``step.Rider``): the version it planned on and
    what it changed. The pipeline calls :meth:`note` once the request is planned; the dispatcher
    sends it with the first limit check, or alone (:meth:`send`) before the first backend call."""

    __slots__ = ("repo", "key", "keys", "session", "version", "anonymous", "args")

    def __init__(self, repo: RedisSessionRepository, key: tuple[str | None, str], keys: tuple[str, str],
                 session: Session, version: int, anonymous: bool) -> None:
        self.repo = repo
        self.key = key
        self.keys = keys
        self.session = session
        self.version = version
        self.anonymous = anonymous
        self.args: tuple[Any, ...] = (2, version, 0, 0, "", "")  # a check alone until ``note``

    def note(self, entry: dict[str, Any] | None, changed: bool) -> None:
        """What the request writes: ``entry`` for the history (None: an anonymous session keeps
        none), the settings when ``changed`` or when a named session is not stored yet."""
        repo, session = self.repo, self.session
        write = changed or (self.version == 0 and not self.anonymous)
        self.args = (2, self.version, repo.ttl_ms, repo.max_history,
                     settings_json(session) if write else "", fastjson.dumps(entry) if entry is not None else "")

    def settle(self, reply: list[Any]) -> None:
        repo = self.repo
        if int(reply[0]) == -1:
            version = int(reply[1])
            current = repo._decode(self.key[1], self.key[0], reply[2]) if version else None
            repo._seen.put(self.key, (version, current, self.keys))
            raise SessionChanged(self.key[1])
        version = int(reply[2])
        repo._seen.put(self.key, (version, self.session if version else None, self.keys))
        self.session.history = []  # appended in Redis; the seen copy keeps none

    def unsent(self) -> None:
        """``fail_open`` without Redis: this process's copy is the session for now."""
        if not self.anonymous:
            self.session.history = []
            self.repo._seen.put(self.key, (self.version, self.session, self.keys))

    async def send(self) -> None:
        """The session part alone (a request without limits), before its first backend call."""
        repo = self.repo
        try:
            reply = await repo.store.step(repo.step_sha, STEP, (2, *self.keys, *self.args, *NO_LIMITS))
        except StateStoreUnavailable:
            repo._fallback()
            self.unsent()
            return
        self.settle(reply)

    async def refresh(self) -> Session:
        """The stored session, read now (before commands change it): the step then checks that version."""
        repo = self.repo
        stored = await repo.get(self.key[1], self.key[0])
        seen = repo._seen.peek(self.key)
        self.version = seen[0] if seen is not None else 0
        if stored is not None:
            self.anonymous = False
            self.session = stored
        self.args = (2, self.version, 0, 0, "", "")
        return self.session

    async def save(self, session: Session) -> None:
        """Store what commands changed (now, not with the step: the reply says it is kept)."""
        self.session = session
        self.anonymous = False
        await self.repo.save(session)
        self.version = self.repo._seen_version(session)
        self.args = (2, self.version, 0, 0, "", "")


class RedisDocumentRepository(SessionRepository):
    """Records kept as one JSON document each (``RedisDocuments`` of ``kind``), for stored Responses:
    read whole when asked for, never copied into this process. ``fail_open`` keeps them in an
    in-process repository while Redis is away."""

    def __init__(self, store: RedisState, kind: str, ttl_seconds: float, max_records: int) -> None:
        self.store = store
        self.documents = RedisDocuments(store, kind, ttl_seconds)
        self.local = InMemorySessionRepository(ttl_seconds, max_records, 0)

    def __len__(self) -> int:
        """Records held in this process (kept while Redis was away); the rest are in Redis."""
        return len(self.local)

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
            return await self.local.get(session_id, owner)  # kept here while Redis was away
        try:
            record = Session.from_json(data)
        except ValueError:
            return None
        return record if record.id == session_id and record.owner == owner else None

    async def get_or_create(self, session_id: str, owner: str | None = None) -> Session:
        record = await self.get(session_id, owner)
        if record is None:
            record = Session(id=session_id, owner=owner)
            await self.save(record)
        return record

    async def save(self, session: Session) -> None:
        _check_id(session.id)
        session.updated_at = time.time()
        session.history = []
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
