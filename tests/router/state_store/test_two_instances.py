"""Two proxy processes on one real Redis behave as one proxy: limits, sessions, circuits, the
response cache and reloads are shared (``state.store: redis``)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from fakes.behaviours import delay, error, reply
from redis_support import ADMIN, ADMIN_KEY, AUTH, Proxy, post_chat, wait_for, write_proxy_config


@pytest.fixture
def pair(tmp_path: Path, provider: Any, prefix: str):
    """Start two proxies sharing ``prefix`` with the given rules: ``pair(rules) -> (a, b)``."""
    started: list[Proxy] = []

    async def start(rules: list[dict[str, Any]] | None = None, *extra: str,
                    keys: list[str] | None = None, client_keys: list[str] | None = None,
                    admin_keys: list[str] | None = None) -> tuple[Proxy, Proxy]:
        config = write_proxy_config(tmp_path / "cfg", provider.openai_base_url, keys or provider.key("openai"), prefix,
                                    rules=rules, client_keys=client_keys, admin_keys=admin_keys)
        a, b = Proxy(config, *extra), Proxy(config, *extra)
        started.extend([a, b])
        await asyncio.gather(asyncio.to_thread(a.wait_ready), asyncio.to_thread(b.wait_ready))
        return a, b

    yield start
    for proxy in started:
        proxy.stop()


async def test_rpm_holds_across_both(pair):
    a, b = await pair([{"name": "lim", "limits": "rpm(3)"}])
    async with httpx.AsyncClient(timeout=10) as client:
        statuses = [(await post_chat(client, proxy, f"q{i}")).status_code for i, proxy in enumerate([a, b] * 3)]
    assert sorted(statuses) == [200, 200, 200, 429, 429, 429], statuses
    assert statuses[:3] == [200, 200, 200]


async def test_concurrency_holds_across_both(pair, provider):
    a, b = await pair([{"name": "one-at-a-time", "limits": "concurrency(1)"}])
    provider.enqueue(delay(1.5, reply("slow")))
    async with httpx.AsyncClient(timeout=10) as client:
        slow = asyncio.create_task(post_chat(client, a, "slow"))
        await asyncio.sleep(0.5)  # the slow one holds the slot now
        other = await post_chat(client, b, "fast")
        assert other.status_code == 429 and "concurrency(1)" in other.text
        assert (await slow).status_code == 200
        again = await post_chat(client, b, "after")  # the slot came back when the slow one ended
        assert again.status_code == 200


async def test_a_backend_set_through_one_is_used_by_the_other(pair, provider):
    a, b = await pair()
    session = {"x-session-id": "shared-session-1"}
    async with httpx.AsyncClient(timeout=10) as client:
        set_model = await post_chat(client, a, "!/model(special-model)", headers=session)
        assert set_model.status_code == 200
        answer = await post_chat(client, b, "hello", headers=session)
        assert answer.status_code == 200
    assert provider.last.body["model"] == "special-model"


async def test_three_failures_through_one_open_the_circuit_for_the_other(pair, provider):
    a, b = await pair()
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(3):
            failed = await post_chat(client, a, "x", model="fail-500")
            assert failed.status_code >= 500
        calls_before = len(provider.generations)

        async def skipped() -> bool:
            health = (await client.get(b.url + "/health/backends", headers=AUTH)).json()
            return health["backends"]["up"]["models"].get("fail-500", {}).get("state") == "open"

        assert await wait_for(skipped, 5)
        # The circuit is the failing model's (issue 14): b skips that model, not the backend.
        health = (await client.get(b.url + "/health/backends", headers=AUTH)).json()
        assert health["backends"]["up"]["state"] == "closed"
        assert len(provider.generations) == calls_before  # b learnt it without calling the provider
        assert (await post_chat(client, b, "x")).status_code == 200  # the backend's other models still serve


async def test_a_cached_answer_is_served_by_the_other(pair, provider):
    a, b = await pair([{"name": "cached", "post": "cache(ttl=60)"}])
    async with httpx.AsyncClient(timeout=10) as client:
        first = await post_chat(client, a, "cache me")
        assert first.status_code == 200 and first.headers["x-cache"] == "miss"
        calls = len(provider.generations)

        async def hit() -> httpx.Response | None:
            reply_ = await post_chat(client, b, "cache me")
            return reply_ if reply_.headers.get("x-cache") == "hit" else None

        second = await wait_for(hit, 5)
    assert second is not None and second.json()["choices"][0]["message"]["content"] == \
        first.json()["choices"][0]["message"]["content"]
    assert len(provider.generations) == calls  # b answered from the entry a stored


async def test_a_reload_posted_to_one_reaches_the_other(pair, tmp_path):
    a, b = await pair(admin_keys=[ADMIN_KEY])  # the audit log of reloads is the operator's
    async with httpx.AsyncClient(timeout=10) as client:
        before = (await client.get(b.url + "/health/backends", headers=ADMIN)).json()
        assert before["generation"] == 0
        rules = tmp_path / "cfg" / "routes.d" / "10-test.yaml"
        rules.write_text(yaml.safe_dump({"rules": [{"name": "new", "limits": "rpm(1)"}]}), encoding="utf-8")
        posted = await client.post(a.url + "/v2/admin/reload", headers=ADMIN)
        assert posted.status_code == 200 and posted.json()["generation"] == 1

        async def reached() -> bool:
            # b's own file watcher may also see the change (then b counts two reloads): the peer's
            # message must be among them, audited on b as a reload for reason "peer".
            audit = (await client.get(b.url + "/v2/audit/logs?type=config_reload", headers=ADMIN)).json()["data"]
            return any(e["outcome"] == "ok" and e["detail"].get("reason") == "peer" for e in audit)

        assert await wait_for(reached, 15)
        assert (await client.get(b.url + "/health/backends", headers=ADMIN)).json()["generation"] >= 1
        # b compiled the new rule itself: rpm(1) now holds, shared across both
        assert (await post_chat(client, b, "one")).status_code == 200
        assert (await post_chat(client, a, "two")).status_code == 429


async def test_a_key_cooled_down_through_one_sits_out_on_the_other(pair, provider):
    first, second = "sk-upstream-key-one-0001", "sk-upstream-key-two-0002"
    provider.keys["openai"] = {first, second}
    a, b = await pair(keys=[first, second])
    provider.enqueue(error(429, retry_after=60))
    async with httpx.AsyncClient(timeout=10) as client:
        served = await post_chat(client, a, "x")  # the first key gets 429 and cools; the second answers
        assert served.status_code == 200
        used = [r.headers["Authorization"] for r in provider.generations]
        assert sorted(used) == [f"Bearer {first}", f"Bearer {second}"]  # (rotation may start at either)
        cooled, fine = used
        await asyncio.sleep(1.0)  # the cooldown travels over pub/sub
        for i in range(3):  # b rotates over its keys, but the cooled one sits out
            assert (await post_chat(client, b, f"y{i}")).status_code == 200
    used = [r.headers["Authorization"] for r in provider.generations[2:]]
    assert used == [fine] * 3 and cooled not in used


async def test_tool_call_loops_are_counted_across_both(pair, provider):
    a, b = await pair([{"name": "loops", "post": "tool_call_loop_detection(max_repeats=2)"}])
    call = {"name": "read_file", "arguments": {"path": "a.py"}}
    tools = [{"type": "function", "function": {"name": "read_file", "parameters": {
        "type": "object", "properties": {"path": {"type": "string"}}}}}]
    session = {**AUTH, "x-session-id": "tool-loop-session"}
    finishes = []
    async with httpx.AsyncClient(timeout=10) as client:
        for i, proxy in enumerate([a, b, a]):
            provider.enqueue(reply(tool_calls=[call]))
            body = {"model": "m", "messages": [{"role": "user", "content": f"go {i}"}], "tools": tools}
            answer = await client.post(proxy.url + "/v2/chat/completions", json=body, headers=session)
            assert answer.status_code == 200, answer.text
            choice = answer.json()["choices"][0]
            finishes.append((choice["finish_reason"], choice["message"].get("content") or ""))
    assert [f for f, _ in finishes[:2]] == ["tool_calls", "tool_calls"]
    # a saw the call only once before, b once: only the shared history knows it is the third
    assert finishes[2][0] == "stop" and "tool call loop stopped" in finishes[2][1], finishes


async def test_a_stored_response_is_continued_and_fetched_through_the_other(pair, provider):
    other_key = "sk-test-other-client-0123456789"
    a, b = await pair(client_keys=[AUTH["Authorization"].split()[1], other_key])
    other = {"Authorization": f"Bearer {other_key}"}
    async with httpx.AsyncClient(timeout=10) as client:
        first = await client.post(a.url + "/v2/responses", json={"model": "m", "input": "my name is Ada"}, headers=AUTH)
        assert first.status_code == 200, first.text
        rid = first.json()["id"]
        follow = await client.post(b.url + "/v2/responses", headers=AUTH,
                                   json={"model": "m", "input": "and yours?", "previous_response_id": rid})
        assert follow.status_code == 200, follow.text
        sent = [(m["role"], m["content"]) for m in provider.last.body["messages"]]
        assert sent[0] == ("user", "my name is Ada") and sent[-1] == ("user", "and yours?") and len(sent) == 3
        fetched = await client.get(b.url + f"/v2/responses/{rid}", headers=AUTH)
        assert fetched.status_code == 200 and fetched.json() == first.json()
        # another caller finds nothing under that id, on either instance
        for proxy in (a, b):
            assert (await client.get(proxy.url + f"/v2/responses/{rid}", headers=other)).status_code == 404
            stolen = await client.post(proxy.url + "/v2/responses", headers=other,
                                       json={"model": "m", "input": "and?", "previous_response_id": rid})
            assert stolen.status_code == 400 and stolen.json()["error"]["code"] == "previous_response_not_found"
            assert "Ada" not in stolen.text
