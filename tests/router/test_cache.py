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
from router.canonical import ChatResponse, TextPart

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
