"""Versions of the proxy side by side, live: did the code get slower, or the machine?

python benchmarks/versions_bench.py REV [REV ...] [--rounds 6] [--duration 3] [--connections 32]
                                    [--python-client]

Each REV is a git revision of this repository (``HEAD``, ``1473e86``, ``main~5``) or ``.`` for the
checkout as it is, uncommitted changes included. Every revision's proxy runs as its own process
(its own code, its own shipped example rules, the same config as ``proxy_bench.py``'s full default
path), beside one bare Falcon+aiohttp pass-through and one fake upstream; the load (wrk when
installed, else the aiohttp client) visits them in alternating order, one ``--duration`` figure
each per round. Prints per target the median req/s, the median of its per-round ratios to the
pass-through (the figure ``proxy_bench.py`` reads against its 0.6 target) with each round's ratio,
the CPU each process spent per request, and per revision after the first its ratio to the first.

Why: a ratio to the pass-through read on another day is not comparable on this shared machine,
whose speed (and the pass-through's, the denominator) changes from one session to the next: the
code of 77f0b25 read 0.71-0.74 on 2026-11-30 and 0.53 on 2026-12-01. Only revisions measured in
one run tell whether a change of the figure is the code's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import proxy_bench as bench  # noqa: E402 - the benchmark's helpers: ports, processes, load, config

ROOT = HERE.parent
PASS = "pass-through"


@dataclass
class Target:
    name: str
    url: str
    headers: dict[str, str]
    pid: int
    rps: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)


def checkout(rev: str, into: Path) -> Path:
    """The files of ``rev`` under ``into`` (``.``: this checkout itself, as it is)."""
    if rev == ".":
        return ROOT
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev], capture_output=True)
    if archive.returncode != 0:
        raise SystemExit(f"{rev}: {archive.stderr.decode(errors='replace').strip()}")
    into.mkdir(parents=True)
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        if hasattr(tarfile, "data_filter"):  # Python 3.11.4+: refuse links and paths out of ``into``
            tar.extractall(into, filter="data")
        else:
            tar.extractall(into)
    return into


def label(rev: str) -> str:
    if rev == ".":
        return "this checkout"
    short = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", rev], capture_output=True, text=True)
    return f"{rev} ({short.stdout.strip()})" if short.stdout.strip() and short.stdout.strip() != rev else rev


def check_imports(code: Path, env: dict[str, str]) -> None:
    """Stop unless Python, started in ``code`` with ``env`` as the proxy will be, imports ``router``
    from ``code``: a checkout that won the import would be measured in every revision's place."""
    found = subprocess.run([sys.executable, "-c", "import router; print(router.__file__)"], cwd=code, env=env,
                           capture_output=True, text=True)
    where = Path(found.stdout.strip() or ".").resolve()
    if code.resolve() not in where.parents:
        raise SystemExit(f"the proxy of {code} would import router from {where}: {found.stderr.strip()[-300:]}")


def start_proxy(code: Path, work: Path, upstream: str, port: int) -> subprocess.Popen:
    """``code``'s proxy on ``port`` with proxy_bench's config and ``code``'s own example rules."""
    work.mkdir(parents=True)
    config = bench.write_proxy_config(work, upstream)
    examples = code / "routes.d" / "10-examples.yaml"
    if examples.exists():
        shutil.copy(examples, work / "routes.d" / "10-examples.yaml")
    # ``python -m`` puts its working directory first on sys.path, before PYTHONPATH and before this
    # checkout's editable install: run in ``code``, or every revision would import this checkout.
    env = dict(os.environ, PYTHONPATH=str(code))
    check_imports(code, env)
    return bench.start([sys.executable, "-m", "router.cli", "--config", str(config), "--port", str(port)], port,
                       env, cwd=code)


def answers(target: Target) -> None:
    """One request first: load generators count error replies as served, so a revision that cannot
    serve this config (or a proxy that refuses the key) must stop the run instead."""
    request = urllib.request.Request(target.url, data=bench.BODY.encode(), method="POST",
                                     headers={**target.headers, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            reply.read()
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"{target.name} answered {exc.code}: {exc.read()[:300]!r}") from None


def measure(targets: list[Target], rounds: int, duration: int, connections: int, python_client: bool) -> None:
    for target in targets:
        answers(target)
    for target in targets:  # warm up connections and code paths
        bench.load(target.url, connections, 1, target.headers, python_client)
    for index in range(rounds):
        for target in targets if index % 2 == 0 else reversed(targets):
            rps, cpu_us = bench.load_with_cpu(target.url, target.pid, connections, duration, target.headers,
                                              python_client)
            target.rps.append(rps)
            target.cpu_us.append(cpu_us)


def report(targets: list[Target], rounds: int, connections: int, client: str) -> None:
    passed = targets[0]
    print(f"{client}, C={connections}, {rounds} alternating rounds\n")
    print(f"{'target':<34} {'req/s':>7} {'CPU/request':>12} {'/ pass-through':>15}  rounds")
    for target in targets:
        ratios = [r / p for r, p in zip(target.rps, passed.rps)]
        print(f"{target.name:<34} {statistics.median(target.rps):7.0f} {statistics.median(target.cpu_us):9.0f} µs "
              f"{statistics.median(ratios):15.2f}  {', '.join(f'{r:.2f}' for r in ratios)}")
    first = targets[1]
    for target in targets[2:]:
        ratios = [r / f for r, f in zip(target.rps, first.rps)]
        print(f"{target.name} / {first.name}: {statistics.median(ratios):.2f} "
              f"({', '.join(f'{r:.2f}' for r in ratios)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("revisions", nargs="+", help="git revisions, or . for this checkout as it is")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--duration", type=int, default=3, help="seconds per figure")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--python-client", action="store_true", help="the aiohttp client even when wrk is installed")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="versions-bench-"))
    procs: list[subprocess.Popen] = []
    try:
        ports = [bench.free_port() for _ in range(2 + len(args.revisions))]
        upstream = f"http://127.0.0.1:{ports[0]}"
        procs.append(bench.start([sys.executable, str(HERE / "_upstream.py"), str(ports[0])], ports[0]))
        procs.append(bench.start([sys.executable, str(HERE / "_passthrough.py"), str(ports[1]), upstream, "aiohttp"],
                                 ports[1]))
        targets = [Target(PASS, f"http://127.0.0.1:{ports[1]}/v1/chat/completions", {}, procs[-1].pid)]
        auth = {"Authorization": f"Bearer {bench.KEY}"}
        for index, (rev, port) in enumerate(zip(args.revisions, ports[2:])):
            code = checkout(rev, scratch / f"code{index}")
            procs.append(start_proxy(code, scratch / f"work{index}", upstream, port))
            targets.append(Target(label(rev), f"http://127.0.0.1:{port}/v2/chat/completions", auth, procs[-1].pid))
        measure(targets, args.rounds, args.duration, args.connections, args.python_client)
        client = "wrk" if shutil.which("wrk") and not args.python_client else "python aiohttp client"
        report(targets, args.rounds, args.connections, client)
    finally:
        bench.stop(procs)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
