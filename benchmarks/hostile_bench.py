"""How long ``GET /health`` waits while the proxy handles one hostile request body.

Starts the proxy (embedded echo backend, no keys, loopback) as its own process, then for each body:
sends it, and while it is being handled polls ``/health`` every 5 ms, printing the slowest answer
and how long the hostile request itself took. Issue "hold against hostile input" asks for the
slowest ``/health`` to stay under 100 ms for any single body up to ``max_body_bytes``.

    python benchmarks/hostile_bench.py [--size-mb 10] [--only NAME]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

from proxy_bench import cpu_seconds  # noqa: E402 - a process's CPU time from /proc, as proxy_bench reads it


def _text_body(text: str) -> bytes:
    return json.dumps({"model": "echo", "max_tokens": 16,
                       "messages": [{"role": "user", "content": text}]}).encode()


def _fill(piece: str, room: int) -> str:
    """``piece`` repeated to fill ``room`` bytes of a JSON body (escapes counted)."""
    return piece * (room // len(json.dumps(piece)[1:-1].encode()))


def hostile_bodies(limit: int) -> dict[str, bytes]:
    """Bodies just under ``limit`` bytes, each aimed at a place that was super-linear or slow."""
    room = limit - 256
    runs, total, i = [], 0, 0
    while total < room:
        piece = "`" * (i % 61 + 1) + " !/x "
        runs.append(piece)
        total += len(piece)
        i += 1
    many = room // 48
    bodies = {
        "inline code and commands": _text_body(_fill("`a` !/a ", room)),
        "code spans then one command": _text_body(_fill("`a` ", room - 16) + " !/hello"),
        "unmatched backtick runs": _text_body("".join(runs)[:room]),
        "route-append flood": _text_body(_fill("!/route-append(m, echo:x) ", room)),
        "lines then one command": _text_body(_fill("hello world\n", room - 16) + "!/hello"),
        "many small messages": json.dumps({"model": "echo", "messages": [
            {"role": "user" if n % 2 == 0 else "assistant", "content": "hi !/x"} for n in range(many)]}).encode(),
    }
    assert all(len(body) <= limit for body in bodies.values())
    return bodies


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_proxy(directory: Path, max_body_bytes: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    config = directory / "config.yaml"
    config.write_text("backends:\n  echo:\n    type: echo\ndefault_backend: echo\nroutes_dir: routes.d\n"
                      f"max_body_bytes: {max_body_bytes}\nusage:\n  path: {directory / 'usage.db'}\n", encoding="utf-8")
    (directory / "routes.d").mkdir(exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "router.cli", "--config", str(config), "--port", str(port),
                             "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the proxy did not start")


def health_latency(port: int, pid: int) -> tuple[float, float]:
    """(wall seconds one ``GET /health`` took, CPU seconds the proxy used meanwhile).

    The second figure holds on a loaded machine: the wall time then includes the time the proxy
    waits for a core, but CPU time only counts what it did instead of answering (10 ms ticks)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    cpu = cpu_seconds(pid)
    started = time.perf_counter()
    conn.request("GET", "/health")
    conn.getresponse().read()
    took = time.perf_counter() - started
    cpu = cpu_seconds(pid) - cpu
    conn.close()
    return took, cpu


def measure(port: int, body: bytes, pid: int) -> tuple[float, float, int, float]:
    """(slowest /health in s, the hostile request's duration in s, its status, the most proxy CPU
    seconds spent during one /health)."""
    result: dict[str, object] = {}

    def hostile() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        started = time.perf_counter()
        conn.request("POST", "/v2/chat/completions", body, {"content-type": "application/json"})
        response = conn.getresponse()
        response.read()
        result["status"], result["took"] = response.status, time.perf_counter() - started
        conn.close()

    thread = threading.Thread(target=hostile)
    thread.start()
    slowest = busiest = 0.0
    while thread.is_alive():
        took, cpu = health_latency(port, pid)
        slowest, busiest = max(slowest, took), max(busiest, cpu)
        time.sleep(0.005)
    thread.join()
    return slowest, float(result["took"]), int(result["status"]), busiest  # type: ignore[arg-type]


def run(max_body_bytes: int, only: str | None = None, report: Callable[[str], None] = print,
        cpu: dict[str, float] | None = None) -> dict[str, float]:
    """Slowest /health (s) per body, with the proxy's ``max_body_bytes`` set and every body just
    under it; prints one line per body. ``cpu``, if given, gets the most proxy CPU seconds spent
    during one /health per body."""
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = start_proxy(Path(tmp), max_body_bytes)
        try:
            for name, body in hostile_bodies(max_body_bytes).items():
                if only and only != name:
                    continue
                slowest, took, status, busiest = measure(port, body, proc.pid)
                out[name] = slowest
                if cpu is not None:
                    cpu[name] = busiest
                report(f"{name:30s} {len(body) / 1e6:5.1f} MB  status {status}  request {took * 1000:8.1f} ms  "
                       f"slowest /health {slowest * 1000:6.1f} ms  (proxy CPU meanwhile {busiest * 1000:4.0f} ms)")
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=10.0, help="body size (default: max_body_bytes, 10 MB)")
    parser.add_argument("--only", help="run one body by name")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    run(int(args.size_mb * 1024 * 1024), args.only)


if __name__ == "__main__":
    main()
