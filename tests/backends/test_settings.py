"""Connectors are built from their own settings type, which the server makes from its config."""

from __future__ import annotations

from pathlib import Path

from backends.factory import build_backends
from backends.settings import ConnectorSettings, Timeouts
from router.config import connector_settings

from .conftest import make_config


def test_connector_settings_carry_what_the_config_says(tmp_path: Path) -> None:
    config = make_config(tmp_path, proxy_timeout=7.0, b={
        "type": "openrouter", "base_url": "http://127.0.0.1:9/v1", "api_keys": ["sk-one-111111", "sk-two-222222"],
        "models": ["m1", "m2"], "headers": {"X-Team": "a", "X-Api-Token": "hdr-secret-3333"},
        "timeout": {"connect": 2, "first_byte": 3}, "max_line_bytes": 4096, "referer": "https://example.test"})
    settings = connector_settings(config)["b"]
    assert settings == ConnectorSettings(
        name="b", type="openrouter", api_keys=("sk-one-111111", "sk-two-222222"), base_url="http://127.0.0.1:9/v1",
        models=("m1", "m2"), headers=config.backends["b"].headers, timeouts=Timeouts(2.0, 3.0, 7.0),
        max_line_bytes=4096, secrets=("sk-one-111111", "sk-two-222222", "hdr-secret-3333"),
        options=config.backends["b"].options)
    backend = build_backends({"b": settings})["b"]
    assert backend.timeouts == Timeouts(2.0, 3.0, 7.0) and backend.extra_headers["HTTP-Referer"] == "https://example.test"


def test_api_keys_are_always_secrets() -> None:
    """Settings made in code cannot leave a key out of what redaction looks for."""
    settings = ConnectorSettings(name="b", type="openai", api_keys=("sk-made-in-code-1",), secrets=("hdr-secret",))
    assert set(settings.secrets) == {"sk-made-in-code-1", "hdr-secret"}
    backend = build_backends({"b": settings})["b"]
    assert "sk-made-in-code-1" not in backend.redact("the provider said: bad key sk-made-in-code-1")
