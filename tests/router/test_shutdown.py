"""Graceful shutdown (what uvicorn does on SIGTERM): stop accepting, let the open stream finish,
then flush the usage queue to SQLite before the process would exit."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from fakes.provider import FakeProvider, stream_chunks
from ops_support import AUTH, build_app
from proxy_support import LiveServer, chat_body, sse_data
from router.record.usage import SQLiteUsageStore

CHUNKS = [f"piece{i} " for i in range(12)]


async def test_open_stream_drains_and_usage_is_flushed_on_exit(tmp_path: Path, fake_provider: FakeProvider) -> None:
    db = tmp_path / "usage.db"
    app = build_app(tmp_path, usage={"path": str(db)}, backends={
        "echo": {"type": "echo"},
        "slow": {"type": "openai", "base_url": f"{fake_provider.url}/v1", "api_key": fake_provider.key("openai")}})
    fake_provider.on_model("slow-model", stream_chunks(CHUNKS, gap=0.05))
    store = app.state_ref.recorder.store
    store.flush_interval = 5.0  # a long batching window: only the shutdown flush can write the record in time
    server = LiveServer(app).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=10) as client:
            # A request that finished before shutdown, still sitting in the queue.
            done = await client.post("/v2/chat/completions", json=chat_body("openai", "early"))
            assert done.status_code == 200
            body = b""
            async with client.stream("POST", "/v2/chat/completions",
                                     json=chat_body("openai", "slowly", model="slow:slow-model", stream=True)) as r:
                assert r.status_code == 200
                request_id = r.headers["x-request-id"]
                chunks = r.aiter_bytes()
                while b"piece1" not in body:
                    body += await chunks.__anext__()
                server.server.should_exit = True  # what uvicorn's SIGTERM handler does
                asked = time.monotonic()
                await asyncio.sleep(0.3)
                with pytest.raises(httpx.TransportError):  # no new connections while draining
                    async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=2) as fresh:
                        await fresh.post("/v2/chat/completions", json=chat_body("openai", "late"))
                async for chunk in chunks:
                    body += chunk
            events = sse_data(body.decode())
            assert events[-1] == "[DONE]"
            text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1] if e["choices"])
            assert text == "".join(CHUNKS)  # the open stream completed
        await asyncio.to_thread(server.thread.join, 10)
        assert not server.thread.is_alive()
        assert time.monotonic() - asked < 3  # the flush does not wait out the 5 s batching window
    finally:
        if server.thread.is_alive():
            await asyncio.to_thread(server.stop)
        server.sock.close()
    assert store.written >= 2 and store.dropped == 0
    reopened = SQLiteUsageStore(str(db))
    try:
        items, _ = await reopened.recent(limit=10)
    finally:
        await reopened.close()
    by_id = {i["request_id"]: i for i in items}
    assert done.headers["x-request-id"] in by_id
    record = by_id[request_id]
    assert record["backend"] == "slow" and record["stream"] is True and record["status"] == 200
    assert record["finish_reason"] == "stop" and record["completion_tokens"] > 0


async def test_abandoned_stream_stops_the_upstream_and_is_recorded_incomplete(
        tmp_path: Path, fake_provider: FakeProvider) -> None:
    app = build_app(tmp_path, backends={
        "echo": {"type": "echo"},
        "slow": {"type": "openai", "base_url": f"{fake_provider.url}/v1", "api_key": fake_provider.key("openai")}})
    fake_provider.on_model("slow-model", stream_chunks([f"bit{i} " for i in range(20)], gap=0.05))
    server = LiveServer(app).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=10) as client:
            async with client.stream("POST", "/v2/chat/completions",
                                     json=chat_body("openai", "go", model="slow:slow-model", stream=True)) as r:
                request_id, got = r.headers["x-request-id"], b""
                async for chunk in r.aiter_bytes():
                    got += chunk
                    if b"bit1" in got:
                        break
        upstream = fake_provider.generations[0]
        await upstream.wait(3)
        store = app.state_ref.recorder.store
        await asyncio.sleep(0.4)
        items, _ = await store.recent(10)
    finally:
        await asyncio.to_thread(server.stop)
    record = next(i for i in items if i["request_id"] == request_id)
    assert upstream.disconnected and upstream.chunks_sent < 20
    assert record["finish_reason"] == "incomplete" and record["tokens_estimated"]
