"""What only a real ``llm-interactive-proxy`` process shows: a port already taken, the start
banner, JSON log lines, exit status and access lines on SIGTERM, one reload per SIGHUP + edit."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import falcon.asgi
import httpx
import yaml

from fakes.fixtures import fake_provider  # noqa: F401 - the fixture
from fakes.provider import FakeProvider, stream_chunks
from process_support import ProxyProcess, clean_env, free_port, post_json
from router.banner import RESPONSES_PATH, client_base_urls


def _config(tmp_path: Path, **extra: object) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"backends": {"echo": {"type": "echo"}}, **extra}), encoding="utf-8")
    (tmp_path / "routes.d").mkdir(exist_ok=True)
    return str(path)


def test_port_in_use_is_one_clear_error_before_any_banner(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "router.cli", "--config", _config(tmp_path), "--port", str(port)],
                              cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if "ERROR" in line or "error" in line.lower()]
    assert len(errors) == 1 and f"port {port} on 127.0.0.1 is already in use" in errors[0], done.stderr
    assert "listening on" not in done.stderr and "Uvicorn running" not in done.stderr
    assert "Traceback" not in done.stderr


def test_json_logs_banner_and_sigterm(tmp_path: Path) -> None:
    """``--log-format json``: every line, uvicorn's and the banner's too, is one JSON object without
    colour escapes; the banner names the config and the client base URLs; a command reply leaves
    only its access line; SIGTERM ends with status 0."""
    config = _config(tmp_path)
    with ProxyProcess(tmp_path, "--config", config, "--log-format", "json") as proxy:
        status, _ = post_json(f"{proxy.url}/v2/chat/completions",
                              {"model": "echo", "messages": [{"role": "user", "content": "!/hello"}]})
        assert status == 200
        code = proxy.stop()
    assert code == 0, proxy.lines
    lines = proxy.json_lines()  # fails on any line that is not a JSON object
    raw = "\n".join(proxy.lines)
    assert "\\u001b" not in raw and "\x1b" not in raw and "color_message" not in raw
    assert any(line["logger"] == "uvicorn.error" for line in lines)
    banner = [line for line in lines if line["logger"] == "llm_proxy.start"]
    assert banner and config in banner[0]["message"] and banner[0]["config"] == config
    urls = next(line["base_urls"] for line in banner if "base_urls" in line)
    root = f"http://127.0.0.1:{proxy.port}"
    assert set(urls.values()) >= {f"{root}/v2", root}
    assert urls["OpenAI Responses"] == f"{root}/v2/responses"  # the real app serves it
    assert f"OpenAI (OPENAI_BASE_URL) {root}/v2" in next(line["message"] for line in banner if "base_urls" in line)
    requests = [line for line in lines if line.get("request_id")]
    assert len(requests) == 1 and requests[0]["logger"] == "llm_proxy.access", requests


def test_banner_without_a_config_file_says_the_embedded_defaults_run(tmp_path: Path) -> None:
    with ProxyProcess(tmp_path) as proxy:
        code = proxy.stop()
    assert code == 0
    text = "\n".join(proxy.lines)
    assert "no config file found" in text and "running the embedded defaults" in text
    assert "routes_dir" in text and "does not exist" in text  # no routes.d beside it: said, not "0 rules"


def test_banner_lists_the_responses_path_when_the_app_serves_it() -> None:
    app = falcon.asgi.App()
    assert RESPONSES_PATH not in " ".join(client_base_urls(app, "0.0.0.0", 8000).values())

    class Responses:
        async def on_post(self, req: object, resp: object) -> None:  # pragma: no cover - never called
            pass

    app.add_route(RESPONSES_PATH, Responses())
    urls = client_base_urls(app, "0.0.0.0", 8000)
    assert urls["OpenAI Responses"] == f"http://127.0.0.1:8000{RESPONSES_PATH}"


async def test_stream_finishing_during_the_drain_is_logged_and_exit_is_0(tmp_path: Path,
                                                                         fake_provider: FakeProvider) -> None:
    pieces = [f"piece{i} " for i in range(15)]
    fake_provider.on_model("slow-model", stream_chunks(pieces, gap=0.1))
    config = _config(tmp_path, backends={"slow": {"type": "openai", "base_url": f"{fake_provider.url}/v1",
                                                  "api_key": fake_provider.key("openai")}})
    proxy = ProxyProcess(tmp_path, "--config", config, "--log-format", "json", "--drain-timeout", "20")
    try:
        await asyncio.to_thread(proxy.wait_ready)
        body = b""
        async with httpx.AsyncClient(base_url=proxy.url, timeout=20) as client:
            async with client.stream("POST", "/v2/chat/completions", json={
                    "model": "slow:slow-model", "stream": True,
                    "messages": [{"role": "user", "content": "slowly"}]}) as reply:
                assert reply.status_code == 200
                request_id = reply.headers["x-request-id"]
                chunks = reply.aiter_bytes()
                while b"piece1" not in body:
                    body += await chunks.__anext__()
                proxy.signal(signal.SIGTERM)  # mid-stream: the drain lets it finish
                async for chunk in chunks:
                    body += chunk
        assert b"piece14" in body and b"[DONE]" in body
        code = await asyncio.to_thread(proxy.stop)
    finally:
        await asyncio.to_thread(proxy.stop)
    assert code == 0, proxy.lines
    access = [line for line in proxy.json_lines() if line.get("request_id") == request_id]
    assert len(access) == 1 and access[0]["logger"] == "llm_proxy.access" and access[0]["stream"] is True, proxy.lines
    assert access[0]["status"] == 200


def test_sighup_after_an_edit_reloads_once(tmp_path: Path) -> None:
    """The file watcher and the signal both see the edit; the files are loaded once."""
    config = _config(tmp_path)
    rules = tmp_path / "routes.d" / "10.yaml"
    rules.write_text("rules:\n  - name: a\n    route: echo\n", encoding="utf-8")
    with ProxyProcess(tmp_path, "--config", config) as proxy:
        time.sleep(1.5)  # the watcher has taken its first look
        rules.write_text("rules:\n  - name: b\n    route: echo\n", encoding="utf-8")
        proxy.signal(signal.SIGHUP)
        proxy.wait_for_line("reloaded (")
        time.sleep(4)  # the watcher's poll (1 s) and debounce (0.5 s) have long passed
        reloads = [line for line in proxy.lines if "reloaded (" in line]
        assert len(reloads) == 1 and "generation 1" in reloads[0], proxy.lines
        status, body = post_json(f"{proxy.url}/v2/chat/completions",
                                 {"model": "echo", "messages": [{"role": "user", "content": "!/route-list"}]})
        assert status == 200 and "b" in json.loads(body)["choices"][0]["message"]["content"]
    # And a plain edit, without a signal, still reloads on its own.
    with ProxyProcess(tmp_path, "--config", config) as proxy:
        time.sleep(1.5)
        rules.write_text("rules:\n  - name: c\n    route: echo\n", encoding="utf-8")
        proxy.wait_for_line("reloaded (")


def test_free_port_helper_gives_distinct_ports() -> None:
    assert free_port() > 0


def test_workers_write_the_same_json_lines_and_the_parent_exits_0(tmp_path: Path) -> None:
    """``--workers 2``: the parent's and both workers' lines are JSON objects without colour
    escapes, the access line of a request is written once, and SIGTERM ends with status 0."""
    config = _config(tmp_path)
    with ProxyProcess(tmp_path, "--config", config, "--log-format", "json", "--workers", "2") as proxy:
        status, _ = post_json(f"{proxy.url}/v2/chat/completions",
                              {"model": "echo", "messages": [{"role": "user", "content": "hi"}]})
        assert status == 200
        code = proxy.stop()
    assert code == 0, proxy.lines
    lines = proxy.json_lines()
    assert "color_message" not in "\n".join(proxy.lines)
    started = [line for line in lines if line["message"].startswith("Started server process")]
    assert len(started) == 2  # each worker's own uvicorn lines, through the same handler
    access = [line for line in lines if line["logger"] == "llm_proxy.access" and "/chat/completions" in line["message"]]
    assert len(access) == 1 and access[0]["status"] == 200


def test_workers_metrics_cover_every_worker(tmp_path: Path) -> None:
    """``--workers 2``: whichever worker answers a scrape, it counts every request served."""
    from prometheus_client.parser import text_string_to_metric_families

    config = _config(tmp_path)
    with ProxyProcess(tmp_path, "--config", config, "--workers", "2") as proxy:
        for _ in range(12):  # each on a new connection: the workers take turns as the kernel hands them out
            assert post_json(f"{proxy.url}/v2/chat/completions",
                             {"model": "echo", "messages": [{"role": "user", "content": "hi"}]})[0] == 200
        deadline, seen = time.monotonic() + 20, []
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"{proxy.url}/metrics", timeout=5) as reply:
                samples = {s.name: s.value for f in text_string_to_metric_families(reply.read().decode())
                           for s in f.samples if s.name in ("llm_proxy_requests_total", "llm_proxy_worker_processes")}
            seen.append(samples)
            if len(seen) >= 4 and all(s == {"llm_proxy_requests_total": 12, "llm_proxy_worker_processes": 2}
                                      for s in seen[-4:]):
                break
            time.sleep(0.5)
        else:
            raise AssertionError(seen)
        assert proxy.stop() == 0


# --- --workers N and signals ------------------------------------------------------------------------

async def test_workers_finish_in_flight_requests_on_sigterm_and_every_process_exits_0(
        tmp_path: Path, fake_provider: FakeProvider) -> None:
    """``--workers 2``, SIGTERM to the parent while slow requests are in flight: each worker drains,
    the requests complete, every worker exits 0 (not -15) and so does the parent."""
    from fakes.provider import delay, reply

    fake_provider.on_model("slow-model", delay(3.0, reply("finished slowly")))
    fake_provider.on_model("slow-stream", stream_chunks([f"piece{i} " for i in range(10)], gap=0.3))
    config = _config(tmp_path, backends={"slow": {"type": "openai", "base_url": f"{fake_provider.url}/v1",
                                                  "api_key": fake_provider.key("openai")}})
    proxy = ProxyProcess(tmp_path, "--config", config, "--log-format", "json", "--workers", "2",
                         "--drain-timeout", "20")
    try:
        await asyncio.to_thread(proxy.wait_ready)
        await asyncio.to_thread(proxy.wait_for_line, "Application startup complete", 60, 2)  # both workers
        # No kept-alive connections: each request on its own, handed to either worker by the kernel.
        async with httpx.AsyncClient(base_url=proxy.url, timeout=30,
                                     limits=httpx.Limits(max_keepalive_connections=0)) as client:
            async def ask(model: str, stream: bool) -> tuple[int, str]:
                reply_ = await client.post("/v2/chat/completions", json={
                    "model": f"slow:{model}", "stream": stream, "messages": [{"role": "user", "content": "slowly"}]})
                return reply_.status_code, reply_.text

            calls = [asyncio.create_task(ask("slow-model", False)) for _ in range(4)]
            calls.append(asyncio.create_task(ask("slow-stream", True)))
            deadline = time.monotonic() + 30
            while len(fake_provider.requests) < 5:  # all five reached the backend: in flight
                assert time.monotonic() < deadline, fake_provider.requests
                await asyncio.sleep(0.05)
            proxy.signal(signal.SIGTERM)
            replies = await asyncio.gather(*calls)
        assert [status for status, _ in replies] == [200] * 5, replies
        assert all("finished slowly" in text for _, text in replies[:4]) and "piece9" in replies[4][1]
        code = await asyncio.to_thread(proxy.stop)
    finally:
        await asyncio.to_thread(proxy.stop)
    assert code == 0, proxy.lines
    lines = proxy.json_lines()
    [stopped] = [line for line in lines if "every worker stopped" in line["message"]]
    assert stopped["message"].endswith("(exit status 0, 0)"), stopped
    access = [line for line in lines if line["logger"] == "llm_proxy.access" and "/chat/completions" in line["message"]]
    assert sorted(line["status"] for line in access) == [200] * 5  # each written by the worker that served it
    assert not [line for line in lines if line["level"] in ("error", "critical")], proxy.lines


def _health_generations(proxy: ProxyProcess, tries: int = 12) -> set[int]:
    """The generation ``/health/backends`` reports, over fresh connections (either worker answers)."""
    seen = set()
    for _ in range(tries):
        with urllib.request.urlopen(f"{proxy.url}/health/backends", timeout=5) as reply:
            seen.add(json.loads(reply.read())["generation"])
    return seen


def _route_names(proxy: ProxyProcess) -> str:
    _, body = post_json(f"{proxy.url}/v2/chat/completions",
                        {"model": "echo", "messages": [{"role": "user", "content": "!/route-list"}]})
    return json.loads(body)["choices"][0]["message"]["content"]


def test_sighup_reloads_the_config_in_every_worker_instead_of_restarting_them(tmp_path: Path) -> None:
    """``--workers 2``: SIGHUP to the parent reaches every worker's reloader (the same workers keep
    serving); an edit raises each worker's generation once; an invalid edit is rejected by each,
    which keeps serving its last good config."""
    config = _config(tmp_path)
    rules = tmp_path / "routes.d" / "10.yaml"
    rules.write_text("rules:\n  - name: alpha\n    route: echo\n", encoding="utf-8")
    with ProxyProcess(tmp_path, "--config", config, "--workers", "2") as proxy:
        proxy.wait_for_line("Application startup complete", 60, count=2)
        proxy.signal(signal.SIGHUP)  # nothing changed: each worker's reloader says so
        proxy.wait_for_line("reload (SIGHUP): no file changed since the last load; still serving generation 0",
                            count=2)
        rules.write_text("rules:\n  - name: bravo\n    route: echo\n", encoding="utf-8")
        proxy.signal(signal.SIGHUP)
        proxy.wait_for_line("reloaded (", count=2)
        time.sleep(3)  # the file watchers (1 s poll, 0.5 s debounce) have seen the edit too: no second load
        reloads = [line for line in proxy.lines if "reloaded (" in line]
        assert len(reloads) == 2 and all("generation 1:" in line for line in reloads), proxy.lines
        assert _health_generations(proxy) == {1}
        assert all("bravo" in _route_names(proxy) for _ in range(6))
        rules.write_text("rules:\n  - name: charlie\n    route: nowhere\n", encoding="utf-8")  # unknown backend
        proxy.signal(signal.SIGHUP)
        proxy.wait_for_line("rejected; still serving generation 1", count=2)
        assert _health_generations(proxy) == {1}
        assert all("bravo" in _route_names(proxy) and "charlie" not in _route_names(proxy) for _ in range(6))
        assert sum("Started server process" in line for line in proxy.lines) == 2  # no worker was replaced
        assert proxy.stop() == 0


def _catches_sigterm(pid: int) -> bool:
    """Whether the process has a handler for SIGTERM (``SigCgt`` in /proc: bit 15 - 1)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            caught = next(line for line in status if line.startswith("SigCgt:"))
    except (OSError, StopIteration):
        return False
    return bool(int(caught.split()[1], 16) & (1 << (signal.SIGTERM - 1)))


def _sigterm_after(tmp_path: Path, wait: float, *args: str) -> tuple[int, str]:
    """Start the proxy, SIGTERM it ``wait`` seconds after it can catch the signal; its exit status."""
    proc = subprocess.Popen([sys.executable, "-m", "router.cli", "--config", _config(tmp_path), "--port",
                             str(free_port()), *args], cwd=tmp_path, env=clean_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not _catches_sigterm(proc.pid):
            assert proc.poll() is None and time.monotonic() < deadline, "the proxy never took SIGTERM over"
            time.sleep(0.002)
        time.sleep(wait)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, err


def test_sigterm_while_starting_is_a_clean_exit(tmp_path: Path) -> None:
    """SIGTERM at every stage of start-up (imports, config, app, uvicorn starting, serving) ends the
    process with status 0, not 143. From the interpreter's first lines on: before them (a few
    hundredths of a second after exec) nothing in a process can catch a signal."""
    for wait in (0.0, 0.01, 0.05, 0.15, 0.3, 0.6, 1.0, 2.0):
        code, err = _sigterm_after(tmp_path, wait)
        assert code == 0, (wait, err)
        assert "Traceback" not in err, err
        if wait <= 0.05:  # the handler is in place before the second of imports and compiling
            assert "listening on" not in err and "exiting before serving" in err, err


def test_sigterm_while_the_workers_start_is_a_clean_exit(tmp_path: Path) -> None:
    """The same with ``--workers 2``: the parent, and workers stopped while they start, exit 0."""
    for wait in (0.0, 0.2, 0.8, 1.5, 3.0):
        code, err = _sigterm_after(tmp_path, wait, "--workers", "2")
        assert code == 0, (wait, err)
        assert "Traceback" not in err and "exited with status" not in err, err
