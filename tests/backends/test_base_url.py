"""``base_url`` with or without the API version, for every backend type; upstream errors name the
URL called (never its credentials); ``openai-compatible`` requires ``base_url``."""

from __future__ import annotations

from pathlib import Path

import pytest

from backends.base import BackendError
from backends.http import with_api_version, without_api_version
from fakes.provider import FakeProvider
from backends.openai import OpenAICompatibleBackend
from backends.settings import ConnectorSettings
from dsl.errors import RulesError

from .conftest import backend_settings, chat, make_config

# (type, the setting that holds the URL, the path after fake.url in each form)
FORMS = [
    ("openai", "base_url", ["/v1", ""]),
    ("openrouter", "base_url", ["/v1", ""]),
    ("openai-compatible", "base_url", ["/v1", "", "/v1/"]),
    ("anthropic", "base_url", ["", "/v1", "/v1/"]),
    ("gemini", "gemini_api_base_url", ["", "/v1beta", "/v1"]),
    ("gemini", "base_url", ["", "/v1beta"]),
]


@pytest.mark.parametrize("kind,setting,suffixes", FORMS)
async def test_both_forms_of_base_url_reach_the_provider(build, fake: FakeProvider, kind: str, setting: str,
                                                         suffixes: list[str]) -> None:
    for suffix in suffixes:
        settings = backend_settings(kind, fake)
        settings.pop("base_url", None)
        settings.pop("gemini_api_base_url", None)
        settings[setting] = fake.url + suffix
        backend = (await build(b=settings))["b"]
        assert (await backend.complete(chat(f"via {suffix or 'bare'}"))).text() == f"via {suffix or 'bare'}"


async def test_code_assist_base_url_with_its_version(build, fake: FakeProvider, tmp_path: Path) -> None:
    from .conftest import write_creds

    creds = write_creds(tmp_path / "oauth_creds.json")
    settings = backend_settings("gemini-cli-oauth-personal", fake, credentials_path=str(creds.parent))
    settings["gemini_api_base_url"] = fake.url + "/v1internal"
    backend = (await build(b=settings))["b"]
    assert backend.base_url == fake.url


def test_version_helpers() -> None:
    assert with_api_version("http://h:11434") == "http://h:11434/v1"
    assert with_api_version("https://openrouter.ai/api") == "https://openrouter.ai/api/v1"
    assert with_api_version("https://openrouter.ai/api/v1") == "https://openrouter.ai/api/v1"
    assert with_api_version("https://g.example/v1beta/openai") == "https://g.example/v1beta/openai"
    assert with_api_version("http://h/vllm") == "http://h/vllm/v1"  # "/vllm" is no version
    assert without_api_version("https://api.anthropic.com/v1", "/v1") == "https://api.anthropic.com"
    assert without_api_version("https://x/v1beta", "/v1beta", "/v1") == "https://x"


@pytest.mark.parametrize("kind", ["openai", "anthropic", "gemini"])
async def test_upstream_errors_name_the_url_called(build, fake: FakeProvider, kind: str) -> None:
    settings = backend_settings(kind, fake)
    settings.pop("gemini_api_base_url", None)
    settings["base_url"] = f"{fake.url}/wrong/prefix"
    backend = (await build(b=settings))["b"]
    with pytest.raises(BackendError) as info:
        await backend.complete(chat())
    message = info.value.message
    assert info.value.status == 404 and f"POST {fake.url}/wrong/prefix" in message, message
    assert "404 404" not in message
    assert fake.key(kind) not in message


async def test_connection_errors_name_the_url_without_credentials(build) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backend = (await build(b={"type": "anthropic", "base_url": f"http://127.0.0.1:{port}",
                              "api_key": "sk-ant-secret-123456"}))["b"]
    with pytest.raises(BackendError) as info:
        await backend.complete(chat())
    assert f"127.0.0.1:{port}" in info.value.message and "sk-ant-secret" not in info.value.message


def test_openai_compatible_requires_base_url(tmp_path: Path) -> None:
    """Refused by the schema (so by ``check`` too) with the position, and by the connector when
    its settings are made in code: its old default was the proxy's own address."""
    with pytest.raises(RulesError) as info:
        make_config(tmp_path, local={"type": "openai-compatible", "default_model": "llama3"})
    assert "'base_url' is a required property" in str(info.value) and ":4:5:" in str(info.value)
    with pytest.raises(ValueError, match="openai-compatible needs base_url"):
        OpenAICompatibleBackend(ConnectorSettings("local", "openai-compatible"))
