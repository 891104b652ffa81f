"""Rate limits from rule files, through the server: 429 with Retry-After in each client's error
shape, the rejection audited, other callers unaffected."""

from __future__ import annotations

import asyncio
from pathlib import Path

import falcon.testing
import pytest

from proxy_support import chat, write_config
from router.app import create_app

RULE = "rules:\n  - name: tight\n    limits: rpm(2, per=caller)\n"


@pytest.mark.parametrize("frontend,shape", [("openai", "error"), ("anthropic", "type"), ("gemini", "error")])
def test_third_request_in_a_minute_is_refused_in_the_clients_shape(tmp_path: Path, frontend: str, shape: str) -> None:
    routes = tmp_path / "routes.d"
    routes.mkdir()
    (routes / "10.yaml").write_text(RULE)
    app = create_app(write_config(tmp_path, routes_dir=str(routes), auth={"api_keys": ["key-a-123456", "key-b-123456"]}))
    client = falcon.testing.TestClient(app)
    a = {"Authorization": "Bearer key-a-123456"}
    assert [chat(client, frontend, "hi", headers=a).status_code for _ in range(2)] == [200, 200]
    refused = chat(client, frontend, "hi", headers=a)
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert shape in refused.json and "rpm(2)" in str(refused.json)
    assert chat(client, frontend, "hi", headers={"Authorization": "Bearer key-b-123456"}).status_code == 200
    audit, _ = asyncio.run(app.state_ref.recorder.store.audit_logs(type_="rate_limit"))
    assert audit and audit[0]["detail"]["limit"] == "rpm(2, per=caller)" and "key-a-123456" not in str(audit)
