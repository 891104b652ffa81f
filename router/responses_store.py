"""Stored Responses replies, for ``previous_response_id`` and ``GET /v2/responses/{id}``.

A reply is kept (when the request did not say ``store: false``) with the conversation that led to
it, so a follow-up that sends only new items and ``previous_response_id`` gets the whole
conversation. Replies are kept in a :class:`~router.sessions.SessionRepository` of their own, one
record per reply id, built from the ``session`` config: the same kind of store (in memory, files
under ``<session.path>/responses``, or Redis with ``state.store: redis``: then every instance
finds every reply), the same idle TTL, and in process at most ``min(session.max_sessions,
MAX_STORED)`` replies (least recently used evicted). A reply
belongs to the caller that made it, like a session: another key asking for its id finds nothing.
The record is a :class:`~router.sessions.Session` whose ``params`` hold the reply under
``"response"`` and the conversation under ``"input"``; nothing else of it is used.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from .config import SessionConfig
from .errors import ProxyError
from .sessions import Session, SessionRepository, make_repository, valid_session_id
from .wire import fastjson

MAX_STORED = 1000  # replies kept per process at most (each holds its whole conversation)
MAX_STORED_BYTES = 16 * 1024 * 1024  # a larger conversation is answered but not kept


def not_found(response_id: str) -> ProxyError:
    shown = response_id if len(response_id) <= 100 else response_id[:97] + "..."
    return ProxyError(400, f"Previous response with id '{shown}' not found.", "previous_response_not_found",
                      param="previous_response_id")


class ResponseStore:
    """Replies by (caller, id), in a repository of their own."""

    def __init__(self, repository: SessionRepository) -> None:
        self.repository = repository

    @classmethod
    def from_config(cls, config: SessionConfig) -> "ResponseStore":
        own = dataclasses.replace(config, path=os.path.join(config.path, "responses"),
                                  max_sessions=min(config.max_sessions, MAX_STORED), max_history=0)
        return cls(make_repository(own))

    async def get(self, response_id: str, caller: str | None) -> dict[str, Any] | None:
        """``{"input": [...], "response": {...}}`` of the caller's reply, or None (unknown, expired,
        another caller's, or an id that could never have been ours)."""
        if not valid_session_id(response_id):
            return None
        record = await self.repository.get(response_id, caller)
        if record is None or not isinstance(record.params.get("response"), dict):
            return None
        return {"input": list(record.params.get("input") or []), "response": record.params["response"]}

    async def put(self, response: dict[str, Any], input_items: list[Any], caller: str | None) -> bool:
        """Keep ``response`` (with the input that led to it); False when it is not kept (an id we
        cannot store under, or over :data:`MAX_STORED_BYTES`)."""
        rid = response.get("id")
        if not valid_session_id(rid):
            return False
        params = {"response": response, "input": input_items}
        # Its size as compact UTF-8 JSON, through orjson: the standard library's encoder, run on
        # every reply kept, was ~5% of a streamed Responses reply's CPU (py-spy, inprocess_bench.py).
        if len(fastjson.dumps(params)) > MAX_STORED_BYTES:
            return False
        await self.repository.save(Session(id=rid, owner=caller, params=params))
        return True

    async def conversation(self, response_id: str, caller: str | None) -> list[Any]:
        """The items a follow-up continues: the stored input, then the reply's output. A 400
        ``previous_response_not_found`` when there is no such reply for this caller."""
        stored = await self.get(response_id, caller)
        if stored is None:
            raise not_found(response_id)
        return stored["input"] + list(stored["response"].get("output") or [])

    async def aclose(self) -> None:
        await self.repository.aclose()
