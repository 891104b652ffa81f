"""Stage 1: whose session this request belongs to.

A session is found, in this order, from: the ``x-session-id`` header; an agent's own session
header (Claude Code's ``x-claude-code-session-id``, Codex's ``session-id`` and ``thread-id``);
else the conversation itself: a key derived from the caller, the front end, the system prompt
and the first user message. Official SDKs and chat UIs send no session header but resend the
whole history each turn, so every turn of one chat derives the same key (and lands in the same
session) while another chat derives another one.

A session that is not stored yet is made fresh and stored only once a command changes it, so
traffic that never uses commands neither fills the store nor evicts real sessions. A session
belongs to its caller: the same id sent with another key is another session.
"""

from __future__ import annotations

import hashlib
import struct
import time
from typing import Mapping

from ..errors import ProxyError
from ..sessions import Session, valid_session_id
from ..wire.canonical import ChatRequest, Message, TextPart
from .exchange import Exchange

# Headers that name a session, first found wins: ours, then the agents' own (Claude Code; Codex
# sends session-id and thread-id, both its session's uuid: ../shared/captures/codex/NOTES.md).
SESSION_HEADERS = ("x-session-id", "x-claude-code-session-id", "session-id", "thread-id")
CONVERSATION = "conversation"  # ``Exchange.session_source`` of a key derived from the conversation
CONVERSATION_PREFIX = "conv-"


BODY_HINT = "prompt_cache_key"  # where a front end's body hint comes from (Responses)


def sent_session_id(headers: Mapping[str, str], body_hint: str | None = None) -> tuple[str, str] | None:
    """(id, where it came from) of the first session header sent, else of what the front end
    found in the body (``prompt_cache_key``), None when the client named no session."""
    for name in SESSION_HEADERS:
        value = headers.get(name)
        if value:
            return value, name
    if body_hint:
        return body_hint, BODY_HINT
    return None


def session_id_from(sid: str | None, header: str = "x-session-id") -> str:
    """A session id the client sent, checked (400 naming the header when it is not usable)."""
    if sid is None or not valid_session_id(sid):
        raise ProxyError(400, f"{header}: use 1-128 characters of letters, digits and . _ : -", "invalid_request",
                         param=header)
    return sid


def _text_of(message: Message | None) -> str:
    if message is None:
        return ""
    return "\n".join([p.text if isinstance(p, TextPart) else f"[{p.type}]" for p in message.parts])


def conversation_key(caller: str | None, frontend: str, request: ChatRequest) -> str:
    """The session id of a conversation whose client names no session: a hash of who asks (the
    caller's key id), through which front end, with which system prompt and first user message.
    These stay the same on every turn of a chat that resends its history (SDKs, chat UIs), and
    two chats differ in at least one of them unless they open with the same words (a client that
    wants those apart sends ``x-session-id``). Commands in the first message count as typed, so a
    chat opened with ``!/model(...)`` keeps finding its session.

    The four pieces are hashed as one buffer (each UTF-8 piece after its length in 8 bytes), in
    one call: an ``update`` per piece cost ~1,600 instructions each through OpenSSL, and this runs
    before every anonymous request's first byte (so does the buffer's making: one ``join`` of
    the pieces, the common one-part texts read without a join of their own). The digest is that
    of the pieces fed one by one (tests/router/pipeline/test_session.py), so ids made before stay
    the same."""
    first = ""
    for message in request.messages:
        if message.role == "user":
            parts = message.parts
            first = parts[0].text if len(parts) == 1 and type(parts[0]) is TextPart else _text_of(message)
            break
    system = request.system
    system_text = system[0].text if len(system) == 1 else "\n".join([p.text for p in system])
    pieces = [(caller or "").encode("utf-8", "surrogatepass"), frontend.encode("utf-8", "surrogatepass"),
              system_text.encode("utf-8", "surrogatepass"), first.encode("utf-8", "surrogatepass")]
    buffer = b"".join([_length(len(piece)) + piece for piece in pieces])
    return CONVERSATION_PREFIX + hashlib.sha256(buffer).hexdigest()[:32]


_length = struct.Struct(">Q").pack  # a piece's length in 8 bytes, big-endian


async def resolve_session(ex: Exchange) -> None:
    """Fill ``session``, ``session_source``, ``anonymous`` and the reply's id headers."""
    ctx = ex.ctx
    sent = sent_session_id(ctx.headers, ctx.session_hint)
    sessions = ex.state.sessions
    if sessions.speculative:
        # A shared store: the copy this process saw last, checked in the request's one round
        # trip (state_store/step.py), which plans the request again if it was changed elsewhere.
        if sent is not None:
            ctx.session_id = ex.record.session_id = session_id_from(*sent)
            ex.session_source = sent[1]
        else:
            ctx.session_id = ex.record.session_id = conversation_key(ctx.caller, ex.frontend.name, ex.request)
            ex.session_source = CONVERSATION
        ex.rider = sessions.begin(ctx.session_id, ctx.caller, sent is not None)  # type: ignore[attr-defined]
        ex.session, ex.anonymous = ex.rider.session, ex.rider.anonymous
    elif sent is not None:
        ctx.session_id = ex.record.session_id = session_id_from(*sent)
        ex.session_source = sent[1]
        ex.anonymous = False
        ex.session = await sessions.get_or_create(ctx.session_id, ctx.caller)
    else:
        ctx.session_id = ex.record.session_id = conversation_key(ctx.caller, ex.frontend.name, ex.request)
        ex.session_source = CONVERSATION
        stored = await sessions.get(ctx.session_id, ctx.caller)
        ex.anonymous = stored is None
        ex.session = stored if stored is not None else Session(id=ctx.session_id, owner=ctx.caller)
    ex.headers = {"x-session-id": ex.session.id, "x-request-id": ctx.request_id}


def describe_session(ex: Exchange) -> str:
    """Which session a command changed and how long it lives, for the command's reply."""
    session = ex.session
    assert session is not None
    config = ex.state.config.session
    if ex.session_source == CONVERSATION:
        how = ("found from this conversation (your key, the front end, the system prompt and the first "
               "message; send x-session-id to name it yourself)")
    else:
        how = (f"named by your request's {BODY_HINT}" if ex.session_source == BODY_HINT
               else f"named by your {ex.session_source} header")
    kept = ("in Redis, shared by every instance" if ex.state.sessions.speculative
            else "in memory" if config.repository == "in_memory" else "in files")
    return (f"Session {session.id}, {how}: kept {kept} until {duration(config.ttl_seconds)} without use "
            f"(at most {config.max_sessions} sessions are kept, least recently used first to go).")


def duration(seconds: float) -> str:
    """``86400`` → ``24h``, ``90`` → ``90s``, ``1800`` → ``30m``."""
    s = int(seconds)
    if s >= 3600 and s % 3600 == 0:
        return f"{s // 3600}h"
    if s >= 60 and s % 60 == 0:
        return f"{s // 60}m"
    return f"{s}s"


async def remember(ex: Exchange) -> None:
    """Consume a pending one-off and note the request in the session's history, saved before
    dispatch, not in the background: a client's next request may arrive as soon as this reply
    does, and must see the one-off consumed (file sessions are re-read each time). A session not
    stored (nothing ever changed it) is not stored now either, so it keeps no history. With a
    shared store the write goes with the request's step, sent before its first backend call."""
    session = ex.session
    assert session is not None and ex.facts is not None and ex.plan is not None
    took = session.take_oneoff()
    if not ex.anonymous:
        entry = {"at": round(time.time(), 3), "model": ex.facts.model, "frontend": ex.frontend.name,
                 "rules": list(ex.plan.rules)}
        if ex.rider is not None:  # written with the request's step (state_store/step.py)
            ex.rider.note(entry, took is not None)
            return
        session.add_history(entry, ex.state.config.session.max_history)
        await ex.state.sessions.save(session)
    elif ex.rider is not None:
        ex.rider.note(None, took is not None)
