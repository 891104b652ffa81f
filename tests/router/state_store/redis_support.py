"""Proxy processes on the real Redis (127.0.0.1:6379 unless ``REDIS_URL`` says otherwise), each run
under a key prefix of its own, removed afterwards; and a private ``redis-server`` on an ephemeral
port that a test may stop and start (the machine's Redis is never stopped)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import redis
import yaml

ROOT = Path(__file__).resolve().parents[3]
API_KEY = "sk-test-client-key-0123456789"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
ADMIN_KEY = "sk-test-admin-key-9876543210"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def unique_prefix() -> str:
    return f"liptest-{uuid.uuid4().hex[:12]}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_proxy_config(directory: Path, backend_url: str, backend_key: str | list[str], prefix: str, *,
                       rules: list[dict[str, Any]] | None = None, url: str = REDIS_URL,
                       on_unavailable: str = "fail_open", timeout_ms: int = 200,
                       client_keys: list[str] | None = None, admin_keys: list[str] | None = None) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    routes = directory / "routes.d"
    routes.mkdir(exist_ok=True)
    (routes / "10-test.yaml").write_text(yaml.safe_dump({"rules": rules or []}), encoding="utf-8")
    config = {
        "backends": {"up": {"type": "openai-compatible", "base_url": backend_url, "models": ["m"],
                            **({"api_keys": backend_key} if isinstance(backend_key, list) else {"api_key": backend_key})}},
        "default_backend": "up",
        "auth": {"api_keys": (client_keys or [API_KEY]) + (admin_keys or []),
                 **({"admin_keys": admin_keys} if admin_keys else {})},
        "routes_dir": "routes.d",
        "state": {"store": "redis", "url": url, "prefix": prefix, "on_unavailable": on_unavailable,
                  "timeout_ms": timeout_ms},
    }
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return str(path)


class Proxy:
    """``llm-interactive-proxy --config CONFIG`` in a process of its own, on a free port."""

    def __init__(self, config: str, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_PROXY_")}
        env["PYTHONPATH"] = str(ROOT)
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([sys.executable, "-m", "router.cli", "--config", config, "--port", str(self.port),
                                      "--log-level", "warning", *extra], cwd=os.path.dirname(config), env=env,
                                     stdout=subprocess.DEVNULL, stderr=self.log)

    def wait_ready(self, timeout: float = 60.0) -> "Proxy":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("proxy exited:\n" + self.output())
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("proxy did not start:\n" + self.output())

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def chat_body(content: str = "hi", model: str = "m") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}]}


async def post_chat(client: httpx.AsyncClient, proxy: Proxy, content: str = "hi", model: str = "m",
                    headers: dict[str, str] | None = None) -> httpx.Response:
    return await client.post(proxy.url + "/v2/chat/completions", json=chat_body(content, model),
                             headers={**AUTH, **(headers or {})})


class PrivateRedis:
    """A ``redis-server`` of this test alone, on an ephemeral port, without persistence."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.binary = binary
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "PrivateRedis":
        self.proc = subprocess.Popen([self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if redis.Redis(port=self.port, socket_timeout=0.5).ping():
                    return self
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None


async def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(interval)
