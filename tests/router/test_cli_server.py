"""``llm-interactive-proxy [--config F] [--host H] [--port P] [--disable-auth] [--disable-interactive-commands]``:
what the flags do to the app that uvicorn is given (uvicorn itself is replaced by a recorder)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import falcon.testing
import pytest
import yaml

from proxy_support import API_KEY, BASE_CONFIG, LoopbackClient, chat, reply_text
from router.cli import main
from router.http.connections import LimitedProtocol, WorkerProtocol


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
    for name in ("LLM_PROXY_CONFIG", "LLM_PROXY_DISABLE_AUTH", "LLM_PROXY_LOOPBACK", "LLM_PROXY_DISABLE_COMMANDS",
                 "LLM_PROXY_LOG_LEVEL", "LLM_PROXY_LOG_FORMAT", "LLM_PROXY_METRICS_DIR"):
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


# --- --workers N: every worker logs like the single process ---------------------------------------

import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BACKEND_KEY = "opaque-upstream-key-0123456789"  # no credential shape: only its value finds it


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_PROXY_")}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def test_worker_entry_point_sets_up_redacted_logging(tmp_path: Path) -> None:
    """What uvicorn runs in each worker: after it, a warning quoting a configured key is written
    by our handler, in the chosen format, redacted (it went to Python's last-resort handler)."""
    config = _config(tmp_path, backends={**BASE_CONFIG["backends"], "up": {
        "type": "openai-compatible", "base_url": "http://127.0.0.1:9/v1", "api_key": BACKEND_KEY}})
    code = ("import logging; from router.asgi import create; create(); "
            f"logging.getLogger('backends.up').warning('upstream said: %s', {BACKEND_KEY!r}); "
            "logging.getLogger('llm_proxy.access').info('POST /v2/chat/completions 200 1.0ms'); logging.shutdown()")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env=_env(LLM_PROXY_CONFIG=config, LLM_PROXY_LOG_LEVEL="INFO", LLM_PROXY_LOG_FORMAT="json",
                                   LLM_PROXY_LOOPBACK="1"))
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert [(line["logger"], line["level"]) for line in lines] == [("backends.up", "warning"),
                                                                  ("llm_proxy.access", "info")]
    assert lines[0]["message"] == "upstream said: [redacted]" and BACKEND_KEY not in done.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_access_lines_are_written_up_to_sigterm(tmp_path: Path, workers: str) -> None:
    """End to end, one process or ``--workers 2``: every request served leaves its access line,
    also when SIGTERM follows at once (uvicorn ends the process by re-raising the signal after
    the graceful shutdown, so whatever the log handler still held at exit was lost)."""
    port = _free_port()
    config = _config(tmp_path, auth={"api_keys": [API_KEY]})
    proc = subprocess.Popen([sys.executable, "-m", "router.cli", "--config", config, "--port", str(port),
                             "--workers", workers, "--log-format", "json"], cwd=tmp_path, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        body = json.dumps({"model": "echo", "messages": [{"role": "user", "content": "hi"}]}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v2/chat/completions", body, method="POST",
                                         headers={"Authorization": f"Bearer {API_KEY}",
                                                  "Content-Type": "application/json"})
        deadline = time.monotonic() + 60
        served = 0
        while served < 3:
            try:
                with urllib.request.urlopen(request, timeout=5) as reply:
                    served += reply.status == 200
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    access = [line for line in map(json.loads, (x for x in err.splitlines() if x.startswith("{")))
              if line["logger"] == "llm_proxy.access" and line["message"].startswith("POST /v2/chat/completions 200")]
    assert len(access) == 3, err  # each request once: uvicorn's own access line stays off in workers too
    assert API_KEY not in err and '"logger":"uvicorn.access"' not in err
    assert f"http://127.0.0.1:{port}/v2/responses" in err, "the start banner names the Responses path"


@pytest.mark.parametrize("host,reach", [("0.0.0.0", "Anyone on every network this machine is on"),
                                        ("127.0.0.1", "Every program on this machine, and web pages through "
                                                      "DNS rebinding (the local-mode Host/Origin checks are off "
                                                      "too), can send chats")])
def test_disable_auth_warns_loudly_and_says_what_it_opens(served, tmp_path, capsys, host, reach):
    assert main(["--config", _config(tmp_path), "--disable-auth", "--host", host, "--port", "8123"]) == 0
    err = capsys.readouterr().err
    [warning] = [line for line in err.splitlines() if "--disable-auth" in line]
    assert "WARNING" in warning and "AUTHENTICATION IS OFF" in warning and f"http://{host}:8123" in warning
    assert reach in warning and "/v2/admin/reload" in warning and "/metrics" in warning


def test_no_warning_without_disable_auth(served, tmp_path, capsys):
    assert main(["--config", _config(tmp_path, auth={"api_keys": [API_KEY]}), "--host", "0.0.0.0"]) == 0
    assert "AUTHENTICATION IS OFF" not in capsys.readouterr().err


def test_start_says_where_each_backend_came_from(served, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-ignored-with-a-file-123")
    assert main(["--config", _config(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert re.search(r"backend echo \(echo\) from config\.yaml:\d+", err), err
    assert re.search(r"backend other \(echo\) from config\.yaml:\d+", err), err
    assert "backend openai" not in err and "sk-ignored" not in err
    monkeypatch.chdir(tmp_path / "..")  # no config.yaml here: the embedded defaults and the variable
    (tmp_path / ".." / "config.yaml").unlink(missing_ok=True)
    assert main([]) == 0
    err = capsys.readouterr().err
    assert "backend echo (echo) from embedded default" in err and "backend openai (openai) from OPENAI_API_KEY" in err
