"""Local mode (no client keys, loopback): only loopback ``Host`` names, no cross-origin browser
requests, JSON-only POST bodies — each refusal a 4xx in the front end's error shape. With keys or
``--disable-auth`` none of it applies."""

from __future__ import annotations

from typing import Any

import falcon.testing
import pytest

from proxy_support import API_KEY, chat_body, error_message, reply_text
from router.http.local_guard import host_is_loopback, origin_is_loopback

LOOPBACK_HOSTS = ["localhost", "LOCALHOST", "localhost:8000", "127.0.0.1", "127.0.0.1:8000", "127.5.6.7:1",
                  "[::1]", "[::1]:8000"]
OTHER_HOSTS = ["evil.example", "evil.example:8000", "localhost.evil.example", "127.0.0.1.nip.io", "0.0.0.0",
               "10.0.0.1:8000", "::1", "[::1", "[::2]:80", "[::1]x", "localhost:", "localhost:80:80",
               "localhost:8o", "127.0.0.1:8000@evil.example", "", "localhost, evil.example", "[fe80::1]"]
LOOPBACK_ORIGINS = ["http://localhost", "http://localhost:3000", "https://127.0.0.1:8443", "http://[::1]:8000"]
OTHER_ORIGINS = ["https://evil.example", "null", "http://localhost.evil.example", "file://", "localhost",
                 "http://localhost/path", "ftp://localhost", "http://evil.example:8000"]


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
def test_loopback_hosts(host: str) -> None:
    assert host_is_loopback(host)


@pytest.mark.parametrize("host", OTHER_HOSTS)
def test_other_hosts(host: str) -> None:
    assert not host_is_loopback(host)


@pytest.mark.parametrize("origin", LOOPBACK_ORIGINS)
def test_loopback_origins(origin: str) -> None:
    assert origin_is_loopback(origin)


@pytest.mark.parametrize("origin", OTHER_ORIGINS)
def test_other_origins(origin: str) -> None:
    assert not origin_is_loopback(origin)


# (method, path, front end whose error shape answers, JSON body or None)
ENDPOINTS: list[tuple[str, str, str, Any]] = [
    ("POST", "/v2/chat/completions", "openai", chat_body("openai", "hi")),
    ("POST", "/v1/messages", "anthropic", chat_body("anthropic", "hi")),
    ("POST", "/v1beta/models/gpt-4:generateContent", "gemini", chat_body("gemini", "hi")),
    ("GET", "/v2/models", "openai", None),
    ("GET", "/v2/usage/recent", "openai", None),
    ("POST", "/v2/admin/reload", "openai", {}),
]
IDS = [f"{m} {p}" for m, p, _, _ in ENDPOINTS]


@pytest.fixture
def local(make_app: Any) -> falcon.testing.TestClient:
    """The app as ``llm-interactive-proxy`` builds it with no keys on 127.0.0.1."""
    app = make_app(loopback=True)
    app.reloader.watch = False
    return falcon.testing.TestClient(app)


def _send(client: falcon.testing.TestClient, method: str, path: str, body: Any, host: str = "localhost",
          **headers: str) -> Any:
    return client.simulate_request(method, path, host=host, json=body, headers=headers)


@pytest.mark.parametrize("method,path,frontend,body", ENDPOINTS, ids=IDS)
def test_local_programs_are_served(local, method, path, frontend, body):
    for host in ("localhost", "127.0.0.1", "[::1]"):
        result = _send(local, method, path, body, host=host, Origin="http://localhost:8000")
        assert result.status_code == 200, result.text
    assert local.app.state_ref.generation == (3 if path == "/v2/admin/reload" else 0)


@pytest.mark.parametrize("method,path,frontend,body", ENDPOINTS, ids=IDS)
@pytest.mark.parametrize("host", ["rebound.example", "rebound.example:8000", "192.168.1.5"])
def test_rebound_host_names_are_refused(local, method, path, frontend, body, host):
    result = _send(local, method, path, body, host=host)
    assert result.status_code == 403, result.text
    message = error_message(frontend, result.json)
    assert "not a loopback name" in message and "auth.api_keys" in message
    assert local.app.state_ref.generation == 0  # the reload did not happen


@pytest.mark.parametrize("method,path,frontend,body", ENDPOINTS, ids=IDS)
@pytest.mark.parametrize("origin", ["https://evil.example", "null"])
def test_cross_origin_browser_requests_are_refused(local, method, path, frontend, body, origin):
    result = _send(local, method, path, body, Origin=origin)
    assert result.status_code == 403, result.text
    assert "cross-origin" in error_message(frontend, result.json)
    assert local.app.state_ref.generation == 0


@pytest.mark.parametrize("method,path,frontend,body", [e for e in ENDPOINTS if e[0] == "POST"],
                         ids=[i for i, e in zip(IDS, ENDPOINTS) if e[0] == "POST"])
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", None, "application/jsonx"])
def test_non_json_posts_are_refused(local, method, path, frontend, body, content_type):
    """The simple requests a page can send cross-site without a preflight (and none at all, as a
    ``Blob`` body sends), even with a JSON body."""
    import json

    headers = {"Content-Type": content_type} if content_type else {}
    result = local.simulate_request(method, path, host="localhost", body=json.dumps(body), headers=headers)
    assert result.status_code == 415, result.text
    assert "application/json" in error_message(frontend, result.json)
    assert local.app.state_ref.generation == 0


def test_json_with_parameters_is_accepted(local):
    import json

    result = local.simulate_post("/v2/chat/completions", host="localhost", body=json.dumps(chat_body("openai", "hi")),
                                 headers={"Content-Type": "Application/JSON; charset=utf-8"})
    assert reply_text("openai", result) == "hi"


def test_health_stays_open(local):
    assert local.simulate_get("/health", host="rebound.example").status_code == 200


def test_refusals_are_audited(local):
    _send(local, "POST", "/v2/admin/reload", {}, Origin="https://evil.example")
    entries = local.simulate_get("/v2/audit/logs", host="localhost", params={"type": "auth_failure"}).json["data"]
    assert entries and entries[0]["outcome"] == "rejected" and "cross-origin" in entries[0]["detail"]["reason"]


@pytest.mark.parametrize("how", ["keys", "disable-auth"])
def test_no_guard_with_keys_or_disable_auth(make_app, how):
    """A key proves the caller whatever the address; ``--disable-auth`` is the operator's choice
    (behind a reverse proxy, Host is the public name)."""
    app = make_app(auth={"api_keys": [API_KEY]}) if how == "keys" else make_app(disable_auth=True)
    client = falcon.testing.TestClient(app)
    result = client.simulate_post("/v2/chat/completions", host="proxy.example.com", body=b'{"model": "m", '
                                  b'"messages": [{"role": "user", "content": "hi"}]}',
                                  headers={"Origin": "https://app.example.com", "Content-Type": "text/plain",
                                           "x-api-key": API_KEY})
    assert reply_text("openai", result) == "hi"


def test_without_keys_off_loopback_the_app_is_refused(make_app):
    from router.config import ConfigError

    with pytest.raises(ConfigError, match="without client keys"):
        make_app()


def test_the_official_sdks_pass_the_guard(tmp_path):
    """Local mode must not get in the way of the clients it serves: the three SDKs, plain and
    streamed, at 127.0.0.1 and at localhost."""
    import anthropic
    import openai
    from google import genai
    from google.genai import types

    from proxy_support import LiveServer, write_config
    from router.app import create_app

    app = create_app(write_config(tmp_path), loopback=True)
    app.reloader.watch = False
    server = LiveServer(app).start()
    try:
        for base in (server.url, server.url.replace("127.0.0.1", "localhost")):
            oa = openai.OpenAI(api_key="anything", base_url=f"{base}/v2", max_retries=0, timeout=10)
            assert oa.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}]) \
                .choices[0].message.content == "hi"
            assert "".join(c.choices[0].delta.content or "" for c in oa.chat.completions.create(
                model="m", stream=True, messages=[{"role": "user", "content": "a b"}]) if c.choices) == "a b"
            an = anthropic.Anthropic(api_key="anything", base_url=base, max_retries=0, timeout=10)
            assert an.messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}]) \
                .content[0].text == "hi"
            assert an.messages.count_tokens(model="m", messages=[{"role": "user", "content": "hi"}]).input_tokens > 0
            ga = genai.Client(api_key="anything", http_options=types.HttpOptions(base_url=base, timeout=10_000))
            assert ga.models.generate_content(model="m", contents="hi").text == "hi"
            assert "".join(c.text or "" for c in ga.models.generate_content_stream(model="m", contents="a b")) == "a b"
    finally:
        server.stop()
