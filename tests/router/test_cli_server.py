"""``llm-interactive-proxy [--config F] [--host H] [--port P] [--disable-auth] [--disable-interactive-commands]``:
what the flags do to the app that uvicorn is given (uvicorn itself is replaced by a recorder)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import falcon.testing
import yaml

from proxy_support import API_KEY, BASE_CONFIG, LoopbackClient, chat, reply_text
from router.cli import main
from router.connections import LimitedProtocol, WorkerProtocol


def _config(tmp_path: Path, **overrides: Any) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**BASE_CONFIG, **overrides}), encoding="utf-8")
    return str(path)


def test_defaults_serve_on_loopback_without_auth(served, tmp_path):
    assert main(["--config", _config(tmp_path), "--port", "0"]) == 0
    [call] = served
    assert call["host"] == "127.0.0.1" and call["port"] == 0
    assert call["server_header"] is False  # no "server: uvicorn" on replies
    assert issubclass(call["http"], LimitedProtocol) and call["http"].ref is call["app"].state_ref
    assert call["ws"] == "none"
    client = LoopbackClient(call["app"])
    assert "Welcome" in reply_text("openai", chat(client, "openai", "!/hello"))


def test_keys_are_enforced(served, tmp_path):
    assert main(["--config", _config(tmp_path, auth={"api_keys": [API_KEY]})]) == 0
    client = falcon.testing.TestClient(served[0]["app"])
    assert chat(client, "openai", "hi").status_code == 401
    assert chat(client, "openai", "hi", headers={"x-api-key": API_KEY}).status_code == 200


def test_disable_auth_flag(served, tmp_path):
    assert main(["--config", _config(tmp_path, auth={"api_keys": [API_KEY]}), "--disable-auth"]) == 0
    assert chat(falcon.testing.TestClient(served[0]["app"]), "anthropic", "hi").status_code == 200


def test_disable_interactive_commands_flag(served, tmp_path):
    assert main(["serve", "--config", _config(tmp_path), "--disable-interactive-commands"]) == 0
    client = LoopbackClient(served[0]["app"])
    for frontend in ("openai", "anthropic", "gemini"):
        assert reply_text(frontend, chat(client, frontend, "!/hello")) == "!/hello"


def test_refuses_open_network_without_keys(served, tmp_path, capsys):
    assert main(["--config", _config(tmp_path), "--host", "0.0.0.0"]) == 2
    assert not served and "refusing" in capsys.readouterr().err


def test_bad_config_exits_2(served, tmp_path, capsys):
    path = tmp_path / "config.yaml"
    path.write_text("backends: {echo: {type: echo}}\ndefault_backend: nowhere\n")
    assert main(["--config", str(path)]) == 2
    assert not served and "nowhere" in capsys.readouterr().err


def test_workers_serve_with_the_limited_protocol(served, tmp_path, monkeypatch):
    """``--workers N``: uvicorn imports the app factory and the protocol by name in each worker;
    the factory binds the worker's config to the protocol."""
    import importlib

    monkeypatch.setattr(WorkerProtocol, "ref", None)
    for name in ("LLM_PROXY_CONFIG", "LLM_PROXY_DISABLE_AUTH", "LLM_PROXY_LOOPBACK", "LLM_PROXY_DISABLE_COMMANDS"):
        monkeypatch.setenv(name, "")  # restored after the test; main() sets them for the workers
    path = _config(tmp_path, server={"header_timeout": 3})
    assert main(["--config", path, "--workers", "2"]) == 0
    [call] = served
    assert call["app"] == "router.asgi:create" and call["factory"] is True and call["workers"] == 2
    module, _, name = call["http"].partition(":")
    assert getattr(importlib.import_module(module), name) is WorkerProtocol
    app = importlib.import_module("router.asgi").create()  # what each worker does
    assert WorkerProtocol.ref is app.state_ref and app.state_ref.state.config.server.header_timeout == 3
    assert app.state_ref.state.auth.local_only  # loopback, no keys: local mode in the workers too
