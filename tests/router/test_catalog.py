"""The model catalogue: shipped context windows, the config's ``catalog:`` over them, and the rules'
``context_window`` fact end to end (``when: tokens > context_window * 0.8``)."""

from __future__ import annotations

from pathlib import Path

import falcon.testing
import pytest

from dsl.errors import RulesError
from proxy_support import chat, reply_model, write_config
from router.app import create_app
from router.catalog import Catalog


def test_shipped_context_windows() -> None:
    catalog = Catalog()
    assert catalog.context_window("gpt-4o") == 128_000
    assert catalog.context_window("gpt-4o-mini") == 128_000
    assert catalog.context_window("claude-sonnet-4-5") == 200_000
    assert catalog.context_window("gemini-2.5-pro") == 1_048_576
    assert catalog.context_window("models/gemini-2.5-flash") == 1_048_576


def test_a_dated_name_uses_the_longest_known_prefix() -> None:
    catalog = Catalog({"gpt-4o-mini": {"context_window": 64_000}})
    assert catalog.context_window("gpt-4o-mini-2024-07-18") == 64_000
    assert catalog.context_window("gpt-4o-2024-08-06") == 128_000
    assert catalog.context_window("claude-sonnet-4-5-20250929") == 200_000
    assert catalog.context_window("gpt-4ozzz") is None  # a prefix must end at a separator


def test_config_overrides_and_adds_models(tmp_path: Path) -> None:
    config = write_config(tmp_path, catalog={"gpt-4o": {"context_window": 1000}, "my-local": {"context_window": 8192}})
    catalog = Catalog(config.catalog)
    assert catalog.context_window("gpt-4o") == 1000
    assert catalog.context_window("my-local") == 8192
    assert catalog.context_window("unknown-model") is None


def test_a_bad_catalog_entry_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="context_window"):
        write_config(tmp_path, catalog={"gpt-4o": {"context_window": "big"}})
    with pytest.raises(RulesError, match="context_windw"):
        write_config(tmp_path, catalog={"gpt-4o": {"context_windw": 10}})


RULES = """
rules:
  - name: near-the-limit
    when: tokens > context_window * 0.8
    route: other:big-model
"""


@pytest.fixture
def client(tmp_path: Path) -> falcon.testing.TestClient:
    routes = tmp_path / "routes.d"
    routes.mkdir()
    (routes / "10.yaml").write_text(RULES)
    config = write_config(tmp_path, routes_dir=str(routes), catalog={"small": {"context_window": 100}})
    return falcon.testing.TestClient(create_app(config, disable_auth=True))


@pytest.mark.parametrize("frontend", ["openai", "anthropic", "gemini"])
def test_context_window_fact_routes(client: falcon.testing.TestClient, frontend: str) -> None:
    long_prompt = "word " * 80  # ~100 tokens by the proxy's estimate: over 80% of 100
    assert reply_model(frontend, chat(client, frontend, "short", model="small")) == "small"
    assert reply_model(frontend, chat(client, frontend, long_prompt, model="small")) == "big-model"
    # An unknown model has no context window: the rule does not match, however long the prompt.
    assert reply_model(frontend, chat(client, frontend, long_prompt, model="no-such-model")) == "no-such-model"
