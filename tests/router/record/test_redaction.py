"""Redaction: distinctive client and backend keys go through every place a key can travel, and
none of them shows up in any log record (DEBUG and up, message, arguments, extras, tracebacks),
in the usage or audit rows, or in the stored database."""

from __future__ import annotations

import io
import logging
import sqlite3
from pathlib import Path

import falcon.testing
import pytest

from falcon.testing.client import _AsyncContextManager

from fakes.provider import FakeProvider, error
from ops_support import closed_port, wait_for
from proxy_support import chat_body, chat_path

CLIENT = "sk-redact-client-7Q4mZ2xV9pL1"
CLIENT2 = "sk-redact-second-3Hk8Wn5Rt0Yb"
ADMIN = "sk-redact-admin-6Gf1Jd4Ss8Ua"
WRONG = "sk-redact-wrong-2Bv7Nc9Xq3Ze"
BK_OPENAI = "sk-redact-backend-openai-5Tt6Yy7Uu"
BK_ANTHROPIC = "sk-ant-redact-backend-8Ii9Oo0Pp"
BK_GEMINI = "AIzaRedactBackendGemini1Aa2Ss3Dd"
BK_REJECTED = "sk-redact-rejected-by-provider-4Ff"
BK_DEAD = "AIzaRedactDeadBackend5Gg6Hh7Jj"
SECRETS = (CLIENT, CLIENT2, ADMIN, WRONG, BK_OPENAI, BK_ANTHROPIC, BK_GEMINI, BK_REJECTED, BK_DEAD)


class Everything(logging.Handler):
    """Every record, rendered with all of its attributes (extras included)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.out = io.StringIO()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001
            message = f"{record.msg!r} % {record.args!r}"
        self.out.write(f"{record.name} {record.levelname} {message} {record.__dict__!r}\n")
        if record.exc_info:
            self.out.write(logging.Formatter().formatException(record.exc_info) + "\n")


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture):
    handler = Everything()
    root = logging.getLogger()
    old = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    caplog.set_level(logging.DEBUG)
    try:
        yield handler, caplog
    finally:
        root.removeHandler(handler)
        root.setLevel(old)


async def test_no_key_reaches_logs_or_records(tmp_path: Path, fake_provider: FakeProvider, all_logs) -> None:
    handler, caplog = all_logs
    fake_provider.keys["openai"] = {BK_OPENAI}
    fake_provider.keys["anthropic"] = {BK_ANTHROPIC}
    fake_provider.keys["gemini"] = {BK_GEMINI}
    from ops_support import build_app

    db = tmp_path / "usage.db"
    app = build_app(tmp_path, auth={"api_keys": [CLIENT, CLIENT2], "admin_keys": [ADMIN]}, usage={"path": str(db)},
                    backends={
                        "echo": {"type": "echo"}, "other": {"type": "echo"},
                        "oai": {"type": "openai", "base_url": f"{fake_provider.url}/v1", "api_key": BK_OPENAI},
                        "ant": {"type": "anthropic", "base_url": fake_provider.url, "api_key": BK_ANTHROPIC},
                        "gem": {"type": "gemini", "gemini_api_base_url": fake_provider.url, "api_key": BK_GEMINI},
                        "rejected": {"type": "openai", "base_url": f"{fake_provider.url}/v1", "api_key": BK_REJECTED},
                        "dead": {"type": "gemini", "gemini_api_base_url": f"http://127.0.0.1:{closed_port()}",
                                 "api_key": BK_DEAD},
                    })
    fake_provider.enqueue(error(500), model="flaky")

    def send(client, frontend: str, model: str, *, headers=None, params=None, stream=False):
        path, _, query = chat_path(frontend, model, stream).partition("?")
        qs = "&".join(filter(None, [query, "&".join(f"{k}={v}" for k, v in (params or {}).items())]))
        return client.simulate_post(path, headers=headers or {}, query_string=qs or None,
                                    json=chat_body(frontend, f"to {model}", model, stream))

    async with falcon.testing.ASGIConductor(app) as client:
        statuses = []
        for model in ("gpt-4", "oai:fake-model", "ant:fake-model", "gem:fake-model", "oai:flaky",
                      "rejected:fake-model", "dead:fake-model"):
            for stream in (False, True):
                statuses.append((await send(client, "openai", model, stream=stream,
                                            headers={"Authorization": f"Bearer {CLIENT}"})).status_code)
        statuses.append((await send(client, "anthropic", "ant:fake-model", headers={"x-api-key": CLIENT2})).status_code)
        statuses.append((await send(client, "gemini", "gem:fake-model", headers={"x-goog-api-key": CLIENT})).status_code)
        statuses.append((await send(client, "gemini", "gem:fake-model", params={"key": CLIENT2},
                                    stream=True)).status_code)
        assert statuses.count(200) >= 13 and 401 not in statuses and 502 in statuses, statuses
        # wrong keys in every place a key can be presented
        for headers, params in (({"Authorization": f"Bearer {WRONG}"}, None), ({"x-api-key": WRONG}, None),
                                ({"x-goog-api-key": WRONG}, None), ({}, {"key": WRONG})):
            result = await send(client, "gemini", "gpt-4", headers=headers, params=params)
            assert result.status_code == 401 and WRONG not in result.text
        await app.monitor.check_all()  # health checks call the providers with the backend keys
        assert (await app.reloader.reload(actor="test"))[0]
        admin = {"Authorization": f"Bearer {ADMIN}"}
        assert (await client.simulate_get("/v2/usage/stats", params={"key": ADMIN})).status_code == 200

        async def all_written() -> str:
            recent = await client.simulate_get("/v2/usage/recent", headers=admin, params={"limit": "1000"})
            audit = await client.simulate_get("/v2/audit/logs", headers=admin, params={"limit": "1000"})
            done = len(recent.json["data"]) >= 17 and len(audit.json["data"]) >= 5
            return done and recent.text + audit.text

        rows = await wait_for(all_written)
        metrics = (await client.simulate_get("/metrics", headers=admin)).text
        health = (await client.simulate_get("/health/backends", headers=admin)).text
        config_dump = repr(app.state_ref.state.config)
    con = sqlite3.connect(db)
    try:
        stored = "\n".join(con.iterdump())
    finally:
        con.close()
    logs = handler.out.getvalue() + "\n".join(caplog.messages) + caplog.text
    assert handler.count > 10 and "invalid API key" in logs  # the handler did see the traffic
    assert {r.api_key for r in fake_provider.generations} >= {BK_OPENAI, BK_ANTHROPIC, BK_GEMINI, BK_REJECTED}
    for where, text in (("logs", logs), ("usage/audit endpoints", rows), ("sqlite", stored), ("metrics", metrics),
                        ("health", health), ("config repr", config_dump)):
        for secret in SECRETS:
            assert secret not in text, f"{secret} leaked into {where}"
            assert secret[4:20] not in text, f"part of {secret} leaked into {where}"


PLAIN_KEY = "opaque-local-key-0123456789"  # a key with no recognisable shape: only its value can find it


async def test_provider_text_reaches_client_and_usage_redacted(tmp_path: Path, fake_provider: FakeProvider,
                                                               all_logs) -> None:
    """What a provider says goes to the client, the usage row's ``error`` and the logs. A plain
    text error page echoing our key (cut where the message is clipped), a foreign credential
    field, and an in-stream error event quoting the key: none of them may carry a secret out."""
    from fakes.provider import stream_error
    from ops_support import AUTH, build_app, post_chat, wait_records

    handler, caplog = all_logs
    fake_provider.keys["openai"] = {PLAIN_KEY}
    db = tmp_path / "usage.db"
    app = build_app(tmp_path, usage={"path": str(db)}, default_backend="oai", backends={
        "oai": {"type": "openai-compatible", "base_url": f"{fake_provider.url}/v1", "api_key": PLAIN_KEY}})
    echo = "x" * (499 - len(PLAIN_KEY) // 2) + " " + PLAIN_KEY
    fake_provider.enqueue(error(400, echo), error(400, "<h1>bad x-api-key: foreign-credential-1234</h1>",
                                                  content_type="text/html"),
                          stream_error(message=f"key {PLAIN_KEY} is over quota"))
    async with falcon.testing.ASGIConductor(app) as client:
        replies = [await post_chat(client, model="oai:fake-model"), await post_chat(client, model="oai:fake-model")]
        assert [r.status_code for r in replies] == [400, 400]
        assert "x-api-key: [redacted]" in replies[1].text
        # The stream is read to its end by a client that stays (Falcon's simulate_post hangs up at once).
        async with _AsyncContextManager(client.simulate_request(
                "POST", "/v2/chat/completions", headers=AUTH,
                json=chat_body("openai", "hello", model="oai:fake-model", stream=True), _stream_result=True)) as sr:
            streamed = b""
            while b"[DONE]" not in streamed:
                streamed += await sr.stream.read()
        assert sr.status_code == 200 and PLAIN_KEY.encode() not in streamed and b"over quota" in streamed
        rows = await wait_records(client, 3, AUTH)
    errors = [row["error"] for row in rows]
    assert all(errors) and any("over quota" in e for e in errors), errors
    con = sqlite3.connect(db)
    try:
        stored = "\n".join(con.iterdump())
    finally:
        con.close()
    logs = handler.out.getvalue() + caplog.text
    for where, text in (("client", "".join(r.text for r in replies)), ("usage rows", repr(rows)),
                        ("sqlite", stored), ("logs", logs)):
        for secret in (PLAIN_KEY, "foreign-credential-1234"):
            for i in range(len(secret) - 7):
                assert secret[i:i + 8] not in text, f"part of {secret} leaked into {where}"
