"""``--workers 2`` with ``state.store: redis`` behaves as one proxy for limits and sessions (each
request on a new connection, so the kernel spreads them over both workers)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from redis_support import Proxy, post_chat, write_proxy_config


async def test_two_workers_share_limits_and_sessions(tmp_path: Path, provider, prefix: str):
    config = write_proxy_config(tmp_path, provider.openai_base_url, provider.key("openai"), prefix,
                                rules=[{"name": "lim", "when": 'model == "limited"', "limits": "rpm(3)"}])
    proxy = Proxy(config, "--workers", "2")
    try:
        await asyncio.to_thread(proxy.wait_ready)
        statuses = []
        for i in range(8):
            async with httpx.AsyncClient(timeout=10) as client:  # a new connection each time
                statuses.append((await post_chat(client, proxy, f"q{i}", model="limited")).status_code)
        assert statuses.count(200) == 3 and statuses.count(429) == 5, statuses
        session = {"x-session-id": "workers-session"}
        async with httpx.AsyncClient(timeout=10) as client:
            assert (await post_chat(client, proxy, "!/model(chosen-model)", headers=session)).status_code == 200
        for i in range(6):
            async with httpx.AsyncClient(timeout=10) as client:
                assert (await post_chat(client, proxy, f"w{i}", headers=session)).status_code == 200
            assert provider.last.body["model"] == "chosen-model"
    finally:
        proxy.stop()
