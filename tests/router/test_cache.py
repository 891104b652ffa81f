"""Response cache: opt-in by rule, off by session, hit/miss header, stream replay, never for
errors or guarded answers, hits recorded with zero provider tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import falcon.testing
import pytest

from proxy_support import chat, reply_text, write_config
from router.app import create_app
from router.cache import ResponseCache
from router.wire.canonical import ChatResponse, TextPart

RULE = "rules:\n  - name: cached\n    when: model == \"cached-model\"\n    post: cache(ttl=10m)\n"


@pytest.fixture
def app(tmp_path: Path) -> Any:
    routes = tmp_path / "routes.d"
    routes.mkdir()
    (routes / "10-cache.yaml").write_text(RULE)
    return create_app(write_config(tmp_path, routes_dir=str(routes)), disable_auth=True)


@pytest.mark.parametrize("frontend", ["openai", "anthropic", "gemini"])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_second_identical_request_is_a_hit_in_the_clients_format(app: Any, frontend: str, stream: bool) -> None:
    client = falcon.testing.TestClient(app)
    first = chat(client, frontend, "tell me once", model="cached-model", stream=stream)
    second = chat(client, frontend, "tell me once", model="cached-model", stream=stream)
    assert first.headers["x-cache"] == "miss" and second.headers["x-cache"] == "hit"
    assert reply_text(frontend, second) == reply_text(frontend, first) == "tell me once"
    other = chat(client, frontend, "something else", model="cached-model", stream=stream)
    assert other.headers["x-cache"] == "miss"


def test_models_without_the_rule_are_not_cached(app: Any) -> None:
    client = falcon.testing.TestClient(app)
    for _ in range(2):
        result = chat(client, "openai", "hi", model="plain")
        assert "x-cache" not in result.headers


def test_session_can_switch_the_cache_off(app: Any) -> None:
    client = falcon.testing.TestClient(app)
    chat(client, "openai", "!/set(cache=false)", session="no-cache", model="cached-model")
    for _ in range(2):
        assert chat(client, "openai", "hi", session="no-cache", model="cached-model").headers.get("x-cache") is None


def test_hits_are_recorded_with_zero_provider_tokens(app: Any) -> None:
    import asyncio

    client = falcon.testing.TestClient(app)
    for _ in range(2):
        chat(client, "openai", "count me", model="cached-model")
    items, _ = asyncio.run(app.state_ref.recorder.store.recent(limit=2))
    hit, miss = items
    assert hit["cache_hit"] and hit["prompt_tokens"] == 0 and hit["completion_tokens"] == 0 and hit["backend"] == "cache"
    assert not miss["cache_hit"] and miss["completion_tokens"] > 0


def test_cache_refuses_errors_and_loop_cuts_and_expires() -> None:
    now = [0.0]
    cache = ResponseCache(maxsize=2, clock=lambda: now[0])
    ok = ChatResponse(id="1", model="m", parts=[TextPart("fine")])
    assert not cache.put("a", ChatResponse(id="2", model="m", finish_reason="error"), 60)
    assert not cache.put("b", ChatResponse(id="3", model="m", finish_reason="loop"), 60)
    assert cache.put("c", ok, 60) and cache.get("c").text() == "fine"
    now[0] = 61
    assert cache.get("c") is None
    for key in "xyz":  # bounded: least recently used entries go
        cache.put(key, ok, 60)
    assert len(cache) == 2 and cache.get("x") is None


# ---- scoped per caller, keyed on everything forwarded ----------------------------------------------

KEYS = ("key-a-0123456789", "key-b-0123456789")


def keyed_app(tmp_path: Path, post: str) -> Any:
    routes = tmp_path / "routes.d"
    routes.mkdir()
    (routes / "10-cache.yaml").write_text(f"rules:\n  - name: cached\n    post: {post}\n")
    return create_app(write_config(tmp_path, routes_dir=str(routes), auth={"api_keys": list(KEYS)}))


def as_caller(index: int) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[index]}"}


def test_another_caller_does_not_get_a_callers_cached_answer(tmp_path: Path) -> None:
    client = falcon.testing.TestClient(keyed_app(tmp_path, "cache(ttl=10m)"))
    assert chat(client, "openai", "private", headers=as_caller(0)).headers["x-cache"] == "miss"
    assert chat(client, "openai", "private", headers=as_caller(1)).headers["x-cache"] == "miss"
    assert chat(client, "openai", "private", headers=as_caller(0)).headers["x-cache"] == "hit"
    assert chat(client, "openai", "private", headers=as_caller(1)).headers["x-cache"] == "hit"


def test_a_rule_may_share_its_cache_across_callers(tmp_path: Path) -> None:
    client = falcon.testing.TestClient(keyed_app(tmp_path, "cache(ttl=10m, shared=true)"))
    assert chat(client, "openai", "public", headers=as_caller(0)).headers["x-cache"] == "miss"
    assert chat(client, "openai", "public", headers=as_caller(1)).headers["x-cache"] == "hit"


# Each forwarded field the canonical request has no slot for (``extra``) and each one it has.
FORWARDED = [
    {"n": 2}, {"response_format": {"type": "json_object"}}, {"logprobs": True}, {"top_logprobs": 2, "logprobs": True},
    {"seed": 7}, {"presence_penalty": 0.5}, {"user": "someone"}, {"some_vendor_field": {"x": 1}},
    {"temperature": 0.3}, {"top_p": 0.4}, {"max_tokens": 12}, {"stop": ["END"]},
    {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]},
    {"reasoning_effort": "high"},
]


@pytest.mark.parametrize("extra", FORWARDED, ids=[next(iter(e)) for e in FORWARDED])
def test_every_forwarded_field_is_part_of_the_key(tmp_path: Path, extra: dict[str, Any]) -> None:
    client = falcon.testing.TestClient(keyed_app(tmp_path, "cache(ttl=10m)"))
    assert chat(client, "openai", "same words", headers=as_caller(0)).headers["x-cache"] == "miss"
    varied = chat(client, "openai", "same words", headers=as_caller(0), **extra)
    assert varied.status_code == 200 and varied.headers["x-cache"] == "miss"
    assert chat(client, "openai", "same words", headers=as_caller(0), **extra).headers["x-cache"] == "hit"


def test_json_and_stream_share_an_entry(tmp_path: Path) -> None:
    """``stream`` changes how the answer is sent, not the answer: a stream replays a JSON miss."""
    client = falcon.testing.TestClient(keyed_app(tmp_path, "cache(ttl=10m)"))
    assert chat(client, "openai", "either way", headers=as_caller(0)).headers["x-cache"] == "miss"
    streamed = chat(client, "openai", "either way", headers=as_caller(0), stream=True)
    assert streamed.headers["x-cache"] == "hit" and reply_text("openai", streamed) == "either way"


def test_settings_a_target_brings_are_part_of_the_key(tmp_path: Path) -> None:
    """A rule matching only through the target changes what is forwarded: its settings key the entry."""
    routes = tmp_path / "routes.d"
    routes.mkdir()
    (routes / "10.yaml").write_text(
        "rules:\n  - name: cached\n    post: cache(ttl=10m)\n"
        "  - name: short-for-free\n    when: model == \"small\" and header(\"x-team\") == \"free\"\n"
        "    set: max_tokens=5\n")
    client = falcon.testing.TestClient(create_app(write_config(tmp_path, routes_dir=str(routes),
                                                               auth={"api_keys": list(KEYS)})))
    sid = "s-target-settings"
    assert chat(client, "openai", "!/route-prepend(alias, echo:small)", session=sid, headers=as_caller(0),
                model="alias").status_code == 200
    first = chat(client, "openai", "hi", session=sid, headers=as_caller(0), model="alias")
    free = chat(client, "openai", "hi", session=sid, headers={**as_caller(0), "x-team": "free"}, model="alias")
    assert first.headers["x-cache"] == "miss" and free.headers["x-cache"] == "miss"


def test_expired_entries_leave_the_cache_without_being_asked_for() -> None:
    """An answer nobody can get any more (its TTL passed) does not hold memory until the LRU bound
    pushes it out: the next write drops every expired entry."""
    now = [0.0]
    cache = ResponseCache(maxsize=100, clock=lambda: now[0])
    ok = ChatResponse(id="1", model="m", parts=[TextPart("fine")])
    for key in "abc":
        cache.put(key, ok, 20)
    cache.put("long", ok, 600)
    now[0] = 21
    cache.put("d", ok, 20)
    assert len(cache) == 2 and cache.get("long") is not None and cache.get("d") is not None
    now[0] = 40.9
    assert cache.get("d") is not None
    now[0] = 41
    assert cache.get("d") is None
