"""Tool-call histories in Redis: the tool-call loop detector counts a session's repeated calls
across every instance. A history is loaded before the guards run (one GETEX) and written back
once the answer is complete; times are wall-clock seconds so every instance reads them alike.
Only requests that declare tools and carry a session id touch Redis here. When Redis fails,
``fail_open`` counts in this process's history (the in-process one), ``fail_closed`` answers 503.
"""

from __future__ import annotations

import time

from ..guards import ToolCallHistory
from ..pipeline.guard import ToolHistories
from ..sessions import Session
from .client import RedisState, StateStoreUnavailable
from .documents import RedisDocuments


class SharedToolHistories(ToolHistories):
    shared = True

    def __init__(self, store: RedisState, maxsize: int = 10_000, ttl: float = 3600) -> None:
        super().__init__(maxsize, ttl)
        self.store = store
        self.documents = RedisDocuments(store, "th", ttl)
        # The in-process map (ToolHistories._histories) holds what this process loaded for requests
        # in flight (and fail_open's own histories).

    def _new_history(self) -> ToolCallHistory:
        return ToolCallHistory(time.time)  # wall-clock times: other instances read them

    async def load(self, session: Session) -> None:
        try:
            data = await self.documents.get(session.owner, session.id)
        except StateStoreUnavailable:
            if not self.store.fail_open:
                raise
            return  # keep counting in this process's copy
        self._histories.put((session.owner, session.id), ToolCallHistory.from_json(data or {}, time.time))

    async def keep(self, session: Session) -> None:
        history = self._histories.peek((session.owner, session.id))
        if history is None:
            return
        try:
            await self.documents.put(session.owner, session.id, history.to_json())
        except StateStoreUnavailable:
            if not self.store.fail_open:
                raise
