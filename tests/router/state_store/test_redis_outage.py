"""Redis stopped mid-run (a private redis-server of this test, never the machine's): ``fail_open``
keeps serving, ``fail_closed`` answers 503 saying the state store is unavailable; no 500, no
request waits beyond the timeout, ``/health`` says degraded; both recover when Redis is back."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from redis_support import AUTH, PrivateRedis, Proxy, post_chat, wait_for, write_proxy_config

TIMEOUT_MS = 100


@pytest.mark.parametrize("policy", ["fail_open", "fail_closed"])
async def test_redis_stopped_and_started_again(tmp_path: Path, provider, prefix: str, policy: str):
    server = PrivateRedis().start()
    config = write_proxy_config(tmp_path, provider.openai_base_url, provider.key("openai"), prefix,
                                rules=[{"name": "lim", "limits": "rpm(1000), concurrency(10)"}], url=server.url,
                                on_unavailable=policy, timeout_ms=TIMEOUT_MS)
    proxy = Proxy(config)
    try:
        await asyncio.to_thread(proxy.wait_ready)
        session = {"x-session-id": "outage-1"}
        async with httpx.AsyncClient(timeout=10) as client:
            assert (await post_chat(client, proxy, "before", headers=session)).status_code == 200
            assert (await client.get(proxy.url + "/health")).json()["status"] == "ok"

            server.stop()
            for i in range(4):
                started = time.monotonic()
                answer = await post_chat(client, proxy, f"during {i}", headers=session)
                took = time.monotonic() - started
                assert took < 2.0, took  # a few Redis calls, each bounded by timeout_ms
                if policy == "fail_open":
                    assert answer.status_code == 200, answer.text
                else:
                    assert answer.status_code == 503, answer.text
                    error = answer.json()["error"]
                    assert "state store is unavailable" in error["message"]
            # stored Responses too: kept in this process (fail_open), or the 503 (fail_closed)
            made = await client.post(proxy.url + "/v2/responses", json={"model": "m", "input": "during"}, headers=AUTH)
            stored = await client.get(proxy.url + f"/v2/responses/{made.json().get('id', 'resp_x')}", headers=AUTH)
            if policy == "fail_open":
                assert made.status_code == 200 and stored.status_code == 200, (made.text, stored.text)
                assert stored.json() == made.json()
            else:
                assert made.status_code == 503 and stored.status_code == 503, (made.text, stored.text)
                assert "state store is unavailable" in stored.json()["error"]["message"]
            health = (await client.get(proxy.url + "/health")).json()
            assert health["status"] == "degraded" and health["state_store"]["store"] == "redis"
            metrics = (await client.get(proxy.url + "/metrics", headers=AUTH)).text
            assert 'llm_proxy_state_store_up{store="redis"} 0.0' in metrics
            assert "llm_proxy_state_store_errors_total" in metrics

            server.start()  # the same port: the proxy reconnects by itself

            async def recovered() -> bool:
                return (await client.get(proxy.url + "/health")).json()["status"] == "ok"

            assert await wait_for(recovered, 10)
            assert (await post_chat(client, proxy, "after", headers=session)).status_code == 200
            metrics = (await client.get(proxy.url + "/metrics", headers=AUTH)).text
            assert 'llm_proxy_state_store_up{store="redis"} 1.0' in metrics
        assert "Traceback" not in proxy.output()
    finally:
        proxy.stop()
        server.stop()
