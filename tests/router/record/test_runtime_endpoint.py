"""``GET /v2/admin/runtime``: the process's gauges and its bounded structures' sizes, for operators only."""

from __future__ import annotations

import os
from pathlib import Path

import falcon.testing

from ops_support import build_app

CLIENT, ADMIN = "client-key-runtime", "admin-key-runtime"


async def test_runtime_report_is_for_admins_and_counts_what_requests_leave(tmp_path: Path) -> None:
    app = build_app(tmp_path, auth={"api_keys": [CLIENT, ADMIN], "admin_keys": [ADMIN]},
                    backends={"echo": {"type": "echo"}})
    async with falcon.testing.ASGIConductor(app) as client:
        assert (await client.simulate_get("/v2/admin/runtime")).status_code == 401
        assert (await client.simulate_get("/v2/admin/runtime",
                                          headers={"Authorization": f"Bearer {CLIENT}"})).status_code == 403
        admin = {"Authorization": f"Bearer {ADMIN}"}
        before = (await client.simulate_get("/v2/admin/runtime", headers=admin)).json
        for i in range(3):
            result = await client.simulate_post("/v2/chat/completions", json={
                "model": f"echo:m{i}", "messages": [{"role": "user", "content": "hi"}]},
                headers={"Authorization": f"Bearer {CLIENT}", "x-session-id": f"runtime-{i}"})
            assert result.status_code == 200
        after = (await client.simulate_get("/v2/admin/runtime", headers=admin)).json
    assert after["rss_bytes"] > 10 * 2**20 and after["asyncio_tasks"] >= 1
    assert 0 < after["rss_anon_bytes"] < after["rss_bytes"]  # the heap: part of RSS, not all of it
    if os.path.isdir("/proc/self/fd"):
        assert after["open_fds"] == len(os.listdir("/proc/self/fd")) or after["open_fds"] > 3
    sizes, was = after["structures"], before["structures"]
    assert sizes["sessions"] == was["sessions"] + 3
    assert sizes["plan_memo"] >= was["plan_memo"] + 3  # three models, three plans
    assert sizes["metric_series"] > was["metric_series"]
    assert set(sizes) >= {"tool_histories", "response_cache", "session_rulesets", "rate_limit_buckets",
                          "usage_queue", "routing_stats", "stored_responses"}
    assert sizes["routing_stats"] == was["routing_stats"] + 3  # echo:m0, m1, m2 answered


async def test_tool_call_histories_are_bounded_like_the_sessions(tmp_path: Path) -> None:
    """Each session with tools keeps a tool-call history; there are never more of them than the
    sessions' own bound (``session.max_sessions``), so many sessions cannot grow memory past it."""
    app = build_app(tmp_path, auth={"api_keys": [CLIENT, ADMIN], "admin_keys": [ADMIN]},
                    backends={"echo": {"type": "echo"}}, session={"max_sessions": 3})
    tools = [{"type": "function", "function": {"name": "read_file", "parameters": {"type": "object"}}}]
    admin = {"Authorization": f"Bearer {ADMIN}"}
    async with falcon.testing.ASGIConductor(app) as client:
        sizes = []
        for i in range(6):
            result = await client.simulate_post("/v2/chat/completions", json={
                "model": "echo:m", "tools": tools, "messages": [{"role": "user", "content": "hi"}]},
                headers={"Authorization": f"Bearer {CLIENT}", "x-session-id": f"tools-{i}"})
            assert result.status_code == 200
            sizes.append((await client.simulate_get("/v2/admin/runtime", headers=admin)).json["structures"]["tool_histories"])
    assert sizes == [1, 2, 3, 3, 3, 3]
