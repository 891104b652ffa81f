"""A session belongs to the caller (the key id) that made it: the same ``x-session-id`` sent with
another key is another session, in memory and in the file repository alike."""

from __future__ import annotations

from pathlib import Path

import falcon.testing
import pytest

from proxy_support import chat, reply_model, reply_text, write_config
from router.app import create_app

KEY_A, KEY_B = "key-a-0123456789", "key-b-0123456789"
A = {"Authorization": f"Bearer {KEY_A}"}
B = {"Authorization": f"Bearer {KEY_B}"}


@pytest.fixture(params=["in_memory", "file"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> falcon.testing.TestClient:
    session = {"repository": request.param, "path": str(tmp_path / "sessions")}
    config = write_config(tmp_path, auth={"api_keys": [KEY_A, KEY_B]}, session=session)
    return falcon.testing.TestClient(create_app(config))


def test_another_key_cannot_read_or_steer_a_session(client: falcon.testing.TestClient) -> None:
    sid = "shared-session-id"
    assert chat(client, "openai", "!/set(project_dir=/home/alice/secret)", session=sid, headers=A).status_code == 200
    # B knows the id: it sees none of A's state ...
    assert "not set" in reply_text("openai", chat(client, "openai", "!/pwd", session=sid, headers=B))
    assert "/home/alice" not in reply_text("openai", chat(client, "openai", "!/hello", session=sid, headers=B))
    # ... and what it sets with that id does not reach A's next prompt.
    assert chat(client, "openai", "!/oneoff(other:b-choice)", session=sid, headers=B).status_code == 200
    assert chat(client, "openai", "!/backend(other) !/model(b-model)", session=sid, headers=B).status_code == 200
    assert reply_model("openai", chat(client, "openai", "hi", session=sid, headers=A)) == "gpt-4"
    assert "/home/alice/secret" in reply_text("openai", chat(client, "openai", "!/pwd", session=sid, headers=A))
    # B's own session under that id kept B's choice (the one-off was spent by B's next request).
    assert reply_model("openai", chat(client, "openai", "hi", session=sid, headers=B)) == "b-choice"
    assert reply_model("openai", chat(client, "openai", "hi", session=sid, headers=B)) == "b-model"


def test_session_scoped_limits_are_per_caller_too(tmp_path: Path) -> None:
    routes = tmp_path / "routes.d"
    routes.mkdir()
    (routes / "10.yaml").write_text("rules:\n  - name: s\n    limits: rpm(1, per=session)\n")
    config = write_config(tmp_path, routes_dir=str(routes), auth={"api_keys": [KEY_A, KEY_B]})
    client = falcon.testing.TestClient(create_app(config))
    assert chat(client, "openai", "hi", session="same", headers=A).status_code == 200
    assert chat(client, "openai", "hi", session="same", headers=B).status_code == 200
    assert chat(client, "openai", "hi", session="same", headers=A).status_code == 429
