"""Stage 1: whose session this request belongs to.

A client that sends no session id gets a fresh session it may adopt (the id is in the reply); it is
stored only once a command changes it, so anonymous traffic neither fills the store nor evicts real
sessions. A session belongs to its caller: the same id sent with another key is another session.
"""

from __future__ import annotations

import time
from typing import Mapping

from ..errors import ProxyError
from ..sessions import Session, new_session_id, valid_session_id
from .exchange import Exchange


def sent_session_id(headers: Mapping[str, str], body_hint: str | None = None) -> str | None:
    """``x-session-id``, else Claude Code's own session header, else Codex's ``session-id`` /
    ``thread-id``, else what the front end found in the body (``prompt_cache_key``), else None
    (an anonymous client)."""
    return headers.get("x-session-id") or headers.get("x-claude-code-session-id") or headers.get("session-id") \
        or headers.get("thread-id") or body_hint


def session_id_from(sid: str | None) -> str:
    """The session id the client sent (:func:`sent_session_id`), checked; a new id when it sent none."""
    if sid is None:
        return new_session_id()
    if not valid_session_id(sid):
        raise ProxyError(400, "x-session-id: use 1-128 characters of letters, digits and . _ : -", "invalid_request",
                         param="x-session-id")
    return sid


async def resolve_session(ex: Exchange) -> None:
    """Fill ``session``, ``anonymous`` and the reply's id headers."""
    ctx = ex.ctx
    sent = sent_session_id(ctx.headers, ctx.session_hint)
    ctx.session_id = ex.record.session_id = session_id_from(sent)
    ex.anonymous = not sent
    ex.session = Session(id=ctx.session_id, owner=ctx.caller) if ex.anonymous \
        else await ex.state.sessions.get_or_create(ctx.session_id, ctx.caller)
    ex.headers = {"x-session-id": ex.session.id, "x-request-id": ctx.request_id}


async def remember(ex: Exchange) -> None:
    """Consume a pending one-off and note the request in the session's history, saved before
    dispatch, not in the background: a client's next request may arrive as soon as this reply
    does, and must see the one-off consumed (file sessions are re-read each time). An anonymous
    session is never stored, so it keeps no history either."""
    session = ex.session
    assert session is not None and ex.facts is not None and ex.plan is not None
    session.take_oneoff()
    if not ex.anonymous:
        session.add_history({"at": round(time.time(), 3), "model": ex.facts.model, "frontend": ex.frontend.name,
                             "rules": list(ex.plan.rules)}, ex.state.config.session.max_history)
        await ex.state.sessions.save(session)
