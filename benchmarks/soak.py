"""Soak: a steady mixed load against a proxy subprocess for a set time, sampling the proxy once a second.

python benchmarks/soak.py [--minutes 60] [--rate 30] [--out DIR]

Starts, each its own process on 127.0.0.1: the fake provider (``_soak_provider.py``: OpenAI,
Anthropic and Gemini on one port) and the proxy (``python -m router.cli``) with three backends on
it, the shipped guards, a failover rule, a cached rule and small session bounds (so eviction is
exercised within minutes, not days). Then:

1. idle: a few seconds of samples with no load (the idle file descriptors and tasks);
2. load: ``--rate`` requests a second for ``--minutes``, drawn from a fixed mix: every front end
   (OpenAI, Anthropic, Gemini; the Responses front end too when the proxy serves ``/v2/responses``),
   streaming and not, session commands, tool calls (native and written as text), loops, failover,
   streams the provider cuts, clients that hang up mid-stream, unique model names, and bad
   requests (broken JSON, missing fields, wrong keys, unknown paths);
3. settle: no load, samples until file descriptors and tasks are back at their idle values
   (or ``--settle`` seconds pass).

Each second it writes one CSV row (``soak.csv``): the phase, the proxy's RSS, open fds, asyncio
tasks and the size of every bounded structure it keeps (``GET /v2/admin/runtime`` with the admin
key), plus the client's counts. At the end it plots ``soak.png`` and checks:

- RSS grows by at most 5% from the 10th to the 60th minute of load (for other lengths the same
  fractions, 1/6 and the end, of the load after ``--warm-load`` seconds: a short run cannot give
  the structures ten minutes to fill, so it loads for a while before the window starts; each
  point the median of a window of samples);
- file descriptors and tasks return to their idle values once the load stops;
- no 5xx other than the ones the mix asks for, and no request the proxy failed to answer.

Exit status 0 when every check holds. Keep the rate modest on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

import aiohttp

from proxy_bench import wait_port  # this folder is the script's first sys.path entry

HERE = Path(__file__).resolve().parent
PY = sys.executable
CLIENT_KEY = "soak-client-key"
ADMIN_KEY = "soak-admin-key"
RSS_GROWTH_LIMIT = 0.05
TOOLS = [{"type": "function", "function": {"name": "read_file", "description": "read a file",
                                           "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}}]


def fd_targets(pid: int) -> Counter:
    """What the process's open descriptors point at (files by path, sockets and pipes by kind)."""
    found: Counter = Counter()
    folder = f"/proc/{pid}/fd"
    for name in os.listdir(folder) if os.path.isdir(folder) else ():
        try:
            target = os.readlink(f"{folder}/{name}")
        except OSError:
            continue
        found[target.split(":[")[0] if ":[" in target else target] += 1
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ROUTES = """\
rules:
  - name: guards
    post: tool_call_repair, loop_detection(min_repetitions=5), tool_call_loop_detection(max_repeats=4)
  - name: soak-failover
    when: model == "soak-fail"
    route: oai:fail-500 -> ant:fake-model
  - name: soak-cached
    when: model == "soak-cached"
    route: oai:fake-model
    post: cache(ttl=20s)
"""


def write_config(work: Path, provider: str) -> Path:
    (work / "routes.d").mkdir()
    (work / "routes.d" / "10-soak.yaml").write_text(ROUTES)
    config = {
        "backends": {
            "oai": {"type": "openai", "base_url": f"{provider}/v1", "api_key": "sk-fake-openai"},
            "ant": {"type": "anthropic", "base_url": provider, "api_key": "sk-ant-fake"},
            "gem": {"type": "gemini", "gemini_api_base_url": provider, "api_key": "fake-gemini-key"},
        },
        "default_backend": "oai",
        "auth": {"api_keys": [CLIENT_KEY], "admin_keys": [ADMIN_KEY]},
        "routes_dir": str(work / "routes.d"),
        # Small bounds, so the soak reaches them (and shows they hold) within minutes.
        "session": {"max_sessions": 300, "max_history": 20},
        "usage": {"path": str(work / "usage.db")},
    }
    path = work / "config.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


# ---- the mix -----------------------------------------------------------------------------------


@dataclass
class Tally:
    """What the clients saw, by kind of request and outcome."""

    outcomes: Counter = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    done: int = 0

    def note(self, kind: str, outcome: str, expected: bool) -> None:
        self.outcomes[(kind, outcome)] += 1
        self.done += 1
        if not expected and len(self.unexpected) < 50:
            self.unexpected.append(f"{kind}: {outcome}")


class Mix:
    """The requests of the soak, each a coroutine that reports its outcome to the tally."""

    def __init__(self, base: str, session: aiohttp.ClientSession, tally: Tally, responses: bool) -> None:
        self.base, self.http, self.tally = base, session, tally
        self.rng = random.Random(17)
        weighted: list[tuple[int, Callable[[], Awaitable[None]]]] = [
            (10, lambda: self.openai("oai:fake-model", stream=False)),
            (14, lambda: self.openai("oai:fake-model", stream=True)),
            (6, lambda: self.anthropic("ant:fake-model", stream=False)),
            (8, lambda: self.anthropic("oai:fake-model", stream=True)),
            (5, lambda: self.gemini("gem:fake-model", stream=False)),
            (6, lambda: self.gemini("gem:fake-model", stream=True)),
            (4, lambda: self.openai("gem:fake-model", stream=True)),
            (5, self.command),
            (4, lambda: self.openai("oai:soak-tool", stream=self.rng.random() < 0.5, tools=True)),
            (3, lambda: self.openai("ant:soak-textual", stream=True, tools=True)),
            (2, lambda: self.openai("oai:soak-loop", stream=True)),
            (4, lambda: self.openai("soak-fail", stream=self.rng.random() < 0.5)),
            (3, lambda: self.openai("soak-cached", stream=False)),
            (3, lambda: self.openai("oai:soak-cut", stream=True, cut=True)),
            (4, self.hang_up),
            (2, lambda: self.openai(f"oai:unique-{self.rng.randrange(10**9)}", stream=False)),
            (6, self.bad_request),
        ]
        if responses:
            weighted.append((6, lambda: self.responses("ant:fake-model", stream=self.rng.random() < 0.7)))
        self.choices = [fn for _, fn in weighted]
        self.weights = [w for w, _ in weighted]

    def pick(self) -> Callable[[], Awaitable[None]]:
        return self.rng.choices(self.choices, self.weights)[0]

    def _session(self) -> dict[str, str]:
        if self.rng.random() < 0.15:
            return {}  # anonymous
        return {"x-session-id": f"soak-{self.rng.randrange(2000)}"}

    def _text(self) -> str:
        return f"Say something about number {self.rng.randrange(1000)}."

    async def _send(self, kind: str, path: str, body: Any, headers: dict[str, str], *, stream: bool,
                    expect: tuple[int, ...] = (200,), cut: bool = False) -> None:
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        try:
            async with self.http.post(self.base + path, data=data,
                                      headers={"Content-Type": "application/json", **headers}) as r:
                raw = await r.read()
                outcome = str(r.status)
                ok = r.status in expect
                if ok and stream and r.status == 200 and not cut:
                    ok = _stream_ended(raw)
                    outcome += "" if ok else " unfinished stream"
                self.tally.note(kind, outcome, ok)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            self.tally.note(kind, type(exc).__name__, cut)

    async def openai(self, model: str, *, stream: bool, tools: bool = False, cut: bool = False) -> None:
        body: dict[str, Any] = {"model": model, "stream": stream, "messages": [{"role": "user", "content": self._text()}]}
        if tools:
            body["tools"] = TOOLS
        name = "unique model" if model.startswith("oai:unique-") else model.split(":")[-1]
        await self._send(f"openai{' stream' if stream else ''} {name}", "/v2/chat/completions",
                         body, {"Authorization": f"Bearer {CLIENT_KEY}", **self._session()}, stream=stream, cut=cut)

    async def anthropic(self, model: str, *, stream: bool) -> None:
        body = {"model": model, "max_tokens": 64, "stream": stream, "messages": [{"role": "user", "content": self._text()}]}
        await self._send(f"anthropic{' stream' if stream else ''}", "/v2/messages", body,
                         {"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01", **self._session()}, stream=stream)

    async def gemini(self, model: str, *, stream: bool) -> None:
        action = "streamGenerateContent?alt=sse" if stream else "generateContent"
        body = {"contents": [{"role": "user", "parts": [{"text": self._text()}]}]}
        await self._send(f"gemini{' stream' if stream else ''}", f"/v1beta/models/{model}:{action}", body,
                         {"x-goog-api-key": CLIENT_KEY, **self._session()}, stream=stream)

    async def responses(self, model: str, *, stream: bool) -> None:
        body = {"model": model, "stream": stream, "input": self._text()}
        await self._send(f"responses{' stream' if stream else ''}", "/v2/responses", body,
                         {"Authorization": f"Bearer {CLIENT_KEY}", **self._session()}, stream=stream)

    async def command(self) -> None:
        text = self.rng.choice(["!/help", f"!/set(project=soak-{self.rng.randrange(50)})", "!/hello",
                                "!/unset(project)", "!/route-list", "!/no-such-command"])
        session = {"x-session-id": f"soak-{self.rng.randrange(2000)}"}
        body = {"model": "oai:fake-model", "messages": [{"role": "user", "content": text}]}
        await self._send("command", "/v2/chat/completions", body, {"Authorization": f"Bearer {CLIENT_KEY}", **session},
                         stream=False)

    async def hang_up(self) -> None:
        """A streaming client that reads a few lines and goes away (connection closed)."""
        body = {"model": "ant:soak-slow", "stream": True, "messages": [{"role": "user", "content": self._text()}]}
        try:
            async with self.http.post(self.base + "/v2/chat/completions", data=json.dumps(body),
                                      headers={"Content-Type": "application/json",
                                               "Authorization": f"Bearer {CLIENT_KEY}", **self._session()}) as r:
                for _ in range(self.rng.randrange(1, 6)):
                    await r.content.readline()
                r.close()  # drops the connection mid-stream
            self.tally.note("hang-up", str(r.status), r.status == 200)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            self.tally.note("hang-up", type(exc).__name__, False)

    async def bad_request(self) -> None:
        choice = self.rng.randrange(5)
        auth = {"Authorization": f"Bearer {CLIENT_KEY}"}
        if choice == 0:
            await self._send("bad json", "/v2/chat/completions", b'{"model": "x", "messages": [', auth,
                             stream=False, expect=(400,))
        elif choice == 1:
            await self._send("bad: no messages", "/v2/messages", {"model": "ant:fake-model", "max_tokens": 5},
                             {"x-api-key": CLIENT_KEY}, stream=False, expect=(400,))
        elif choice == 2:
            await self._send("bad key", "/v2/chat/completions", {"model": "oai:fake-model", "messages": []},
                             {"Authorization": "Bearer wrong-key"}, stream=False, expect=(401,))
        elif choice == 3:
            await self._send("bad path", "/v2/no/such/path", {"x": 1}, auth, stream=False, expect=(404, 405))
        else:
            await self._send("bad: model too long", "/v2/chat/completions",
                             {"model": "m" * 5000, "messages": [{"role": "user", "content": "hi"}]}, auth,
                             stream=False, expect=(400,))


def _stream_ended(raw: bytes) -> bool:
    """Whether a stream ended the way its format ends (or with an error event in its shape)."""
    tail = raw[-600:]
    return (b"[DONE]" in tail or b"message_stop" in tail or b"finishReason" in tail or b"response.completed" in tail
            or b"error" in tail)


# ---- sampling ----------------------------------------------------------------------------------


STRUCT_FIELDS: list[str] = []


async def sample(http: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    async with http.get(base + "/v2/admin/runtime", headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as r:
        r.raise_for_status()
        return await r.json()


async def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    env = dict(os.environ, PYTHONPATH=str(HERE.parent))
    provider = subprocess.Popen([PY, str(HERE / "_soak_provider.py")], stdout=subprocess.PIPE, text=True, env=env)
    proxy = None
    try:
        port_line = provider.stdout.readline() if provider.stdout else ""
        provider_url = f"http://127.0.0.1:{int(port_line)}"
        config = write_config(work, provider_url)
        port = free_port()
        with open(out / "proxy.log", "w") as log:
            proxy = subprocess.Popen([PY, "-m", "router.cli", "--config", str(config), "--port", str(port)],
                                     stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work)
        wait_port(port, timeout=30.0)
        base = f"http://127.0.0.1:{port}"
        return await drive(args, base, out, proxy.pid)
    finally:
        for proc in (proxy, provider):
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
        for proc in (proxy, provider):
            if proc is not None:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        shutil.rmtree(work, ignore_errors=True)


async def drive(args: argparse.Namespace, base: str, out: Path, pid: int) -> int:
    tally = Tally()
    rows: list[dict[str, Any]] = []
    load_seconds = args.minutes * 60
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as admin, \
            aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as http:
        probe = await http.post(base + "/v2/responses", data="{}", headers={"Authorization": f"Bearer {CLIENT_KEY}"})
        responses = probe.status != 404
        probe.release()
        mix = Mix(base, http, tally, responses)
        t0 = time.monotonic()
        phase = ["idle"]
        inflight: set[asyncio.Task] = set()

        async def sampler() -> None:
            last_done = 0
            while True:
                got = await sample(admin, base)
                structures = got.pop("structures")
                if not STRUCT_FIELDS:
                    STRUCT_FIELDS.extend(structures)
                row = {"t": round(time.monotonic() - t0, 1), "phase": phase[0],
                       "rss_mb": round(got["rss_bytes"] / 2**20, 2),
                       "rss_anon_mb": round((got.get("rss_anon_bytes") or 0) / 2**20, 2), "fds": got["open_fds"],
                       "tasks": got["asyncio_tasks"], "inflight": len(inflight), "done_per_s": tally.done - last_done,
                       **structures}
                last_done = tally.done
                rows.append(row)
                if args.verbose and len(rows) % 30 == 0:
                    print(json.dumps(row), flush=True)
                await asyncio.sleep(max(0.0, len(rows) - (time.monotonic() - t0)))

        # Warm-up: one request of each kind (first use opens what stays open: the usage store's
        # WAL, lazily built codecs), then idle samples once the upstream connections have closed.
        await asyncio.gather(*(make() for make in mix.choices))
        tally.outcomes.clear()
        tally.done = 0
        tally.unexpected.clear()
        await asyncio.sleep(args.warmup)
        sampling = asyncio.create_task(sampler())
        await asyncio.sleep(args.idle)
        idle_targets = fd_targets(pid)
        phase[0] = "load"
        print(f"load: {args.rate} req/s for {args.minutes} min (responses front end: {'yes' if responses else 'no'})",
              flush=True)
        start = time.monotonic()
        sent = skipped = 0
        while (now := time.monotonic()) - start < load_seconds:
            due = int((now - start) * args.rate) + 1
            while sent < due:
                sent += 1
                if len(inflight) >= args.max_inflight:
                    skipped += 1
                    continue
                task = asyncio.create_task(mix.pick()())
                inflight.add(task)
                task.add_done_callback(inflight.discard)
            await asyncio.sleep(max(0.0, (sent / args.rate) - (time.monotonic() - start)))
        phase[0] = "drain"
        if inflight:
            await asyncio.wait(inflight, timeout=35)
        await http.close()  # the client's pooled connections go, as a real client's would
        phase[0] = "settle"
        settle_start = time.monotonic()
        idle = [r for r in rows if r["phase"] == "idle"]
        idle_fds, idle_tasks = min(r["fds"] for r in idle), min(r["tasks"] for r in idle)
        extra: dict[str, int] = {}
        while time.monotonic() - settle_start < args.settle:
            await asyncio.sleep(1)
            extra = fds_beyond_idle(idle_targets, fd_targets(pid))
            if not extra and _settled(rows, idle_tasks):
                break
        await asyncio.sleep(1.2)
        sampling.cancel()
        if extra:
            print(f"descriptors open after the load and not at idle: {extra}")
    return report(args, rows, tally, out, sent, skipped, idle_fds, idle_tasks, extra)


def fds_beyond_idle(idle: Counter, now: Counter) -> dict[str, int]:
    """Descriptors open now and not at idle, by what they point at. One more descriptor on the usage
    database is not a leak: SQLite cannot close a connection's descriptor while another connection
    of the process holds a lock on the file, and keeps it for the next open (the store's periodic
    checkpoint connection leaves one such descriptor after its first run, and reuses it after)."""
    extra = {k: now[k] - idle.get(k, 0) for k in now if now[k] > idle.get(k, 0)}
    for name in [k for k in extra if k.endswith("usage.db") and extra[k] == 1]:
        del extra[name]
    return extra


def _settled(rows: list[dict[str, Any]], idle_tasks: int) -> bool:
    tail = rows[-3:]
    return all(r["phase"] == "settle" for r in tail) and min(r["tasks"] for r in tail) <= idle_tasks


def report(args: argparse.Namespace, rows: list[dict[str, Any]], tally: Tally, out: Path, sent: int, skipped: int,
           idle_fds: int, idle_tasks: int, extra_fds: dict[str, int]) -> int:
    fields = list(rows[0])
    with open(out / "soak.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    load = [r for r in rows if r["phase"] == "load"]
    settle = [r for r in rows if r["phase"] == "settle"]
    # RSS at 1/6 of the load (minute 10 of 60) and at its end, each the median of a window
    # (a minute of samples in a long run, a few seconds in a short one).
    warm = int(args.warm_load)
    window = max(3, (len(load) - warm) // 60)
    at = warm + (len(load) - warm) // 6
    early = statistics.median(r["rss_mb"] for r in load[max(0, at - window // 2): at + window // 2 + 1])
    late = statistics.median(r["rss_mb"] for r in load[-window:])
    growth = (late - early) / early
    # The same for the anonymous part (heap, stacks), reported beside it (the target is RSS's): RSS
    # also counts file pages the kernel may drop or bring back whenever it likes, which can hide a
    # leak or fake one. (A one-minute run's heap is still filling its bounded structures.)
    anon_early = statistics.median(r["rss_anon_mb"] for r in load[max(0, at - window // 2): at + window // 2 + 1])
    anon_late = statistics.median(r["rss_anon_mb"] for r in load[-window:])
    anon_growth = (anon_late - anon_early) / anon_early if anon_early else 0.0
    # Back at idle: the last three samples' least (a WAL checkpoint opens a connection for a
    # moment every few seconds; a leak stays).
    tail = (settle or rows)[-3:]
    end = {"fds": min(r["fds"] for r in tail), "tasks": min(r["tasks"] for r in tail)}
    failures = []
    if growth > RSS_GROWTH_LIMIT:
        failures.append(f"RSS grew {growth:+.1%} from {early:.1f} to {late:.1f} MB (limit {RSS_GROWTH_LIMIT:.0%})")
    if extra_fds:
        failures.append(f"open fds {end['fds']} after the load, {idle_fds} idle; not at idle: {extra_fds}")
    if end["tasks"] > idle_tasks:
        failures.append(f"asyncio tasks {end['tasks']} after the load, {idle_tasks} idle")
    if tally.unexpected:
        failures.append(f"{len(tally.unexpected)}+ unexpected outcomes, e.g. {tally.unexpected[:5]}")
    if skipped > sent * 0.01:
        failures.append(f"{skipped} of {sent} requests skipped: the proxy fell behind the rate")
    peaks = {name: max(r[name] for r in rows) for name in STRUCT_FIELDS}
    summary = {
        "minutes": args.minutes, "rate": args.rate, "sent": sent, "skipped": skipped, "answered": tally.done,
        "rss_mb": {"idle": rows[0]["rss_mb"], "at_1_6": early, "end_of_load": late, "growth": round(growth, 4),
                   "max": max(r["rss_mb"] for r in rows)},
        "rss_anon_mb": {"idle": rows[0]["rss_anon_mb"], "at_1_6": anon_early, "end_of_load": anon_late,
                        "growth": round(anon_growth, 4), "max": max(r["rss_anon_mb"] for r in rows)},
        "fds": {"idle": idle_fds, "load_max": max(r["fds"] for r in load), "after": end["fds"]},
        "tasks": {"idle": idle_tasks, "load_max": max(r["tasks"] for r in load), "after": end["tasks"]},
        "structures_max": peaks, "structures_end_of_load": {n: load[-1][n] for n in STRUCT_FIELDS},
        "outcomes": {f"{k} -> {o}": n for (k, o), n in sorted(tally.outcomes.items())},
        "failures": failures,
    }
    (out / "soak.json").write_text(json.dumps(summary, indent=2))
    plot(rows, out / "soak.png", early, late, len(rows) - len(load) - len(settle))
    print(json.dumps({k: v for k, v in summary.items() if k != "outcomes"}, indent=2))
    print("PASS" if not failures else "FAIL:\n  " + "\n  ".join(failures))
    return 0 if not failures else 1


def plot(rows: list[dict[str, Any]], path: Path, early: float, late: float, _: int) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: no plot; pip install -e '.[bench]')")
        return
    minutes = [r["t"] / 60 for r in rows]
    fig, axes = plt.subplots(4, 1, figsize=(11, 12), sharex=True)
    axes[0].plot(minutes, [r["rss_mb"] for r in rows], color="tab:red", label="RSS")
    axes[0].plot(minutes, [r["rss_anon_mb"] for r in rows], color="tab:purple", label="anonymous RSS (heap)")
    axes[0].legend(loc="lower right")
    axes[0].set_ylabel("RSS (MB)")
    axes[0].set_title(f"proxy under soak: RSS {early:.1f} → {late:.1f} MB from 1/6 of the load to its end")
    axes[1].plot(minutes, [r["fds"] for r in rows], label="open fds")
    axes[1].plot(minutes, [r["tasks"] for r in rows], label="asyncio tasks")
    axes[1].plot(minutes, [r["inflight"] for r in rows], label="client requests in flight", alpha=0.6)
    axes[1].legend(loc="upper right")
    for name in STRUCT_FIELDS:
        values = [r[name] for r in rows]
        if max(values) > 0:
            axes[2].plot(minutes, values, label=name)
    axes[2].set_yscale("symlog")
    axes[2].set_ylabel("entries")
    axes[2].legend(loc="upper left", fontsize=7, ncol=3)
    axes[3].plot(minutes, [r["done_per_s"] for r in rows], color="tab:green")
    axes[3].set_ylabel("answered / s")
    axes[3].set_xlabel("minutes")
    for ax in axes:
        for r0, r1 in zip(rows, rows[1:]):
            if r0["phase"] != r1["phase"]:
                ax.axvline(r1["t"] / 60, color="grey", linestyle=":")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=60, help="how long the load runs")
    parser.add_argument("--rate", type=float, default=30, help="requests per second")
    parser.add_argument("--warmup", type=float, default=5,
                        help="seconds to wait after the warm-up requests (the provider closes idle connections after 3)")
    parser.add_argument("--idle", type=float, default=4, help="seconds of idle samples before the load")
    parser.add_argument("--settle", type=float, default=60,
                        help="at most this many seconds for fds and tasks to return to idle after the load")
    parser.add_argument("--warm-load", type=float, default=0,
                        help="seconds of load before the RSS window starts (for short runs)")
    parser.add_argument("--max-inflight", type=int, default=300)
    parser.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "soak"))
    parser.add_argument("--verbose", action="store_true", help="print a sample every 30 s")
    args = parser.parse_args(argv)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
