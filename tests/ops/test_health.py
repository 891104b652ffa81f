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
    assert hm.allow("a") and hm.status.get("a") is None  # unknown backend: closed
    hm.record("a", False, "server")
    hm.record("a", False, "connection")
    assert hm.allow("a") and hm.status["a"].state(clock()) == "closed"  # below the threshold
    hm.record("a", False, "server")
    assert hm.status["a"].state(clock()) == "open" and not hm.status["a"].ok
    assert not hm.allow("a") and hm.allow("b")  # other backends unaffected
    clock.now += 29.9
    assert not hm.allow("a")
    clock.now += 0.2
    assert hm.status["a"].state(clock()) == "half_open"
    assert hm.allow("a")  # the single probe
    assert not hm.allow("a") and not hm.allow("a")  # everyone else waits for it
    hm.record("a", False, "server")  # the probe failed: open again for a full period
    assert hm.status["a"].state(clock()) == "open" and not hm.allow("a")
    clock.now += 29
    assert not hm.allow("a")
    clock.now += 2
    assert hm.allow("a") and not hm.allow("a")
    hm.record("a", True)  # the probe succeeded: closed
    status = hm.status["a"]
    assert status.state(clock()) == "closed" and status.ok and status.failures == 0
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
    assert hm.allow("a") and hm.status["a"].failures == 1
    hm.record("a", False, "timeout")
    assert not hm.allow("a") and hm.status["a"].last_error == "timeout"


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
