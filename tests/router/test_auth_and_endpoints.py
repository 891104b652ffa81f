"""Auth in every client family's place, errors in each front end's shape, keys never echoed or logged;
``/v1`` deprecation headers, model listings, and the ``file`` session repository across app instances."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import falcon.testing
import pytest

from proxy_support import API_KEY, FRONTENDS, chat, chat_body, chat_path, error_message, reply_model, reply_text

WRONG_KEY = "sk-wrong-key-9876543210"

# Where each client family puts its key: (headers, query string).
KEY_PLACES = {
    "bearer": lambda k: ({"Authorization": f"Bearer {k}"}, None),
    "x-api-key": lambda k: ({"x-api-key": k}, None),
    "x-goog-api-key": lambda k: ({"x-goog-api-key": k}, None),
    "query": lambda k: ({}, f"key={k}"),
}

# (method, path, json body or None, front end of the error shape): every authenticated route.
ROUTES: list[tuple[str, str, Any, str]] = [
    ("POST", "/v1/chat/completions", chat_body("openai", "hi"), "openai"),
    ("POST", "/v2/chat/completions", chat_body("openai", "hi"), "openai"),
    ("POST", "/v1/messages", chat_body("anthropic", "hi"), "anthropic"),
    ("POST", "/v2/messages", chat_body("anthropic", "hi"), "anthropic"),
    ("POST", "/v1/messages/count_tokens", {"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]},
     "anthropic"),
    ("POST", "/v2/messages/count_tokens", {"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]},
     "anthropic"),
    ("POST", "/v2/models/gpt-4:generateContent", chat_body("gemini", "hi"), "gemini"),
    ("POST", "/v1beta/models/gpt-4:generateContent", chat_body("gemini", "hi"), "gemini"),
    ("POST", "/v1beta/models/gpt-4:streamGenerateContent", chat_body("gemini", "hi"), "gemini"),
    ("POST", "/v1beta/models/gpt-4:countTokens", chat_body("gemini", "hi"), "gemini"),
    ("GET", "/v1/models", None, "openai"),
    ("GET", "/v2/models", None, "openai"),
    ("GET", "/v2/models/echo:echo", None, "openai"),
    ("GET", "/v2/models/list", None, "gemini"),
    ("GET", "/v1beta/models", None, "gemini"),
    ("GET", "/v1beta/models/echo:echo", None, "gemini"),
]
ROUTE_IDS = [f"{m} {p}" for m, p, _, _ in ROUTES]


@pytest.fixture
def authed(make_client) -> falcon.testing.TestClient:
    return make_client(auth={"api_keys": ["sk-other-key-000", API_KEY]})


def _request(client, method, path, body, headers=None, query=None):
    return client.simulate_request(method, path, json=body, headers=headers or {}, query_string=query)


@pytest.mark.parametrize("place", list(KEY_PLACES))
@pytest.mark.parametrize("method,path,body,frontend", ROUTES, ids=ROUTE_IDS)
def test_key_accepted_where_each_client_sends_it(authed, method, path, body, frontend, place):
    headers, query = KEY_PLACES[place](API_KEY)
    result = _request(authed, method, path, body, headers, query)
    assert result.status_code == 200, result.text


@pytest.mark.parametrize("case", ["missing", "wrong", "wrong-bearer-right-elsewhere-no", "basic-scheme", "empty"])
@pytest.mark.parametrize("method,path,body,frontend", ROUTES, ids=ROUTE_IDS)
def test_missing_or_wrong_key_is_401_in_the_front_ends_shape(authed, method, path, body, frontend, case):
    headers = {
        "missing": {},
        "wrong": {"Authorization": f"Bearer {WRONG_KEY}"},
        "wrong-bearer-right-elsewhere-no": {"x-api-key": WRONG_KEY},
        "basic-scheme": {"Authorization": f"Basic {API_KEY}"},
        "empty": {"Authorization": "Bearer ", "x-api-key": ""},
    }[case]
    result = _request(authed, method, path, body, headers)
    assert result.status_code == 401, result.text
    error_message(frontend, result.json)
    if frontend == "anthropic":
        assert result.json["error"]["type"] == "authentication_error"
    elif frontend == "gemini":
        assert result.json["error"]["code"] == 401 and result.json["error"]["status"] == "UNAUTHENTICATED"
    else:
        assert result.json["error"]["code"] == "invalid_api_key"
    assert WRONG_KEY not in result.text and API_KEY not in result.text


def test_health_and_root_need_no_key(authed):
    assert authed.simulate_get("/health").json == {"status": "ok"}
    assert authed.simulate_get("/health/").status_code == 200
    assert authed.simulate_head("/").status_code == 200
    assert authed.simulate_get("/").status_code == 200


def test_unknown_paths_need_a_key_too(authed):
    """Auth comes first, so an unauthenticated caller learns nothing about routes."""
    assert authed.simulate_get("/nope").status_code == 401
    assert authed.simulate_get("/nope", headers={"x-api-key": API_KEY}).status_code == 404


@pytest.mark.parametrize("how", ["flag", "no-keys"])
def test_disable_auth_accepts_everyone(make_client, how):
    if how == "flag":
        client = make_client(disable_auth=True, auth={"api_keys": [API_KEY]})
    else:
        client = make_client(disable_auth=True)
    for frontend in FRONTENDS:
        assert reply_text(frontend, chat(client, frontend, "hi")) == "hi"
        assert reply_text(frontend, chat(client, frontend, "hi", headers={"x-api-key": WRONG_KEY})) == "hi"


def test_keys_from_the_environment(tmp_path):
    from router.app import create_app
    from router.config import load_config

    (tmp_path / "config.yaml").write_text("backends: {echo: {type: echo}}\n")
    config = load_config(str(tmp_path / "config.yaml"), env={"LLM_PROXY_API_KEYS": f"a,{API_KEY}"})
    client = falcon.testing.TestClient(create_app(config))
    assert client.simulate_get("/v2/models").status_code == 401
    assert client.simulate_get("/v2/models", headers={"Authorization": f"Bearer {API_KEY}"}).status_code == 200


def test_keys_never_appear_in_bodies_or_logs(authed, caplog):
    caplog.set_level(logging.DEBUG)
    bodies = []
    for frontend in FRONTENDS:
        for place, make in KEY_PLACES.items():
            for key in (API_KEY, WRONG_KEY):
                headers, query = make(key)
                for stream in (False, True):
                    for text in ("hi", "!/hello", "!/temperature(hot)"):
                        path = chat_path(frontend, stream=stream)
                        path, _, extra = path.partition("?")
                        q = "&".join(x for x in (query, extra) if x) or None
                        result = authed.simulate_post(path, json=chat_body(frontend, text, stream=stream),
                                                      headers=headers, query_string=q)
                        bodies.append(result.text + json.dumps(dict(result.headers)))
    for method, path, body, _ in ROUTES:
        bodies.append(_request(authed, method, path, body, {"x-api-key": WRONG_KEY}).text)
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert caplog.records, "expected access log lines"
    for key in (API_KEY, WRONG_KEY):
        assert key not in logged
        assert not [b for b in bodies if key in b]


def test_caller_is_a_key_hash_in_logs(authed, caplog):
    from router.http.auth import key_id

    caplog.set_level(logging.INFO)
    authed.simulate_get("/v2/models", headers={"x-api-key": API_KEY})
    assert any(getattr(r, "caller", None) == key_id(API_KEY) for r in caplog.records)


# ---- /v1 deprecation, model listings ------------------------------------------------------------

@pytest.mark.parametrize("method,path,body,frontend", ROUTES, ids=ROUTE_IDS)
def test_deprecation_header_only_on_v1(client, method, path, body, frontend):
    result = _request(client, method, path, body)
    assert result.status_code == 200
    if path.startswith("/v1/"):
        assert result.headers.get("deprecation") == "true"
        assert "/v2/" in result.headers.get("link", "")
    else:
        assert "deprecation" not in result.headers


def test_deprecation_header_on_v1_errors_and_streams(client):
    assert client.simulate_get("/v1/nope").headers.get("deprecation") == "true"
    assert client.simulate_post("/v1/chat/completions", body=b"{").headers.get("deprecation") == "true"
    streamed = chat(client, "openai", "hi", stream=True, version="v1")
    assert streamed.headers.get("deprecation") == "true"
    assert "deprecation" not in chat(client, "openai", "hi", stream=True).headers


def test_v2_models_lists_backend_model_ids(client):
    body = client.simulate_get("/v2/models").json
    assert body["object"] == "list"
    ids = [m["id"] for m in body["data"]]
    assert ids == ["echo:echo", "echo:echo-large", "other:echo"]
    assert all(m["object"] == "model" and m["owned_by"] == m["id"].split(":")[0] for m in body["data"])
    assert client.simulate_get("/v1/models").json["data"] == body["data"]


@pytest.mark.parametrize("path", ["/v2/models/list", "/v1beta/models"])
def test_gemini_model_listing(client, path):
    models = client.simulate_get(path).json["models"]
    assert [m["name"] for m in models] == ["models/echo:echo", "models/echo:echo-large", "models/other:echo"]
    for m in models:
        assert "generateContent" in m["supportedGenerationMethods"] and m["displayName"]


@pytest.mark.parametrize("path", ["/v1/models", "/v2/models"])
def test_gemini_clients_get_the_gemini_listing_on_shared_paths(client, path):
    """google-genai lists models at GET /v1/models (its default API version); OpenAI clients share it."""
    assert "models" in client.simulate_get(path, headers={"x-goog-api-key": "k"}).json
    assert "models" in client.simulate_get(path, headers={"x-goog-api-client": "google-genai-sdk/1"}).json
    assert "models" in client.simulate_get(path, query_string="key=k").json
    assert client.simulate_get(path, headers={"Authorization": "Bearer k"}).json["object"] == "list"
    described = client.simulate_get(f"{path}/echo:echo", headers={"x-goog-api-key": "k"}).json
    assert described["name"] == "models/echo:echo"


def test_describe_one_model(client):
    assert client.simulate_get("/v2/models/echo:echo-large").json["id"] == "echo:echo-large"
    assert client.simulate_get("/v1beta/models/echo:echo").json["name"] == "models/echo:echo"
    for version in ("v1", "v2"):
        missing = client.simulate_get(f"/{version}/models/echo:nope")
        assert missing.status_code == 404 and "echo:nope" in error_message("openai", missing.json)
    missing = client.simulate_get("/v1beta/models/echo:nope")
    assert missing.status_code == 404 and "echo:nope" in error_message("gemini", missing.json)


def test_listed_ids_are_usable_as_models(client):
    for model_id in [m["id"] for m in client.simulate_get("/v2/models").json["data"]]:
        for frontend in FRONTENDS:
            result = chat(client, frontend, "hi", model=model_id)
            assert reply_model(frontend, result) == model_id.split(":", 1)[1]


def test_backend_prefix_without_model_is_a_clear_400(client):
    result = chat(client, "openai", "hi", model="echo:")
    assert result.status_code == 400 and "echo:" in error_message("openai", result.json)


def test_default_model_fills_an_empty_backend_prefix(make_client):
    client = make_client(disable_auth=True, backends={"echo": {"type": "echo", "default_model": "dflt"}})
    assert reply_model("openai", chat(client, "openai", "hi", model="echo:")) == "dflt"


def test_unknown_backend_prefix_is_part_of_the_model_name(client):
    """``nope:x`` is not a configured backend, so it is a model name (``llama3:8b``) for the default backend."""
    assert reply_model("openai", chat(client, "openai", "hi", model="llama3:8b")) == "llama3:8b"


def test_count_tokens(client):
    body = {"model": "gpt-4", "messages": [{"role": "user", "content": "x" * 400}]}
    assert client.simulate_post("/v1/messages/count_tokens", json=body).json == {"input_tokens": 100}
    gemini = {"contents": [{"parts": [{"text": "x" * 400}]}]}
    assert client.simulate_post("/v1beta/models/gpt-4:countTokens", json=gemini).json == {"totalTokens": 100}
    wrapped = {"generateContentRequest": {"model": "models/gpt-4", **gemini}}
    assert client.simulate_post("/v1beta/models/gpt-4:countTokens", json=wrapped).json == {"totalTokens": 100}


def test_openai_usage_chunk_only_when_asked(client):
    """Clients that did not ask with stream_options.include_usage may read choices[0] of every chunk."""
    from proxy_support import sse_data

    for text in ("hello there", "!/hello"):
        plain = sse_data(chat(client, "openai", text, stream=True).text)
        assert plain[-1] == "[DONE]" and all(c["choices"] for c in plain[:-1])
        asked = sse_data(chat(client, "openai", text, stream=True, stream_options={"include_usage": True}).text)
        assert asked[-2]["choices"] == [] and "total_tokens" in asked[-2]["usage"]
        off = sse_data(chat(client, "openai", text, stream=True, stream_options={"include_usage": False}).text)
        assert all(c["choices"] for c in off[:-1])
    bad = chat(client, "openai", "hi", stream=True, stream_options={"include_usage": "yes"})
    assert bad.status_code == 400 and "stream_options" in error_message("openai", bad.json)


def test_gemini_stream_without_alt_sse_is_a_json_array(client):
    result = client.simulate_post("/v1beta/models/gpt-4:streamGenerateContent",
                                  json=chat_body("gemini", "one two three four five six seven"))
    assert result.status_code == 200 and isinstance(result.json, list) and len(result.json) > 1
    text = "".join(p.get("text", "") for item in result.json for c in item["candidates"]
                   for p in c.get("content", {}).get("parts", []))
    assert text == "one two three four five six seven"


# ---- the file session repository ----------------------------------------------------------------

def test_file_sessions_survive_a_new_app_instance(make_client, tmp_path):
    session_cfg = {"repository": "file", "path": str(tmp_path / "sessions")}
    s = "file-" + uuid.uuid4().hex[:8]
    first = make_client(disable_auth=True, session=session_cfg)
    for frontend in FRONTENDS:
        reply_text(frontend, chat(first, frontend, "!/route-append(gpt-4, echo:other)", session=s))
    reply_text("openai", chat(first, "openai", '!/set(project="p x") !/model(gpt-4)', session=s))
    second = make_client(disable_auth=True, session=session_cfg)
    for frontend in FRONTENDS:
        assert reply_model(frontend, chat(second, frontend, "hi", session=s)) == "other"
        hello = reply_text(frontend, chat(second, frontend, "!/hello", session=s))
        assert "project: p x" in hello and "session routes: 1" in hello
    assert reply_model("openai", chat(second, "openai", "hi", session="fresh-one")) == "gpt-4"
    assert len(list((tmp_path / "sessions").glob("*.json"))) >= 2


def test_file_session_oneoff_is_cleared_before_the_next_request(make_client, tmp_path):
    """The one-off must be persisted as used before the reply goes out, not some time later."""
    session_cfg = {"repository": "file", "path": str(tmp_path / "sessions")}
    client = make_client(disable_auth=True, session=session_cfg)
    for frontend in FRONTENDS:
        s = f"oneoff-{frontend}"
        reply_text(frontend, chat(client, frontend, "!/oneoff(other:special)", session=s))
        assert reply_model(frontend, chat(client, frontend, "one", session=s)) == "special"
        again = make_client(disable_auth=True, session=session_cfg)
        assert reply_model(frontend, chat(again, frontend, "two", session=s)) == "gpt-4"
        assert reply_model(frontend, chat(client, frontend, "three", session=s)) == "gpt-4"


def test_corrupt_session_file_gives_a_fresh_session(make_client, tmp_path, caplog):
    session_cfg = {"repository": "file", "path": str(tmp_path / "sessions")}
    client = make_client(disable_auth=True, session=session_cfg)
    reply_text("openai", chat(client, "openai", "!/model(echo-large)", session="corrupt-me"))
    for file in (tmp_path / "sessions").glob("*.json"):
        file.write_text("{not json")
    caplog.set_level(logging.WARNING)
    assert reply_model("openai", chat(client, "openai", "hi", session="corrupt-me")) == "gpt-4"
    assert any("corrupt" in r.getMessage() for r in caplog.records)


def test_accepted_keys_are_remembered_only_while_configured() -> None:
    """A key that matched is looked up directly next time; wrong keys are never remembered, and a
    reload (a new Authenticator) forgets keys that were removed."""
    from router.http.auth import Authenticator
    from router.errors import ProxyError

    auth = Authenticator(["key-one-123456", "key-two-123456"])
    first = auth.identify({"authorization": "Bearer key-one-123456"}, {})
    assert auth.identify({"x-api-key": "key-one-123456"}, {}) == first
    for i in range(100):
        with pytest.raises(ProxyError):
            auth.identify({"authorization": f"Bearer wrong-{i}"}, {})
    assert len(auth._accepted) == 1
    reloaded = Authenticator(["key-two-123456"])
    with pytest.raises(ProxyError):
        reloaded.identify({"authorization": "Bearer key-one-123456"}, {})
    assert reloaded.identify({"authorization": "Bearer key-two-123456"}, {}) == \
        auth.identify({"authorization": "Bearer key-two-123456"}, {})
