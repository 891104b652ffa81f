"""The proxy as a real process: ``python -m router.cli ...`` on an ephemeral port, its stderr read
line by line in a thread, signals sent to it by pid. For what only a real process shows: exit
statuses, signal handling, the start banner, logs of ``--workers`` children."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without the proxy's and the providers' variables (they change what runs)."""
    dropped = ("LLM_PROXY_", "OPENAI_", "ANTHROPIC_", "GEMINI_", "OPENROUTER_", "GCP_PROJECT_ID", "PROMETHEUS_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


class ProxyProcess:
    """``with ProxyProcess(tmp_path, "--config", path) as proxy:`` started and ready (``/health``
    answers), stopped with SIGTERM (then SIGKILL) on leaving."""

    def __init__(self, cwd: Path, *args: str, port: int | None = None, env: dict[str, str] | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "router.cli", *args, "--port", str(self.port)],
                                     cwd=cwd, env=env or clean_env(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def __enter__(self) -> "ProxyProcess":
        self.wait_ready()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise AssertionError(f"proxy exited {self.proc.returncode}:\n" + "\n".join(self.lines))
            if time.monotonic() > deadline:
                raise AssertionError("proxy not ready:\n" + "\n".join(self.lines))
            time.sleep(0.2)

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM and the exit status (SIGKILL after ``timeout``)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(10)
        return self.proc.returncode

    def wait_for_line(self, text: str, timeout: float = 30, count: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while sum(text in line for line in self.lines) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"no line with {text!r}:\n" + "\n".join(self.lines))
            time.sleep(0.1)

    def json_lines(self) -> list[dict[str, Any]]:
        """Every stderr line as JSON (fails on a line that is not one object)."""
        out = []
        for line in self.lines:
            value = json.loads(line)
            assert isinstance(value, dict), line
            out.append(value)
        return out


def post_json(url: str, body: dict[str, Any], timeout: float = 10) -> tuple[int, bytes]:
    request = urllib.request.Request(url, json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as reply:
        return reply.status, reply.read()
