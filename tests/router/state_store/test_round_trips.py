"""At most one Redis round trip per request on the hot path (issue 16), counted against the real
Redis: every command batch redis-py writes to a socket (``send_packed_command``: one per round
trip, a pipeline or a batch of script calls included) while the proxy serves a request in process.

The first request of each kind runs before counting (a new connection says hello, a script is
loaded once per Redis); then a plain request, one naming its session by header (a new session
and a known one), one under an ``rpm`` rule and a streamed one each make exactly one round trip,
and what they wrote is really in Redis.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import yaml
from redis.asyncio.connection import AbstractConnection

from proxy_support import write_config
from redis_support import REDIS_URL
from router.app import create_app
from router.http.inprocess import call as inprocess_call, request_scope

KEY = "sk-test-client-key-0123456789"


class Counter:
    """Counts the batches written to Redis (PINGs of the health watcher left out)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent: list[bytes] = []
        original = AbstractConnection.send_packed_command

        async def counting(conn: Any, command: Any, check_health: bool = True) -> None:
            data = command if isinstance(command, (bytes, str)) else b"".join(bytes(c) for c in command)
            data = data.encode() if isinstance(data, str) else data
            if b"PING" not in data:
                self.sent.append(data)
            await original(conn, command, check_health)

        monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)


@pytest.fixture
def app(tmp_path: Path, prefix: str) -> Any:
    (tmp_path / "routes.d").mkdir()
    (tmp_path / "routes.d" / "10-limit.yaml").write_text(yaml.safe_dump(
        {"rules": [{"name": "limited", "when": 'model == "limited"', "limits": "rpm(5)"}]}), encoding="utf-8")
    config = write_config(tmp_path, auth={"api_keys": [KEY]}, routes_dir=str(tmp_path / "routes.d"),
                          state={"store": "redis", "url": REDIS_URL, "prefix": prefix, "timeout_ms": 2000})
    return create_app(config)


async def call(app: Any, body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    raw = json.dumps(body).encode()
    scope = request_scope("/v2/chat/completions", [(b"authorization", f"Bearer {KEY}".encode()),
                                                   *((k.encode(), v.encode()) for k, v in (headers or {}).items())], raw)
    return await inprocess_call(app, scope, raw)


def body(content: str, model: str = "m", stream: bool = False) -> dict[str, Any]:
    return {"model": model, "stream": stream, "messages": [{"role": "user", "content": content}]}


async def round_trips(counter: Counter, app: Any, payload: dict[str, Any], headers: dict[str, str] | None = None
                      ) -> tuple[int, bytes]:
    before = len(counter.sent)
    status, data = await call(app, payload, headers)
    assert status == 200, data
    return len(counter.sent) - before, data


async def test_one_round_trip_per_request(app, prefix, monkeypatch):
    counter = Counter(monkeypatch)
    # Warm-up: the connection's hello and the script's first load are not per request.
    await round_trips(counter, app, body("warm up", "limited"), {"x-session-id": "warm-up"})

    assert (await round_trips(counter, app, body("a plain request")))[0] == 1
    assert (await round_trips(counter, app, body("a plain request")))[0] == 1  # the same conversation again
    assert (await round_trips(counter, app, body("named"), {"x-session-id": "named-1"}))[0] == 1  # new session
    assert (await round_trips(counter, app, body("named again"), {"x-session-id": "named-1"}))[0] == 1
    assert (await round_trips(counter, app, body("limited", "limited")))[0] == 1
    assert (await round_trips(counter, app, body("limited", "limited"), {"x-session-id": "named-1"}))[0] == 1
    count, streamed = await round_trips(counter, app, body("a stream", "limited", stream=True), {"x-session-id": "named-1"})
    assert count == 1 and b"data: [DONE]" in streamed

    # What those round trips carried is in Redis: the named session stored, its four requests
    # noted in its history, the rpm bucket charged.
    client = aioredis.from_url(REDIS_URL)
    try:
        [stored] = [k async for k in client.scan_iter(match=f"{prefix}:ss:*:named-1")]  # under the caller's key id
        assert int(await client.hget(stored, "v")) == 1
        history = [json.loads(h) for h in await client.lrange(stored.replace(b":ss:", b":sh:"), 0, -1)]
        assert len(history) == 4 and history[-1]["model"] == "limited"
        buckets = [k async for k in client.scan_iter(match=f"{prefix}:rl:rpm:5:*")]
        assert len(buckets) == 1
        level = float(await client.hget(buckets[0], "level"))
        assert level < 2  # 5 - the warm-up, two limited requests and the stream (plus a little refill)
    finally:
        await client.aclose()


@pytest.fixture
def two_apps(tmp_path: Path, prefix: str) -> Any:
    """Two proxies in this process on one Redis prefix (as two instances would be)."""
    config = write_config(tmp_path, auth={"api_keys": [KEY]},
                          state={"store": "redis", "url": REDIS_URL, "prefix": prefix, "timeout_ms": 2000})
    return create_app(config), create_app(config)


def model_of(data: bytes) -> str:
    return json.loads(data)["model"]


async def test_a_copy_changed_elsewhere_is_planned_again(two_apps, monkeypatch):
    """Each instance plans on the session as it last saw it; the step finds out when the other
    changed it, and the request is planned again on the current session (one more round trip)."""
    a, b = two_apps
    counter = Counter(monkeypatch)
    named = {"x-session-id": "seen-by-both"}
    assert model_of((await round_trips(counter, a, body("one"), named))[1]) == "m"
    assert model_of((await round_trips(counter, b, body("two"), named))[1]) == "m"  # b has seen it now
    # a sets a one-off; b's copy is stale: its next request sees it (two round trips), and uses it once
    answer = json.loads((await round_trips(counter, a, body("!/oneoff(other:special)"), named))[1])
    assert "kept in Redis, shared by every instance" in answer["choices"][0]["message"]["content"]
    count, data = await round_trips(counter, b, body("three"), named)
    assert model_of(data) == "special" and count == 2
    # a's copy still holds the one-off b consumed: a's step finds that out, a does not use it again
    count, data = await round_trips(counter, a, body("four"), named)
    assert model_of(data) == "m" and count == 2
    assert model_of((await round_trips(counter, b, body("five"), named))[1]) == "m"
    # a conversation b saw unstored (no header) is given a setting through a: b follows it
    turns = [{"role": "user", "content": "a chat"}]
    assert model_of((await round_trips(counter, b, {"model": "m", "messages": turns}))[1]) == "m"
    turns += [{"role": "assistant", "content": "ok"}, {"role": "user", "content": "!/model(chosen) go on"}]
    assert model_of((await round_trips(counter, a, {"model": "m", "messages": turns}))[1]) == "chosen"
    turns += [{"role": "assistant", "content": "ok"}, {"role": "user", "content": "and on"}]
    count, data = await round_trips(counter, b, {"model": "m", "messages": turns})
    assert model_of(data) == "chosen" and count == 2
