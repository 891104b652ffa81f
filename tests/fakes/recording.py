"""What the fake provider saw: one :class:`RecordedRequest` per request, left on the aiohttp
request under :data:`RECORD` by the recording middleware; and the JSON response helper every
wire format's handlers use."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import CIMultiDictProxy


@dataclass(eq=False)
class RecordedRequest:
    """One request as the fake saw it, plus what it did about it.

    Fields filled for every request: ``method``, ``path``, ``query``, ``headers`` (case-insensitive),
    ``raw``, ``body`` (parsed JSON or None), ``form`` (form-encoded bodies). Generation requests also
    get ``family``, ``endpoint``, ``model``, ``stream``, ``behaviour``. ``status`` is the HTTP status
    sent (None for a reset). Streams count content ``chunks_sent``; ``disconnected`` is True when the
    client went away before the fake finished, ``completed`` when the response ended normally.
    """

    method: str
    path: str
    query: dict[str, str]
    headers: CIMultiDictProxy[str]
    raw: bytes = b""
    body: Any = None
    form: dict[str, str] | None = None
    family: str | None = None
    endpoint: str | None = None
    model: str | None = None
    stream: bool = False
    behaviour: str | None = None
    status: int | None = None
    chunks_sent: int = 0
    disconnected: bool = False
    reset: bool = False
    completed: bool = False
    _done: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    async def wait(self, timeout: float = 2.0) -> RecordedRequest:
        """Wait until the fake has finished handling this request (streams keep running after
        the client's last read), so ``disconnected``/``chunks_sent`` are final."""
        await asyncio.wait_for(self._done.wait(), timeout)
        return self

    @property
    def api_key(self) -> str | None:
        """The credential the client presented, however this family carries it."""
        bearer = self.headers.get("authorization", "")
        token = bearer[7:].strip() if bearer.lower().startswith("bearer ") else None
        if self.family == "anthropic":
            return self.headers.get("x-api-key") or token
        if self.family == "gemini":
            return self.headers.get("x-goog-api-key") or self.query.get("key") or token
        return token


RECORD = web.RequestKey("record", RecordedRequest)  # where the middleware leaves the record


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, headers=headers,
                        text=json.dumps(body, ensure_ascii=False), content_type="application/json")
