"""``GET /metrics``: scraped and parsed with the Prometheus text parser after real traffic."""

from __future__ import annotations

import json
from pathlib import Path

import falcon.testing

from fakes.provider import FakeProvider, loop
from ops_support import AUTH, build_app, closed_port, parse_metrics, post_chat, samples, wait_for
from router.record.metrics import MAX_MODELS

RULES = """rules:
  - name: failover
    when: model == "fo"
    route: dead:fo -> echo:fo
  - name: limited
    when: model == "limited"
    route: echo
    limits: rpm(1)
  - name: looping
    when: model == "looper"
    route: fake:looper
"""


async def test_metrics_after_traffic(tmp_path: Path, fake_provider: FakeProvider) -> None:
    app = build_app(tmp_path, {"10-ops.yaml": RULES}, backends={
        "echo": {"type": "echo"}, "other": {"type": "echo"},
        "dead": {"type": "openai", "base_url": f"http://127.0.0.1:{closed_port()}/v1", "api_key": "sk-x"},
        "fake": {"type": "openai", "base_url": f"{fake_provider.url}/v1", "api_key": fake_provider.key("openai")}})
    fake_provider.on_model("looper", loop("I will try the same approach again now. ", times=300, gap=0.001))
    async with falcon.testing.ASGIConductor(app) as client:
        assert (await post_chat(client, text="one two three")).status_code == 200
        assert (await post_chat(client, "anthropic", stream=True)).status_code == 200
        assert (await post_chat(client, "gemini", model="echo-large")).status_code == 200
        assert (await post_chat(client, model="fo")).status_code == 200
        assert (await post_chat(client, model="limited")).status_code == 200
        limited = await post_chat(client, model="limited")
        assert limited.status_code == 429 and limited.headers.get("retry-after")
        # Not streamed: Falcon's in-process client hangs up on SSE streams after the first event
        # (uvicorn does not); the streamed cut is covered on a live server in test_guards_e2e.
        cut = await post_chat(client, model="looper")
        assert cut.status_code == 200 and "cut off" in cut.text
        await app.monitor.check_all()

        result = await client.simulate_get("/metrics", headers=AUTH)
        assert result.status_code == 200
        assert result.headers["content-type"].startswith("text/plain")
        metrics = parse_metrics(result.text)

        async def rate_limit_audit() -> list[dict]:
            body = (await client.simulate_get("/v2/audit/logs", headers=AUTH, params={"type": "rate_limit"})).json
            return body["data"]

        audited = await wait_for(rate_limit_audit)
        assert len(audited) == 1 and audited[0]["outcome"] == "rejected" and "rpm(1" in json.dumps(audited[0]["detail"])

    def labels(name: str) -> list[dict[str, str]]:
        return [s.labels for s in samples(metrics, name)]

    requests = {(l["frontend"], l["backend"], l["model"], l["status"]) for l in labels("llm_proxy_requests_total")}
    assert {("openai", "echo", "gpt-4", "200"), ("anthropic", "echo", "gpt-4", "200"),
            ("gemini", "echo", "echo-large", "200"), ("openai", "echo", "fo", "200"),
            ("openai", "fake", "looper", "200")} <= requests
    assert any(r[3] == "429" for r in requests)
    assert all(set(l) == {"frontend", "backend", "model", "status"} for l in labels("llm_proxy_requests_total"))

    tokens = {(l["backend"], l["model"], l["type"]) for l in labels("llm_proxy_tokens_total")}
    assert {("echo", "gpt-4", "prompt"), ("echo", "gpt-4", "completion")} <= tokens

    latency = labels("llm_proxy_request_seconds_count")
    assert {(l["frontend"], l["backend"]) for l in latency} >= {("openai", "echo"), ("anthropic", "echo")}
    assert all("le" in l for l in labels("llm_proxy_request_seconds_bucket"))
    assert {l["backend"] for l in labels("llm_proxy_ttfb_seconds_count")} >= {"echo", "fake"}

    active = samples(metrics, "llm_proxy_active_streams")
    assert len(active) == 1 and active[0].value == 0  # every stream has ended

    guards = {l["kind"]: s.value for l, s in zip(labels("llm_proxy_guard_events_total"),
                                                   samples(metrics, "llm_proxy_guard_events_total"))}
    assert guards and all(v >= 1 for v in guards.values()), guards

    limited_rows = samples(metrics, "llm_proxy_rate_limit_rejections_total")
    assert [(s.labels, s.value) for s in limited_rows] == [({"scope": "proxy"}, 1.0)]

    failovers = samples(metrics, "llm_proxy_failovers_total")
    assert [(s.labels, s.value) for s in failovers] == [({"backend": "echo"}, 1.0)]
    errors = {(s.labels["backend"], s.labels["kind"]) for s in samples(metrics, "llm_proxy_errors_total")}
    assert ("dead", "connection") in errors

    up = {s.labels["backend"]: s.value for s in samples(metrics, "llm_proxy_backend_up")}
    assert up == {"echo": 1.0, "other": 1.0, "dead": 0.0, "fake": 1.0}
    assert samples(metrics, "llm_proxy_config_generation")[0].value == 0
    assert samples(metrics, "llm_proxy_usage_records_dropped")[0].value == 0


async def test_model_label_cardinality_is_bounded(tmp_path: Path) -> None:
    app = build_app(tmp_path)
    async with falcon.testing.ASGIConductor(app) as client:
        for i in range(100):
            assert (await post_chat(client, model=f"client-model-{i:03d}")).status_code == 200
        metrics = parse_metrics((await client.simulate_get("/metrics", headers=AUTH)).text)
    models = {s.labels["model"] for s in samples(metrics, "llm_proxy_requests_total")}
    assert len(models) <= MAX_MODELS + 1 <= 51
    assert "other" in models and "client-model-000" in models and "client-model-099" not in models
    token_models = {s.labels["model"] for s in samples(metrics, "llm_proxy_tokens_total")}
    assert token_models <= models
    total = sum(s.value for s in samples(metrics, "llm_proxy_requests_total"))
    assert total == 100  # nothing lost by folding models into "other"
