"""The response cache in Redis: an answer cached by one instance is served by every other.

Entries are JSON (never pickles: whoever can write to the Redis must not be able to run code in
the proxy), expire with their rule's ``ttl`` and are refused above ``MAX_ENTRY_BYTES`` serialized.
A lookup is one GET, awaited; storing is written in the background. When Redis fails a lookup is
a miss (``fail_open``) or the 503 (``fail_closed``).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from ..cache import MAX_ENTRY_CHARS
from ..wire.canonical import ChatResponse, ImagePart, OpaquePart, Part, TextPart, ThinkingPart, ToolCallPart, Usage
from .client import RedisState, StateStoreUnavailable

MAX_ENTRY_BYTES = 2 * MAX_ENTRY_CHARS
_PARTS = {"text": TextPart, "image": ImagePart, "thinking": ThinkingPart, "tool_call": ToolCallPart,
          "opaque": OpaquePart}


def encode_response(response: ChatResponse) -> bytes:
    return json.dumps(asdict(response), ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def decode_response(raw: bytes) -> ChatResponse:
    data: dict[str, Any] = json.loads(raw)
    parts = [_part(p) for p in data["parts"]]
    return ChatResponse(id=data["id"], model=data["model"], parts=parts, finish_reason=data["finish_reason"],
                        usage=Usage(**data["usage"]), created=data["created"])


def _part(data: dict[str, Any]) -> Part:
    if data["type"] == "thinking" and data.get("source") is not None:
        data = {**data, "source": OpaquePart(**data["source"])}  # a Responses reasoning item, kept whole
    return _PARTS[data["type"]](**data)  # type: ignore[no-any-return]


class RedisResponseCache:
    shared = True

    def __init__(self, store: RedisState) -> None:
        self.store = store

    async def fetch(self, key: str) -> ChatResponse | None:
        redis_key = self.store.key("rc", key)
        try:
            raw = await self.store.run("cache_get", lambda: self.store.client.get(redis_key))
        except StateStoreUnavailable:
            if not self.store.fail_open:
                raise
            return None
        if raw is None:
            return None
        try:
            return decode_response(raw)
        except (ValueError, KeyError, TypeError):
            return None  # written by another version: a miss

    def put(self, key: str, response: ChatResponse, ttl: int) -> bool:
        if response.finish_reason in ("error", "loop"):
            return False
        raw = encode_response(response)
        if len(raw) > MAX_ENTRY_BYTES:
            return False
        redis_key = self.store.key("rc", key)
        self.store.background("cache_put", lambda: self.store.client.set(redis_key, raw, ex=max(1, int(ttl))))
        return True
