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
    if os.path.isdir("/proc/self/fd"):
        assert after["open_fds"] == len(os.listdir("/proc/self/fd")) or after["open_fds"] > 3
    sizes, was = after["structures"], before["structures"]
    assert sizes["sessions"] == was["sessions"] + 3
    assert sizes["plan_memo"] >= was["plan_memo"] + 3  # three models, three plans
    assert sizes["metric_series"] > was["metric_series"]
    assert set(sizes) >= {"tool_histories", "response_cache", "session_rulesets", "rate_limit_buckets",
                          "usage_queue"}
