"""router/responses_store.py: replies kept per caller, and the size bound on what is kept."""

from __future__ import annotations

import pytest

import router.responses_store as responses_store
from router.config import SessionConfig
from router.responses_store import ResponseStore


def _reply(rid: str, text: str) -> dict:
    return {"id": rid, "object": "response", "output": [
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}]}


async def test_a_reply_is_kept_for_its_caller_only() -> None:
    store = ResponseStore.from_config(SessionConfig())
    conversation = [{"type": "message", "role": "user", "content": "hi"}]
    assert await store.put(_reply("resp_1", "hello"), conversation, "key-a")
    assert (await store.get("resp_1", "key-a")) == {"input": conversation, "response": _reply("resp_1", "hello")}
    assert await store.get("resp_1", "key-b") is None
    assert await store.conversation("resp_1", "key-a") == conversation + _reply("resp_1", "hello")["output"]


async def test_a_reply_over_the_byte_limit_is_answered_but_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bound counts UTF-8 bytes of the compact JSON: four-byte characters count four times."""
    store = ResponseStore.from_config(SessionConfig())
    conversation = [{"type": "message", "role": "user", "content": "hi"}]
    size = len(b'{"response":' + responses_store.fastjson.dumps(_reply("resp_2", "")) + b',"input":'
               + responses_store.fastjson.dumps(conversation) + b"}")
    monkeypatch.setattr(responses_store, "MAX_STORED_BYTES", size + 8)
    assert await store.put(_reply("resp_2", "\U0001F600" * 2), conversation, "key")  # 8 bytes: at the limit
    assert await store.get("resp_2", "key") is not None
    assert not await store.put(_reply("resp_3", "\U0001F600" * 2 + "x"), conversation, "key")  # one byte over
    assert await store.get("resp_3", "key") is None


async def test_a_reply_whose_id_cannot_be_a_key_is_not_kept() -> None:
    store = ResponseStore.from_config(SessionConfig())
    assert not await store.put(_reply("no spaces allowed", "x"), [], "key")
    assert not await store.put({"object": "response"}, [], "key")
