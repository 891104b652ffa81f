"""Whole-path load benchmark: client → proxy → local fake upstream, next to the baselines, one run.

python benchmarks/proxy_bench.py [--duration 8] [--streams 1000] [--pairs 6]

Starts, each in its own process on 127.0.0.1: the fake OpenAI upstream, a bare Falcon+aiohttp
pass-through, a bare Falcon+httpx pass-through (the outbound-client comparison), and the proxy on
its full default path (auth, session, rules, OpenAI→OpenAI translation, access log at info), both on
``/v2/chat/completions`` and on ``/v2/responses`` (Responses→OpenAI chat translation, the reply kept
for ``previous_response_id``), each as a ratio to the same pass-through.
Load comes from wrk when installed (apt install wrk), else from an aiohttp client in this process.
Prints requests/s at 32 connections, p50 latency at 1 connection, and ratios; the cost of usage
recording + metrics, from one more proxy process switched on and off in alternating pairs
(``_proxy_variant.py switchable``); then 1,000 concurrent slow streams through the proxy (all must
complete) with the proxy's CPU per chunk.
The machine is shared and noisy: read the ratios, measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PY = sys.executable
BODY = json.dumps({"model": "bench", "messages": [{"role": "user", "content": "Say hello in one short sentence."}]})
RESPONSES_BODY = json.dumps({"model": "bench", "input": [{"role": "user", "content": "Say hello in one short sentence."}]})
KEY = "bench-client-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"port {port} did not open")


def start(args: list[str], port: int, env: dict[str, str] | None = None) -> subprocess.Popen:
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    wait_port(port)
    return proc


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---- load generators ---------------------------------------------------------------------------


def _body_for(url: str) -> str:
    return RESPONSES_BODY if url.endswith("/responses") else BODY


def wrk(url: str, connections: int, duration: int, headers: dict[str, str]) -> tuple[float, float]:
    """(requests/s, p50 ms) from wrk with a POST body."""
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    hdrs = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items())
    script.write(f'wrk.method = "POST"\nwrk.body = {json.dumps(_body_for(url))}\nwrk.headers["Content-Type"] = "application/json"\n{hdrs}')
    script.close()
    out = subprocess.run(["wrk", "-t", "1" if connections < 4 else "2", "-c", str(connections), "-d", f"{duration}s",
                          "--latency", "-s", script.name, url], capture_output=True, text=True).stdout
    os.unlink(script.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    value, unit = float(p50.group(1)), p50.group(2)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        print(f"  !! {errors.group(1)} non-2xx responses from {url}")
    return rps, value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


async def _py_load(url: str, connections: int, duration: int, headers: dict[str, str]) -> tuple[float, float]:
    import aiohttp

    latencies: list[float] = []
    stop = time.perf_counter() + duration
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async def worker() -> None:
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                async with session.post(url, data=_body_for(url), headers={**headers, "Content-Type": "application/json"}) as r:
                    await r.read()
                latencies.append((time.perf_counter() - t0) * 1000)
        await asyncio.gather(*(worker() for _ in range(connections)))
    return len(latencies) / duration, statistics.median(latencies)


def load(url: str, connections: int, duration: int, headers: dict[str, str] | None = None) -> tuple[float, float]:
    headers = headers or {}
    if shutil.which("wrk"):
        return wrk(url, connections, duration, headers)
    return asyncio.run(_py_load(url, connections, duration, headers))


# ---- streams -----------------------------------------------------------------------------------


async def slow_streams(url: str, count: int) -> tuple[int, int, float]:
    """``count`` concurrent streams of 20 chunks 100 ms apart: (completed, chunks, wall seconds)."""
    import aiohttp

    body = json.dumps({"model": "stream-slow", "stream": True, "messages": [{"role": "user", "content": "go"}]})
    done = chunks = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=aiohttp.ClientTimeout(total=120)) as session:
        async def one() -> None:
            nonlocal done, chunks
            async with session.post(url, data=body, headers={"Authorization": f"Bearer {KEY}",
                                                              "Content-Type": "application/json"}) as r:
                seen = 0
                async for line in r.content:
                    if line.startswith(b"data: {"):
                        seen += 1
                    if line.startswith(b"data: [DONE]"):
                        done += 1
                chunks += seen
        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
        return done, chunks, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--pairs", type=int, default=6,
                        help="alternating pairs for the proxy/pass-through ratio and for the recording cost")
    args = parser.parse_args()
    ports = {name: free_port() for name in ("upstream", "pass_aiohttp", "pass_httpx", "proxy", "proxy_switch")}
    upstream = f"http://127.0.0.1:{ports['upstream']}"
    work = Path(tempfile.mkdtemp())
    (work / "routes.d").mkdir()
    (work / "config.yaml").write_text(
        f"backends:\n  up:\n    type: openai-compatible\n    base_url: {upstream}/v1\n    api_key: upstream-key\n"
        f"default_backend: up\nauth:\n  api_keys: [{KEY}]\n")
    shutil.copy(HERE.parent / "routes.d" / "10-examples.yaml", work / "routes.d")
    env = dict(os.environ, PYTHONPATH=str(HERE.parent))
    procs = []
    try:
        procs.append(start([PY, str(HERE / "_upstream.py"), str(ports["upstream"])], ports["upstream"]))
        procs.append(start([PY, str(HERE / "_passthrough.py"), str(ports["pass_aiohttp"]), upstream, "aiohttp"], ports["pass_aiohttp"]))
        procs.append(start([PY, str(HERE / "_passthrough.py"), str(ports["pass_httpx"]), upstream, "httpx"], ports["pass_httpx"]))
        proxy = start([PY, "-m", "router.cli", "--config", str(work / "config.yaml"), "--port", str(ports["proxy"])],
                      ports["proxy"], env)
        procs.append(proxy)
        switchable = start([PY, str(HERE / "_proxy_variant.py"), "switchable", "--config", str(work / "config.yaml"),
                            "--port", str(ports["proxy_switch"])], ports["proxy_switch"], env)
        procs.append(switchable)
        auth = {"Authorization": f"Bearer {KEY}"}
        targets = {
            "direct to upstream": (f"{upstream}/v1/chat/completions", {}),
            "falcon+httpx pass-through": (f"http://127.0.0.1:{ports['pass_httpx']}/v1/chat/completions", {}),
            "falcon+aiohttp pass-through": (f"http://127.0.0.1:{ports['pass_aiohttp']}/v1/chat/completions", {}),
            "proxy (full default path)": (f"http://127.0.0.1:{ports['proxy']}/v2/chat/completions", auth),
            "proxy /v2/responses": (f"http://127.0.0.1:{ports['proxy']}/v2/responses", auth),
        }
        switch_url = f"http://127.0.0.1:{ports['proxy_switch']}/v2/chat/completions"
        load(switch_url, 4, 1, auth)
        for url, headers in targets.values():  # warm up connections and code paths
            load(url, 4, 1, headers)
        print(f"load generator: {'wrk' if shutil.which('wrk') else 'python aiohttp'}; {args.duration}s per figure\n")
        print(f"{'target':<30} {'req/s @32':>10} {'p50 ms @1':>10}")
        results = {}
        for name, (url, headers) in targets.items():
            rps, _ = load(url, 32, args.duration, headers)
            _, p50 = load(url, 1, max(3, args.duration // 2), headers)
            results[name] = (rps, p50)
            print(f"{name:<30} {rps:>10.0f} {p50:>10.3f}")
        base = results["falcon+aiohttp pass-through"]
        proxy_r = results["proxy (full default path)"]
        direct = results["direct to upstream"]
        print()
        print(f"proxy / falcon+aiohttp pass-through, req/s @32: {proxy_r[0] / base[0]:.2f} in the table above")
        # One pair of 8 s figures moves by +-10% on this shared machine: the headline ratio is the
        # median over several pairs, alternating which of the two goes first.
        ratios, responses_ratios = [], []
        pass_url, pass_headers = targets["falcon+aiohttp pass-through"]
        proxy_url, proxy_headers = targets["proxy (full default path)"]
        responses_url, _ = targets["proxy /v2/responses"]
        for i in range(args.pairs):
            order = [(proxy_url, proxy_headers), (responses_url, proxy_headers), (pass_url, pass_headers)]
            if i % 2:
                order.reverse()
            got = {url: load(url, 32, max(3, args.duration // 2), headers)[0] for url, headers in order}
            ratios.append(got[proxy_url] / got[pass_url])
            responses_ratios.append(got[responses_url] / got[pass_url])
        print(f"proxy / falcon+aiohttp pass-through, req/s @32: {statistics.median(ratios):.2f} median of {len(ratios)} "
              f"alternating rounds ({', '.join(f'{r:.2f}' for r in ratios)})   (target >= 0.60)")
        print(f"proxy /v2/responses / pass-through, req/s @32:  {statistics.median(responses_ratios):.2f} median of "
              f"{len(responses_ratios)} in the same rounds ({', '.join(f'{r:.2f}' for r in responses_ratios)})")
        print(f"falcon+aiohttp / falcon+httpx pass-through:    {base[0] / results['falcon+httpx pass-through'][0]:.2f}x")
        # The cost of recording is a small difference between two noisy figures. It is measured on
        # one proxy process switched on and off (SIGUSR1/SIGUSR2), alternating which goes first:
        # two separate processes differed by several percent with identical code.
        costs, on_rps, off_rps = [], [], []
        for i in range(args.pairs):
            order = (True, False) if i % 2 == 0 else (False, True)
            got = {}
            for recording_on in order:
                switchable.send_signal(signal.SIGUSR1 if recording_on else signal.SIGUSR2)
                time.sleep(0.2)
                got[recording_on] = load(switch_url, 32, max(3, args.duration // 2), auth)[0]
            on_rps.append(got[True])
            off_rps.append(got[False])
            costs.append((got[False] - got[True]) / got[False] * 100)
        switchable.send_signal(signal.SIGUSR1)
        print(f"usage recording + metrics cost, req/s @32:      {statistics.median(costs):+.1f}% median of "
              f"{len(costs)} on/off pairs of one process ({', '.join(f'{c:+.1f}' for c in costs)}; "
              f"on {statistics.median(on_rps):.0f}, off {statistics.median(off_rps):.0f} req/s)   (target <= 5%)")
        print(f"added p50 latency @1, proxy vs direct:          {proxy_r[1] - direct[1]:.3f} ms   (target <= 0.6 ms)")
        print(f"added p50 latency @1, pass-through vs direct:   {base[1] - direct[1]:.3f} ms")
        cpu0 = cpu_seconds(proxy.pid)
        done, chunks, wall = asyncio.run(slow_streams(f"http://127.0.0.1:{ports['proxy']}/v2/chat/completions", args.streams))
        cpu = cpu_seconds(proxy.pid) - cpu0
        print(f"\n{args.streams} concurrent slow streams (20 chunks, 100 ms apart) through the proxy:")
        print(f"  completed {done}/{args.streams}, {chunks} chunks in {wall:.1f}s (ideal ~2.0s); "
              f"proxy CPU {cpu:.2f}s = {cpu / max(chunks, 1) * 1e6:.0f} µs per chunk (incl. request set-up)")
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
