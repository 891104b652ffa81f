"""Gemini CLI OAuth backends against the fake Code Assist API and token endpoint: token refresh
before the call with an atomic write-back in Gemini CLI's format, refresh failures, personal
onboarding, cloud-project tier checks with clear messages, generation and streaming."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest

import backends.gemini_cli as gemini_cli
from backends.base import BackendError
from backends.keys import KeyChoice, key_label
from fakes.provider import FakeProvider, error, reply
from router.wire.canonical import StreamEnd, StreamStart

from .conftest import backend_settings, chat, collect, fold, write_creds

MANAGED = "fake-managed-project-123456"


@pytest.fixture(autouse=True)
def fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gemini_cli, "ONBOARD_POLL_SECONDS", 0.01)


async def personal(build, fake: FakeProvider, creds: Path, **extra: Any):
    settings = backend_settings("gemini-cli-oauth-personal", fake, credentials_path=str(creds), **extra)
    return (await build(b=settings))["b"]


async def cloud(build, fake: FakeProvider, creds: Path, project: str | None = "my-gcp-project", **extra: Any):
    settings = backend_settings("gemini-cli-cloud-project", fake, credentials_path=str(creds), **extra)
    if project:
        settings["gcp_project_id"] = project
    return (await build(b=settings))["b"]


@pytest.fixture
def creds(tmp_path: Path) -> Path:
    path = write_creds(tmp_path / "oauth_creds.json")
    os.chmod(path, 0o644)
    return path


def wrapped(fake: FakeProvider) -> dict[str, Any]:
    return fake.generations[-1].body


# --- OAuth ----------------------------------------------------------------------------------------

async def test_expired_token_refreshed_before_call_and_written_back(build, fake: FakeProvider, creds: Path) -> None:
    before = json.loads(creds.read_text())
    inode = creds.stat().st_ino
    backend = await personal(build, fake, creds)
    response = await backend.complete(chat("hi there"))
    assert response.text() == "hi there"
    # refreshed first: the very first Code Assist call already carried the new token
    assert fake.requests[0].path == "/token"
    (token,) = fake.oauth.issued
    assert all(r.api_key == token for r in fake.requests[1:])
    form = fake.oauth.refresh_calls[0]
    assert form["grant_type"] == "refresh_token" and form["refresh_token"] == "1//refresh-token"
    assert form["client_id"] == gemini_cli.GEMINI_CLI_CLIENT_ID
    # written back in the same format, atomically (a new file renamed over the old), owner-only
    after = json.loads(creds.read_text())
    assert after["access_token"] == token
    assert after["refresh_token"] == before["refresh_token"]
    assert after["id_token"] == before["id_token"] and after["scope"] == before["scope"]
    assert after["token_type"] == "Bearer"
    assert isinstance(after["expiry_date"], int)
    assert abs(after["expiry_date"] - (time.time() + 3599) * 1000) < 60_000
    assert set(after) == set(before)
    assert creds.stat().st_ino != inode
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    assert sorted(p.name for p in creds.parent.iterdir() if p.name.startswith(".oauth")) == []


async def test_second_call_does_not_refresh(build, fake: FakeProvider, creds: Path) -> None:
    backend = await personal(build, fake, creds)
    await backend.complete(chat())
    await backend.complete(chat())
    await collect(backend.stream(chat(stream=True)))
    assert len(fake.oauth.refresh_calls) == 1
    # a new process (another backend instance) reads the refreshed file and does not refresh either
    again = await personal(build, fake, creds)
    await again.complete(chat())
    assert len(fake.oauth.refresh_calls) == 1


async def test_valid_token_used_as_is(build, fake: FakeProvider, tmp_path: Path) -> None:
    path = write_creds(tmp_path / "oauth_creds.json", access_token="ya29.fake-access-token", expires_in_ms=3_600_000)
    original = path.read_text()
    backend = await personal(build, fake, path)
    await backend.complete(chat())
    assert fake.oauth.refresh_calls == []
    assert fake.last.api_key == "ya29.fake-access-token"
    assert path.read_text() == original


async def test_token_expiring_within_margin_is_refreshed(build, fake: FakeProvider, tmp_path: Path) -> None:
    path = write_creds(tmp_path / "oauth_creds.json", access_token="ya29.fake-access-token", expires_in_ms=120_000)
    backend = await personal(build, fake, path)
    await backend.complete(chat())
    assert len(fake.oauth.refresh_calls) == 1


async def test_credentials_path_as_directory(build, fake: FakeProvider, creds: Path) -> None:
    backend = await personal(build, fake, creds.parent)
    assert (await backend.complete(chat("dir"))).text() == "dir"


async def test_401_forces_one_refresh(build, fake: FakeProvider, tmp_path: Path) -> None:
    path = write_creds(tmp_path / "oauth_creds.json", access_token="ya29.revoked-elsewhere", expires_in_ms=3_600_000)
    backend = await personal(build, fake, path)
    assert (await backend.complete(chat("retry"))).text() == "retry"
    assert len(fake.oauth.refresh_calls) == 1
    assert json.loads(path.read_text())["access_token"] == fake.oauth.issued[0]


async def call_fails(backend: Any, stream: bool) -> BackendError:
    """The BackendError one chat call (a stream, or a complete one) raises."""
    with pytest.raises(BackendError) as info:
        if stream:
            await collect(backend.stream(chat(stream=True)))
        else:
            await backend.complete(chat())
    return info.value


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_refresh_failure_is_clear_auth_error(build, fake: FakeProvider, creds: Path, stream: bool) -> None:
    fake.oauth.fail = True
    backend = await personal(build, fake, creds)
    exc = await call_fails(backend, stream)
    assert exc.kind == "auth"
    assert "refresh failed" in exc.message and "invalid_grant" in exc.message and "gemini" in exc.message
    assert "1//refresh-token" not in exc.message
    assert [r.path for r in fake.requests] == ["/token"]  # no Code Assist call with a dead token
    assert json.loads(creds.read_text())["access_token"] == "ya29.expired-token"  # file untouched


async def test_wrong_client_is_refresh_failure(build, fake: FakeProvider, creds: Path) -> None:
    fake.oauth.client_id = "someone-else.apps.googleusercontent.com"
    backend = await personal(build, fake, creds)
    with pytest.raises(BackendError) as info:
        await backend.complete(chat())
    assert info.value.kind == "auth" and "invalid_client" in info.value.message


async def test_custom_client_id(build, fake: FakeProvider, creds: Path) -> None:
    fake.oauth.client_id = "mine.apps.googleusercontent.com"
    backend = await personal(build, fake, creds, client_id="mine.apps.googleusercontent.com", client_secret="s")
    await backend.complete(chat())
    assert fake.oauth.refresh_calls[0]["client_secret"] == "s"


async def test_expired_without_refresh_token(build, fake: FakeProvider, tmp_path: Path) -> None:
    path = write_creds(tmp_path / "oauth_creds.json", refresh_token=None)
    backend = await personal(build, fake, path)
    with pytest.raises(BackendError) as info:
        await backend.complete(chat())
    assert info.value.kind == "auth" and "no refresh_token" in info.value.message


async def test_missing_credentials_file(build, fake: FakeProvider, tmp_path: Path) -> None:
    backend = await personal(build, fake, tmp_path / "nowhere" / "oauth_creds.json")
    with pytest.raises(BackendError) as info:
        await backend.complete(chat())
    assert info.value.kind == "auth" and "no OAuth credentials" in info.value.message
    assert "gemini" in info.value.message


async def test_unreadable_credentials_file(build, fake: FakeProvider, tmp_path: Path) -> None:
    path = tmp_path / "oauth_creds.json"
    path.write_text("{not json")
    backend = await personal(build, fake, path)
    with pytest.raises(BackendError) as info:
        await backend.complete(chat())
    assert info.value.kind == "auth" and "cannot read" in info.value.message


async def test_token_endpoint_unreachable(build, fake: FakeProvider, creds: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = await personal(build, fake, creds, token_url=f"http://127.0.0.1:{port}/token")
    with pytest.raises(BackendError) as info:
        await backend.complete(chat())
    assert info.value.kind == "connection" and "token endpoint" in info.value.message


# --- personal: onboarding -------------------------------------------------------------------------

async def test_personal_onboarding(build, fake: FakeProvider, creds: Path) -> None:
    backend = await personal(build, fake, creds)
    await backend.complete(chat("first"))
    endpoints = [r.endpoint for r in fake.requests if r.family != "oauth"]
    assert endpoints == ["loadCodeAssist", "onboardUser", "generate"]
    onboard = fake.calls(endpoint="onboardUser")[0].body
    assert onboard["tierId"] == "free-tier" and "cloudaicompanionProject" not in onboard
    body = wrapped(fake)
    assert body["model"] == "fake-model" and body["project"] == MANAGED
    assert body["request"]["contents"][0]["parts"][0]["text"] == "first"
    assert set(body) >= {"model", "project", "request"}
    # the project is remembered: no second setup
    await backend.complete(chat())
    assert len(fake.calls(endpoint="loadCodeAssist")) == 1


async def test_personal_onboarding_long_running(build, fake: FakeProvider, creds: Path) -> None:
    fake.code_assist.pending_polls = 2
    backend = await personal(build, fake, creds)
    await backend.complete(chat())
    assert wrapped(fake)["project"] == MANAGED
    assert len(fake.calls(endpoint="onboardUser")) == 1
    assert len(fake.calls(endpoint="getOperation")) == 2  # the operation is polled by name


async def test_personal_already_onboarded(build, fake: FakeProvider, creds: Path) -> None:
    fake.code_assist.onboarded = True
    fake.code_assist.project = "already-there-42"
    backend = await personal(build, fake, creds)
    await backend.complete(chat())
    assert fake.calls(endpoint="onboardUser") == []
    assert wrapped(fake)["project"] == "already-there-42"


async def test_personal_health(build, fake: FakeProvider, creds: Path) -> None:
    backend = await personal(build, fake, creds)
    assert (await backend.health()).ok
    fake.oauth.fail = True
    broken = await personal(build, fake, write_creds(creds.parent / "other.json"))
    health = await broken.health()
    assert not health.ok and health.error == "auth"


async def test_models_are_static(build, fake: FakeProvider, creds: Path) -> None:
    backend = await personal(build, fake, creds)
    assert await backend.list_models() == list(gemini_cli.DEFAULT_MODELS)
    assert fake.requests == []


# --- cloud project --------------------------------------------------------------------------------

async def test_cloud_project_standard_tier(build, fake: FakeProvider, creds: Path) -> None:
    fake.code_assist.tier, fake.code_assist.onboarded, fake.code_assist.project = "standard-tier", True, "my-gcp-project"
    backend = await cloud(build, fake, creds)
    assert (await backend.complete(chat("paid"))).text() == "paid"
    load = fake.calls(endpoint="loadCodeAssist")[0].body
    assert load["cloudaicompanionProject"] == "my-gcp-project"
    assert load["metadata"]["duetProject"] == "my-gcp-project"
    assert wrapped(fake)["project"] == "my-gcp-project"


async def test_cloud_project_onboards_to_standard(build, fake: FakeProvider, creds: Path) -> None:
    fake.code_assist.tier = "standard-tier"
    backend = await cloud(build, fake, creds)
    await backend.complete(chat())
    onboard = fake.calls(endpoint="onboardUser")[0].body
    assert onboard["tierId"] == "standard-tier" and onboard["cloudaicompanionProject"] == "my-gcp-project"
    assert wrapped(fake)["project"] == "my-gcp-project"


async def test_cloud_project_on_free_tier_is_clear_error(build, fake: FakeProvider, creds: Path) -> None:
    fake.code_assist.onboarded, fake.code_assist.project = True, "my-gcp-project"  # tier: free-tier
    backend = await cloud(build, fake, creds)
    with pytest.raises(BackendError) as info:
        await backend.complete(chat())
    message = info.value.message
    assert "my-gcp-project" in message and "free-tier" in message and "standard" in message
    assert fake.generations == []


async def test_cloud_project_forbidden(build, fake: FakeProvider, creds: Path) -> None:
    fake.code_assist.forbidden_projects = {"my-gcp-project"}
    backend = await cloud(build, fake, creds)
    with pytest.raises(BackendError) as info:
        await backend.complete(chat())
    exc = info.value
    assert exc.kind == "auth" and exc.status == 403
    assert "permission denied" in exc.message and "my-gcp-project" in exc.message
    assert "cloudaicompanion" in exc.message


async def test_cloud_project_missing(build, fake: FakeProvider, creds: Path) -> None:
    backend = await cloud(build, fake, creds, project=None)
    with pytest.raises(BackendError) as info:
        await backend.complete(chat())
    assert "gcp_project_id" in info.value.message and "GCP_PROJECT_ID" in info.value.message
    assert [r.path for r in fake.requests if r.family != "oauth"] == []


async def test_cloud_project_from_env(tmp_path: Path, fake: FakeProvider, creds: Path) -> None:
    from backends.factory import build_backends
    from router.config import connector_settings, load_config

    path = tmp_path / "config.yaml"
    path.write_text(f"backends:\n  gcp:\n    type: gemini-cli-cloud-project\n    gemini_api_base_url: {fake.url}\n"
                    f"    token_url: {fake.token_url}\n")
    config = load_config(str(path), env={"GCP_PROJECT_ID": "env-project", "GEMINI_CREDENTIALS_PATH": str(creds)})
    fake.code_assist.tier, fake.code_assist.onboarded, fake.code_assist.project = "standard-tier", True, "env-project"
    backend = build_backends(connector_settings(config))["gcp"]
    try:
        await backend.complete(chat())
    finally:
        await backend.aclose()
    assert wrapped(fake)["project"] == "env-project"


# --- generation -----------------------------------------------------------------------------------

async def test_stream_through_code_assist(build, fake: FakeProvider, creds: Path) -> None:
    backend = await personal(build, fake, creds)
    fake.enqueue(reply("streamed via code assist", tool_calls=[{"name": "get_weather", "arguments": {"city": "Lima"}}],
                       usage={"prompt_tokens": 3, "completion_tokens": 4}))
    events = await collect(backend.stream(chat("go", stream=True, tools=True)))
    assert isinstance(events[0], StreamStart) and isinstance(events[-1], StreamEnd)
    result = fold(events)
    assert result.text() == "streamed via code assist"
    assert result.tool_calls()[0].parsed_arguments() == {"city": "Lima"} and result.tool_calls()[0].id
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (3, 4)
    rec = await fake.generations[-1].wait()
    assert rec.path == "/v1internal:streamGenerateContent" and rec.query == {"alt": "sse"} and rec.completed
    assert rec.body["project"] == MANAGED and rec.body["model"] == "fake-model"


async def test_code_assist_429_retry_delay(build, fake: FakeProvider, creds: Path) -> None:
    backend = await personal(build, fake, creds)
    fake.enqueue(error(429, retry_after=9))
    with pytest.raises(BackendError) as info:
        await backend.complete(chat())
    assert info.value.kind == "rate_limited" and info.value.retry_after == 9.0


async def test_code_assist_token_redacted(build, fake: FakeProvider, creds: Path) -> None:
    backend = await personal(build, fake, creds)
    await backend.complete(chat())
    token = fake.oauth.issued[0]
    fake.enqueue(error(400, message=f"token {token} is not allowed here"))
    with pytest.raises(BackendError) as info:
        await backend.complete(chat())
    assert token not in info.value.message and "is not allowed here" in info.value.message


async def test_concurrent_first_calls_refresh_and_onboard_once(build, fake: FakeProvider, creds: Path) -> None:
    import asyncio

    backend = await personal(build, fake, creds)
    replies = await asyncio.gather(*(backend.complete(chat(f"n{i}")) for i in range(5)))
    assert sorted(r.text() for r in replies) == [f"n{i}" for i in range(5)]
    assert len(fake.oauth.refresh_calls) == 1
    assert len(fake.calls(endpoint="loadCodeAssist")) == 1 and len(fake.calls(endpoint="onboardUser")) == 1


# --- write-back failures --------------------------------------------------------------------------

def read_only_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rename onto the credentials file fails as on a read-only mount (the suite runs as root,
    for whom permissions do not stop a write, so the failure is injected at the system call)."""
    import errno

    def refuse(src: str, dst: str) -> None:
        raise OSError(errno.EROFS, "Read-only file system", dst)

    monkeypatch.setattr(os, "replace", refuse)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_write_back_failure_is_a_backend_error(build, fake: FakeProvider, creds: Path,
                                                     monkeypatch: pytest.MonkeyPatch, stream: bool) -> None:
    """Not a 500: a classified, retryable backend error naming the file; nothing left behind;
    the refreshed token is kept, so the next request works without refreshing again."""
    before = creds.read_text()
    backend = await personal(build, fake, creds)
    read_only_disk(monkeypatch)
    exc = await call_fails(backend, stream)
    assert exc.kind == "auth" and exc.retryable and exc.backend == "b"
    assert str(creds) in exc.message and "Read-only file system" in exc.message
    assert creds.read_text() == before
    assert [p.name for p in creds.parent.iterdir() if p.name.startswith(".oauth")] == []
    assert (await backend.complete(chat("still here"))).text() == "still here"
    assert len(fake.oauth.refresh_calls) == 1


async def test_write_back_failure_fails_over(build, fake: FakeProvider, creds: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from dsl import ir
    from dsl.evaluate import Plan
    from router.pipeline.dispatch import Dispatcher, Outcome, RetryPolicy

    built = await build(gcli=backend_settings("gemini-cli-oauth-personal", fake, credentials_path=str(creds)),
                        other=backend_settings("anthropic", fake))
    read_only_disk(monkeypatch)
    outcome = Outcome()
    dispatcher = Dispatcher(built, retry=RetryPolicy(retries=0, base_delay=0.01, max_delay=0.01))
    plan = Plan(chain=(ir.Target("gcli", "gemini-2.5-pro"), ir.Target("other", "fake-model")))
    reply_ = await dispatcher.complete(plan, chat("fail over"), outcome, None)
    assert reply_.text() == "fail over"
    assert [(a.backend, a.status) for a in outcome.attempts] == [("gcli", "auth"), ("other", "ok")]


async def test_write_back_syncs_before_the_rename(build, fake: FakeProvider, creds: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The new file's data is on disk before its name replaces the old one: a crash between the
    two leaves the old credentials, never an empty file."""
    steps: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        steps.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src: str, dst: str) -> None:
        steps.append(("replace", str(src)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    backend = await personal(build, fake, creds)
    await backend.complete(chat())
    [(first, synced), (second, renamed)] = steps
    assert (first, second) == ("fsync", "replace") and synced == renamed
    assert json.loads(creds.read_text())["access_token"] == fake.oauth.issued[0]


async def test_project_setup_is_not_charged_to_the_calls_key_choice(build, fake: FakeProvider, creds: Path) -> None:
    """Only the generation is the call's: loadCodeAssist/onboardUser (once per process) neither ask
    the per-key limits nor consume them, so a limit of one call admits the first request."""
    fake.code_assist.onboarded = False
    backend = await personal(build, fake, creds)
    asked: list[str] = []

    def allow_once(label: str) -> bool:
        asked.append(label)
        return len(asked) == 1

    keys = KeyChoice(allow_once)
    assert (await backend.complete(chat("first"), keys)).text() == "first"
    assert asked == [key_label("")] and keys.used == key_label("")
    assert {"/v1internal:loadCodeAssist", "/v1internal:onboardUser"} <= {r.path for r in fake.requests}
