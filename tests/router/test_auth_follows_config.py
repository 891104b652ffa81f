"""Auth is decided from the config at start-up and on every reload: keys added by a reload are
enforced, keys removed by a reload put a loopback server into local mode, and a reload that would
leave a non-loopback server without keys is refused (the old config keeps serving)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import falcon.testing
import yaml

from proxy_support import API_KEY, BASE_CONFIG, LoopbackClient, chat, error_message, reply_text
from router.cli import main

ADMIN_KEY = "sk-test-admin-key-9876543210"
KEY = {"x-api-key": API_KEY}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def _write(path: Path, **overrides: Any) -> str:
    path.write_text(yaml.safe_dump({**BASE_CONFIG, **overrides}), encoding="utf-8")
    return str(path)


def _serve(served: list[dict[str, Any]], path: str, *args: str) -> Any:
    assert main(["--config", path, *args]) == 0
    app = served[-1]["app"]
    app.reloader.watch = False  # these tests reload through the API
    return app


def _reload(client: Any, headers: dict[str, str] | None = None) -> Any:
    return client.simulate_post("/v2/admin/reload", headers=headers or {}, json={})


def test_reload_adding_keys_turns_auth_on(served, tmp_path):
    path = _write(tmp_path / "config.yaml")
    app = _serve(served, path)
    client = LoopbackClient(app)
    assert reply_text("openai", chat(client, "openai", "hi")) == "hi"  # local mode: no key needed

    _write(tmp_path / "config.yaml", auth={"api_keys": [API_KEY], "admin_keys": [ADMIN_KEY]})
    result = _reload(client)
    assert result.status_code == 200 and result.json["status"] == "reloaded", result.text
    assert "auth: keys" in result.json["detail"]

    for frontend in ("openai", "anthropic", "gemini"):
        refused = chat(client, frontend, "hi")
        assert refused.status_code == 401, refused.text
        error_message(frontend, refused.json)
        assert reply_text(frontend, chat(client, frontend, "hi", headers=KEY)) == "hi"
    assert _reload(client).status_code == 401
    assert _reload(client, KEY).status_code == 403  # admin keys exist now: a client key is not enough
    assert _reload(client, ADMIN).status_code == 200
    # With keys, Host and Origin no longer matter (a key is the proof, not the address).
    remote = falcon.testing.TestClient(app)
    assert chat(remote, "openai", "hi", headers={**KEY, "Origin": "https://example.com"}).status_code == 200


def test_admin_keys_alone_turn_auth_on(served, tmp_path):
    """Admin keys are client keys too: a config with only ``admin_keys`` is not keyless."""
    app = _serve(served, _write(tmp_path / "config.yaml", auth={"admin_keys": [ADMIN_KEY]}))
    client = LoopbackClient(app)
    assert chat(client, "openai", "hi").status_code == 401
    assert chat(client, "openai", "hi", headers=ADMIN).status_code == 200


def test_reload_removing_keys_turns_local_mode_on(served, tmp_path):
    path = _write(tmp_path / "config.yaml", auth={"api_keys": [API_KEY]})
    app = _serve(served, path)
    client = LoopbackClient(app)
    assert chat(client, "openai", "hi").status_code == 401

    _write(tmp_path / "config.yaml")
    result = _reload(client, KEY)
    assert result.status_code == 200 and "auth: local" in result.json["detail"], result.text
    assert reply_text("openai", chat(client, "openai", "hi")) == "hi"
    # ... and local mode's guard is on: a rebound name is refused.
    rebound = falcon.testing.TestClient(app).simulate_get("/v2/models", host="rebind.example")
    assert rebound.status_code == 403, rebound.text

    _write(tmp_path / "config.yaml", auth={"api_keys": [API_KEY]})  # and back on again
    assert _reload(client).status_code == 200
    assert chat(client, "openai", "hi").status_code == 401


def test_reload_cannot_drop_keys_on_a_public_address(served, tmp_path):
    path = _write(tmp_path / "config.yaml", auth={"api_keys": [API_KEY]})
    app = _serve(served, path, "--host", "0.0.0.0")
    client = falcon.testing.TestClient(app)
    _write(tmp_path / "config.yaml")
    result = _reload(client, KEY)
    assert result.status_code == 400
    assert "without client keys" in error_message("openai", result.json)
    assert app.state_ref.generation == 0
    assert chat(client, "openai", "hi").status_code == 401  # still enforced
    assert chat(client, "openai", "hi", headers=KEY).status_code == 200


def test_disable_auth_survives_reloads(served, tmp_path):
    """``--disable-auth`` is the operator's flag, not the config's: a reload keeps it."""
    path = _write(tmp_path / "config.yaml")
    app = _serve(served, path, "--disable-auth")
    client = falcon.testing.TestClient(app)
    _write(tmp_path / "config.yaml", auth={"api_keys": [API_KEY]})
    assert _reload(client).status_code == 200
    assert reply_text("openai", chat(client, "openai", "hi")) == "hi"
