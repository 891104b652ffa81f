"""Backend health: ``/health``, ``/health/backends`` after real checks, and the circuit breaker
(closed → open after ``failure_threshold`` failures → one half-open probe → closed) on a fake clock."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import falcon.testing

from fakes.provider import FakeProvider
from ops_support import AUTH, build_app, closed_port, post_chat
from router.http.health import HealthMonitor
from router.record.metrics import Metrics


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def monitor(threshold: int = 3, open_seconds: float = 30.0) -> tuple[HealthMonitor, Clock]:
    clock = Clock()
    ref = SimpleNamespace(state=SimpleNamespace(backends={"a": None, "b": None}))
    return HealthMonitor(ref, Metrics(), failure_threshold=threshold, open_seconds=open_seconds, clock=clock), clock


def test_circuit_breaker_cycle() -> None:
    hm, clock = monitor(threshold=3, open_seconds=30)
    assert hm.allow("a") and hm.circuits.get("a", "") is None  # unknown backend: closed
    hm.record("a", False, "server")
    hm.record("a", False, "connection")
    assert hm.allow("a") and hm.circuit("a").state(clock()) == "closed"  # below the threshold
    hm.record("a", False, "server")
    assert hm.circuit("a").state(clock()) == "open" and not hm.report()["a"]["ok"]
    assert not hm.allow("a") and hm.allow("b")  # other backends unaffected
    clock.now += 29.9
    assert not hm.allow("a")
    clock.now += 0.2
    assert hm.circuit("a").state(clock()) == "half_open"
    assert hm.allow("a")  # the single probe
    assert not hm.allow("a") and not hm.allow("a")  # everyone else waits for it
    hm.record("a", False, "server")  # the probe failed: open again for a full period
    assert hm.circuit("a").state(clock()) == "open" and not hm.allow("a")
    clock.now += 29
    assert not hm.allow("a")
    clock.now += 2
    assert hm.allow("a") and not hm.allow("a")
    hm.record("a", True)  # the probe succeeded: closed
    status = hm.circuit("a")
    assert status.state(clock()) == "closed" and hm.report()["a"]["ok"] and status.failures == 0
    assert all(hm.allow("a") for _ in range(5))


def test_success_resets_the_failure_streak_and_client_errors_do_not_count() -> None:
    hm, clock = monitor(threshold=2)
    hm.record("a", False, "server")
    hm.record("a", True)
    hm.record("a", False, "server")
    assert hm.allow("a")  # never two in a row
    for _ in range(5):
        hm.record("a", False, "bad_request")
        hm.record("a", False, "not_found")
    assert hm.allow("a") and hm.circuit("a").failures == 1
    hm.record("a", False, "timeout")
    assert not hm.allow("a") and hm.circuit("a").last_error == "timeout"


def test_probe_slot_is_released_by_any_outcome() -> None:
    hm, clock = monitor(threshold=1, open_seconds=5)
    hm.record("a", False, "server")
    clock.now += 5
    assert hm.allow("a") and not hm.allow("a")
    hm.record("a", False, "server")
    clock.now += 5
    assert hm.allow("a")  # a new probe after the new period, not stuck "probing"


async def test_health_endpoints_report_per_backend(tmp_path: Path, fake_provider: FakeProvider) -> None:
    app = build_app(tmp_path, backends={
        "echo": {"type": "echo"}, "other": {"type": "echo"},
        "up": {"type": "openai", "base_url": f"{fake_provider.url}/v1", "api_key": fake_provider.key("openai")},
        "dead": {"type": "openai", "base_url": f"http://127.0.0.1:{closed_port()}/v1", "api_key": "sk-dead-1"}})
    async with falcon.testing.ASGIConductor(app) as client:
        live = await client.simulate_get("/health")
        assert live.status_code == 200  # liveness needs no key
        await app.monitor.check_all()
        body = (await client.simulate_get("/health/backends", headers=AUTH)).json["backends"]
        assert set(body) == {"echo", "other", "up", "dead"}
        for name in ("echo", "other", "up"):
            assert body[name]["ok"] is True and body[name]["state"] == "closed" and body[name]["last_error"] is None
            assert isinstance(body[name]["latency_ms"], (int, float)) and body[name]["checked_at"]
        assert body["up"]["latency_ms"] > 0
        dead = body["dead"]
        assert dead["ok"] is False and dead["last_error"] == "connection" and dead["checked_at"]
        # A backend that stays down opens its circuit from the checks alone, then dispatch skips it.
        for _ in range(app.monitor.failure_threshold):
            await app.monitor.check_all()
        dead = (await client.simulate_get("/health/backends", headers=AUTH)).json["backends"]["dead"]
        assert dead["state"] == "open" and dead["consecutive_failures"] >= app.monitor.failure_threshold
        assert (await client.simulate_get("/health/backends")).status_code == 401


async def test_health_check_false_is_never_probed(tmp_path: Path) -> None:
    """``health_check: false``: the background checks leave the backend alone (its circuit
    follows real requests only), even when it is down."""
    app = build_app(tmp_path, backends={
        "echo": {"type": "echo"},
        "quiet": {"type": "openai", "base_url": f"http://127.0.0.1:{closed_port()}/v1", "api_key": "sk-quiet-1",
                  "health_check": False}})
    async with falcon.testing.ASGIConductor(app) as client:
        for _ in range(app.monitor.failure_threshold + 1):
            await app.monitor.check_all()
        body = (await client.simulate_get("/health/backends", headers=AUTH)).json["backends"]
    assert body["echo"]["checked_at"]
    assert body["quiet"]["checked_at"] is None and body["quiet"]["state"] == "closed"


async def test_failing_requests_open_the_circuit_and_dispatch_skips_the_backend(tmp_path: Path) -> None:
    rules = "rules:\n  - name: fo\n    when: model == \"fo\"\n    route: dead:fo -> echo:fo\n"
    app = build_app(tmp_path, {"10-fo.yaml": rules}, backends={
        "echo": {"type": "echo"}, "other": {"type": "echo"},
        "dead": {"type": "openai", "base_url": f"http://127.0.0.1:{closed_port()}/v1", "api_key": "sk-dead-2"}})
    assert app.state_ref.state.dispatcher.health is app.monitor  # the breaker dispatch consults
    async with falcon.testing.ASGIConductor(app) as client:
        for _ in range(3):  # each request fails twice on dead (one retry), then echo answers
            assert (await post_chat(client, model="fo")).status_code == 200
        assert app.monitor.report()["dead"]["state"] == "open"
        reply = await post_chat(client, model="fo")
        assert reply.status_code == 200
        records = await _records(client)
        last = next(r for r in records if r["request_id"] == reply.headers["x-request-id"])
        assert [a["status"] for a in last["attempts"]] == ["circuit_open", "ok"]


async def _records(client: falcon.testing.ASGIConductor) -> list[dict]:
    from ops_support import wait_records

    return await wait_records(client, 4)


def test_a_models_failures_open_that_models_circuit_only() -> None:
    hm, clock = monitor(threshold=3)
    for kind in ("server", "server", "timeout"):
        hm.record("a", False, kind, "m1")
    assert not hm.allow("a", "m1")
    assert hm.allow("a", "m2") and hm.allow("a") and hm.circuit("a").state(clock()) == "closed"
    report = hm.report()["a"]
    assert report["state"] == "closed" and report["ok"] and report["scope"] == "backend"
    assert report["models"]["m1"]["state"] == "open" and report["models"]["m1"]["scope"] == "backend+model"
    assert set(report["models"]) == {"m1"}
    hm.record("a", True, None, "m2")  # another model's success closes nothing of m1
    assert not hm.allow("a", "m1")
    clock.now += 30
    assert hm.allow("a", "m1") and not hm.allow("a", "m1")  # m1's single probe
    hm.record("a", True, None, "m1")
    assert hm.allow("a", "m1") and hm.report()["a"]["models"] == {}


def test_connection_failures_open_the_whole_backend() -> None:
    hm, clock = monitor(threshold=3)
    hm.record("a", False, "connection", "m1")
    hm.record("a", False, "connection", "m2")
    hm.record("a", False, "connection", "m3")
    assert not hm.allow("a", "m1") and not hm.allow("a", "other-model") and not hm.allow("a")
    assert hm.report()["a"]["state"] == "open" and hm.report()["a"]["models"] == {}
    assert hm.allow("b", "m1")


async def test_health_and_metrics_show_the_scope(tmp_path: Path, fake_provider: FakeProvider) -> None:
    from fakes.behaviours import error

    keys = ["sk-scope-key-one-1111", "sk-scope-key-two-2222"]
    fake_provider.keys["openai"] = set(keys)
    app = build_app(tmp_path, backends={
        "echo": {"type": "echo"}, "other": {"type": "echo"},
        "up": {"type": "openai", "base_url": f"{fake_provider.url}/v1", "api_keys": keys}})
    app.state_ref.state.dispatcher.retry = type(app.state_ref.state.dispatcher.retry)(retries=0)
    async with falcon.testing.ASGIConductor(app) as client:
        fake_provider.enqueue(error(429, retry_after=7))
        assert (await post_chat(client, model="up:model-a")).status_code == 200  # second key answered
        fake_provider.on_model("model-b", error(500))
        for _ in range(3):
            assert (await post_chat(client, model="up:model-b")).status_code == 502
        assert (await post_chat(client, model="up:model-c")).status_code == 200  # other models still served
        up = (await client.simulate_get("/health/backends", headers=AUTH)).json["backends"]["up"]
        assert up["state"] == "closed" and up["scope"] == "backend"
        assert up["models"]["model-b"]["state"] == "open" and up["models"]["model-b"]["consecutive_failures"] == 3
        [cooling] = up["key_cooldowns"]
        assert cooling["model"] == "model-a" and 6 < cooling["retry_in_s"] <= 7 and cooling["key"].startswith("bk-")
        assert "sk-scope" not in str(up)
        metrics = (await client.simulate_get("/metrics", headers=AUTH)).text
        assert 'llm_proxy_circuit_open{backend="up",model="model-b"} 1.0' in metrics
        assert 'llm_proxy_key_cooldowns{backend="up",model="model-a"} 1.0' in metrics
        assert 'llm_proxy_circuit_open{backend="up",model="*"}' not in metrics  # the backend itself is fine
