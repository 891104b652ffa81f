"""Per-client session state (``x-session-id``) and where it is kept.

A :class:`SessionRepository` is a small async interface so the embedded stores (in memory, one JSON
file per session) can later be swapped for Redis without touching callers. Contract for callers:
mutate the session returned by ``get_or_create`` and then ``save`` it; ``save`` stamps
``updated_at``, trims history and refreshes the idle expiry. Session ids come from clients, so they
are checked with :func:`valid_session_id` and never used as file names directly.

A session belongs to its ``owner``, the caller (key id) that made it: sessions are stored under
(owner, id), so another key that learns an id gets a session of its own under it, never the
first caller's state. ``owner`` None is the caller of a proxy without client keys.
"""

from __future__ import annotations

import abc
import asyncio
import hashlib
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .config import SessionConfig
from .idle_lru import IdleLRU

__all__ = [
    "FileSessionRepository",
    "InMemorySessionRepository",
    "InvalidSessionId",
    "Session",
    "SessionChanged",
    "SessionRepository",
    "make_repository",
    "new_session_id",
    "valid_session_id",
]

log = logging.getLogger(__name__)

_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_FORMAT_VERSION = 1


_ID_POOL: list[str] = []


def new_session_id() -> str:
    """A fresh random (unguessable) id for clients that send no ``x-session-id``.

    Ids are cut from one ``os.urandom`` call per 256 ids: one system call per request was a
    measurable share of a request's CPU.
    """
    if not _ID_POOL:
        raw = os.urandom(16 * 256).hex()
        _ID_POOL.extend(raw[i:i + 32] for i in range(0, len(raw), 32))
    return _ID_POOL.pop()


def valid_session_id(value: object) -> bool:
    """1..128 characters of ``[A-Za-z0-9._:-]``: anything else is rejected before it is stored."""
    return isinstance(value, str) and _ID_RE.fullmatch(value) is not None


class InvalidSessionId(ValueError):
    """A client-supplied session id that :func:`valid_session_id` rejects."""

    def __init__(self, value: object) -> None:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        super().__init__(f"invalid session id {shown}: use 1-128 characters of A-Z a-z 0-9 . _ : -")


class SessionChanged(Exception):
    """A shared store found that the session a request was planned on was changed by another
    instance (or expired) meanwhile: the request is planned again on the current one, which the
    repository now holds (``router/state_store/step.py``)."""


def _check_id(session_id: object) -> str:
    if not valid_session_id(session_id):
        raise InvalidSessionId(session_id)
    return session_id  # type: ignore[return-value]


# --------------------------------------------------------------------------- the session


@dataclass(slots=True)
class Session:
    """What a client's commands changed: backend/model choice, params, route edits, recent history."""

    id: str
    owner: str | None = None  # the caller (key id) it belongs to; None without client keys
    backend: str | None = None
    model: str | None = None
    project: str | None = None
    project_dir: str | None = None
    temperature: float | None = None
    interactive: bool = False  # report command results alongside model replies
    params: dict[str, Any] = field(default_factory=dict)  # free-form !/set values
    route_edits: list[Any] = field(default_factory=list)  # JSON values (rule dicts), session-scoped
    oneoff: str | None = None  # "backend:model" for the next request only
    history: list[dict[str, Any]] = field(default_factory=list)  # oldest first
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)

    def add_history(self, entry: dict[str, Any], max_history: int) -> None:
        """Append and keep only the newest ``max_history`` entries."""
        self.history.append(entry)
        self.trim_history(max_history)

    def trim_history(self, max_history: int) -> None:
        if len(self.history) > max_history:
            del self.history[: len(self.history) - max_history]

    def scope(self) -> str:
        """The session as a rate-limit scope value: its id, qualified by its owner."""
        return self.id if self.owner is None else f"{self.owner}/{self.id}"

    def take_oneoff(self) -> str | None:
        """The pending one-off target, cleared so it applies to exactly one request."""
        value, self.oneoff = self.oneoff, None
        return value

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (``json.dumps`` it yourself); :meth:`from_json` reads it back."""
        return {
            "v": _FORMAT_VERSION,
            "id": self.id,
            "owner": self.owner,
            "backend": self.backend,
            "model": self.model,
            "project": self.project,
            "project_dir": self.project_dir,
            "temperature": self.temperature,
            "interactive": self.interactive,
            "params": self.params,
            "route_edits": self.route_edits,
            "oneoff": self.oneoff,
            "history": self.history,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str | bytes) -> Session:
        """Inverse of :meth:`to_json` (also accepts the JSON text). Unknown keys are ignored so newer
        files load in older code; wrong shapes raise ``ValueError``."""
        if isinstance(data, (str, bytes)):
            data = json.loads(data)
        if not isinstance(data, Mapping):
            raise ValueError("session data is not an object")

        def opt(key: str, kinds: type | tuple[type, ...]) -> Any:
            value = data.get(key)
            if value is not None and (not isinstance(value, kinds) or isinstance(value, bool) and bool not in _tuple(kinds)):
                raise ValueError(f"session field {key!r} has the wrong type")
            return value

        session_id = data.get("id")
        if not valid_session_id(session_id):
            raise ValueError("session data has no valid id")
        now = time.time()
        temperature = opt("temperature", (int, float))
        history = opt("history", list) or []
        if not all(isinstance(h, dict) for h in history):
            raise ValueError("session history entries must be objects")
        interactive = opt("interactive", bool)
        return cls(
            id=session_id,
            owner=opt("owner", str),
            backend=opt("backend", str),
            model=opt("model", str),
            project=opt("project", str),
            project_dir=opt("project_dir", str),
            temperature=None if temperature is None else float(temperature),
            interactive=False if interactive is None else interactive,
            params=dict(opt("params", dict) or {}),
            route_edits=list(opt("route_edits", list) or []),
            oneoff=opt("oneoff", str),
            history=list(history),
            created_at=float(opt("created_at", (int, float)) or now),
            updated_at=float(opt("updated_at", (int, float)) or now),
        )


def _tuple(kinds: type | tuple[type, ...]) -> tuple[type, ...]:
    return kinds if isinstance(kinds, tuple) else (kinds,)


# --------------------------------------------------------------------------- repositories


class SessionRepository(abc.ABC):
    """Where sessions live, by (owner, id). Every method validates the id and raises
    :class:`InvalidSessionId`."""

    # A shared store (Redis) whose request path plans on a local copy checked in the request's
    # one round trip (``router/state_store/sessions.py``): the pipeline then uses ``begin``.
    speculative = False

    @abc.abstractmethod
    async def get(self, session_id: str, owner: str | None = None) -> Session | None:
        """``owner``'s stored session, or None when unknown or expired."""

    @abc.abstractmethod
    async def get_or_create(self, session_id: str, owner: str | None = None) -> Session:
        """``owner``'s stored session, or a new one of ``owner`` (stored at once)."""

    @abc.abstractmethod
    async def save(self, session: Session) -> None:
        """Store ``session`` under its owner: stamps ``updated_at``, trims history, restarts the idle timer."""

    @abc.abstractmethod
    async def delete(self, session_id: str, owner: str | None = None) -> None:
        """Forget ``owner``'s session; unknown ids are fine."""

    async def aclose(self) -> None:
        """Release resources (nothing to do for the embedded stores)."""


class InMemorySessionRepository(SessionRepository):
    """Sessions in an :class:`~router.idle_lru.IdleLRU`: gone after ``ttl_seconds`` idle or when ``max_sessions`` is exceeded.

    Returns the live object: changes are visible to other holders before ``save``; still call
    ``save`` so expiry and history bounds apply.
    """

    def __init__(self, ttl_seconds: float = 86400.0, max_sessions: int = 10_000, max_history: int = 100,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_history = max_history
        self._cache: IdleLRU[tuple[str | None, str], Session] = IdleLRU(max_sessions, ttl_seconds, clock)

    def __len__(self) -> int:
        return len(self._cache)

    async def get(self, session_id: str, owner: str | None = None) -> Session | None:
        key = (owner, _check_id(session_id))
        return self._cache.use(key)  # reading counts as activity: restarts the idle timer

    async def get_or_create(self, session_id: str, owner: str | None = None) -> Session:
        session = await self.get(session_id, owner)
        if session is None:
            session = Session(id=session_id, owner=owner)
            self._cache.put((owner, session_id), session)
        return session

    async def save(self, session: Session) -> None:
        _check_id(session.id)
        session.updated_at = time.time()
        session.trim_history(self.max_history)
        self._cache.put((session.owner, session.id), session)

    async def delete(self, session_id: str, owner: str | None = None) -> None:
        self._cache.pop((owner, _check_id(session_id)))


class FileSessionRepository(SessionRepository):
    """One JSON file per session under ``path``; survives restarts.

    File names are a SHA-256 of the owner and the id (ids come from clients); a file is handed out
    only to the owner and id written in it. Writes go to a temp file that
    replaces the target atomically, so a crash never leaves half a session. A file idle longer than
    ``ttl_seconds`` (by mtime) is treated as absent and removed by a periodic sweep. A corrupt file
    is logged once, renamed to ``*.corrupt`` and replaced by a fresh session. Disk I/O runs in a
    worker thread so the event loop keeps serving.

    Bounded like the in-memory store: at most ``max_sessions`` files, the least recently used
    removed first when a new session would exceed that. The order is kept in memory, built from
    the files' mtimes by the sweep (at start, then periodically: that also catches up with files
    other worker processes wrote). The directory may hold other files (an operator's notes, a
    config file): only names of this repository's own patterns are ever counted, swept or removed.
    """

    _SUFFIX = ".json"
    _TEMP_PREFIX = ".tmp-"
    # What this repository writes: sessions, sessions set aside as corrupt, temp files of a write.
    _OWN_FILE = re.compile(r"[0-9a-f]{64}\.json(\.corrupt)?|\.tmp-[A-Za-z0-9_]+\.json")

    def __init__(self, path: str, ttl_seconds: float = 86400.0, max_history: int = 100,
                 clock: Callable[[], float] = time.time, sweep_interval: float | None = None,
                 max_sessions: int = 10_000) -> None:
        self.path = os.path.abspath(os.path.expanduser(path))
        self.ttl_seconds = ttl_seconds
        self.max_history = max_history
        self.max_sessions = max_sessions
        self._clock = clock
        self._sweep_interval = sweep_interval if sweep_interval is not None else min(ttl_seconds, 300.0)
        self._next_sweep = 0.0
        # Session files, least recently used first. Threads of ``asyncio.to_thread`` share it.
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        os.makedirs(self.path, mode=0o700, exist_ok=True)
        self.sweep()

    def file_for(self, session_id: str, owner: str | None = None) -> str:
        """The file that holds ``owner``'s ``session_id`` (safe for any id). Without an owner the
        name is that of the id alone, as before sessions had owners."""
        name = _check_id(session_id) if owner is None else f"{owner}\0{_check_id(session_id)}"
        digest = hashlib.sha256(name.encode("utf-8")).hexdigest()
        return os.path.join(self.path, digest + self._SUFFIX)

    def __len__(self) -> int:
        with self._lock:
            return len(self._recent)

    # -- synchronous helpers, run in a thread

    def _expired(self, mtime: float, now: float) -> bool:
        return now - mtime > self.ttl_seconds

    def _is_session_file(self, name: str) -> bool:
        return name.endswith(self._SUFFIX) and not name.startswith(self._TEMP_PREFIX)

    def _used(self, file: str) -> None:
        with self._lock:
            self._recent[file] = None
            self._recent.move_to_end(file)

    def _forget(self, file: str) -> None:
        with self._lock:
            self._recent.pop(file, None)
        _unlink(file)

    def _evict(self, keep: str | None = None) -> None:
        """Remove the least recently used sessions beyond ``max_sessions`` (never ``keep``)."""
        while True:
            with self._lock:
                if len(self._recent) <= self.max_sessions:
                    return
                oldest = next(iter(self._recent))
                if oldest == keep:
                    self._recent.move_to_end(oldest)
                    oldest = next(iter(self._recent))
                del self._recent[oldest]
            _unlink(oldest)

    def _read(self, session_id: str, owner: str | None) -> Session | None:
        file = self.file_for(session_id, owner)
        now = self._clock()
        try:
            if self._expired(os.stat(file).st_mtime, now):
                self._forget(file)
                return None
            with open(file, "rb") as fh:
                raw = fh.read()
        except FileNotFoundError:
            with self._lock:
                self._recent.pop(file, None)
            return None
        except OSError as exc:
            log.warning("session file %s cannot be read (%s); starting a fresh session", file, exc)
            return None
        try:
            session = Session.from_json(raw.decode("utf-8"))
            if session.id != session_id or session.owner != owner:
                raise ValueError("file holds another session")
        except (ValueError, UnicodeDecodeError) as exc:
            log.warning("session file %s is corrupt (%s); moved to *.corrupt, starting a fresh session", file, exc)
            try:
                os.replace(file, file + ".corrupt")
            except OSError:
                _unlink(file)
            with self._lock:
                self._recent.pop(file, None)
            return None
        _touch(file, now)
        self._used(file)
        return session

    def _write(self, session: Session) -> None:
        file = self.file_for(session.id, session.owner)
        data = json.dumps(session.to_json(), ensure_ascii=False, separators=(",", ":"))
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=self._TEMP_PREFIX, suffix=self._SUFFIX)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(data)
            os.replace(tmp, file)
        except BaseException:
            _unlink(tmp)
            raise
        _touch(file, self._clock())
        self._used(file)
        self._evict(keep=file)

    def sweep(self) -> int:
        """Remove this repository's expired files (sessions, stale temp files, old ``*.corrupt``
        files), re-read the recency order from the remaining sessions' mtimes and enforce
        ``max_sessions``; returns how many expired files were removed. Files of other names are
        never touched."""
        now, removed = self._clock(), 0
        try:
            entries = list(os.scandir(self.path))
        except FileNotFoundError:
            entries = []
        stamped: list[tuple[float, str]] = []
        for entry in entries:
            if not self._OWN_FILE.fullmatch(entry.name):
                continue
            try:
                if not entry.is_file():
                    continue
                mtime = entry.stat().st_mtime
                if self._expired(mtime, now):
                    os.unlink(entry.path)
                    removed += 1
                elif self._is_session_file(entry.name):
                    stamped.append((mtime, entry.path))
            except OSError:
                continue
        with self._lock:
            self._recent = OrderedDict((file, None) for _mtime, file in sorted(stamped))
        self._evict()
        return removed

    def _maybe_sweep(self) -> None:
        now = self._clock()
        if now >= self._next_sweep:
            self._next_sweep = now + self._sweep_interval
            self.sweep()

    # -- async interface

    async def get(self, session_id: str, owner: str | None = None) -> Session | None:
        _check_id(session_id)
        return await asyncio.to_thread(self._read, session_id, owner)

    async def get_or_create(self, session_id: str, owner: str | None = None) -> Session:
        _check_id(session_id)
        session = await asyncio.to_thread(self._read, session_id, owner)
        if session is None:
            session = Session(id=session_id, owner=owner)
            await asyncio.to_thread(self._write, session)
        return session

    async def save(self, session: Session) -> None:
        _check_id(session.id)
        session.updated_at = time.time()
        session.trim_history(self.max_history)
        await asyncio.to_thread(self._save_sync, session)

    def _save_sync(self, session: Session) -> None:
        self._write(session)
        self._maybe_sweep()

    async def delete(self, session_id: str, owner: str | None = None) -> None:
        file = self.file_for(session_id, owner)
        await asyncio.to_thread(self._forget, file)


def _unlink(file: str) -> None:
    try:
        os.unlink(file)
    except FileNotFoundError:
        pass


def _touch(file: str, now: float) -> None:
    """Set mtime to ``now``: mtime is the idle timer of a session file."""
    try:
        os.utime(file, (now, now))
    except OSError:
        pass


def make_repository(config: SessionConfig) -> SessionRepository:
    """The repository ``session.repository`` names, built from the session config."""
    if config.repository == "file":
        return FileSessionRepository(config.path, config.ttl_seconds, config.max_history,
                                     max_sessions=config.max_sessions)
    if config.repository == "in_memory":
        return InMemorySessionRepository(config.ttl_seconds, config.max_sessions, config.max_history)
    raise ValueError(f"unknown session repository {config.repository!r}")
