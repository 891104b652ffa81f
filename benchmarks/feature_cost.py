"""What each part of the default path costs a plain JSON request, live: the basis for deciding
which of them a plain request should pay for.

python benchmarks/feature_cost.py [--duration 3] [--pairs 6] [--parts usage,access_log,...] [--instructions]

Starts on 127.0.0.1 the fake OpenAI upstream, the bare Falcon+aiohttp pass-through and one proxy on
the full default path of proxy_bench.py (``_proxy_variant.py parts``: every part on, any set of them
switched off by a signal). For each part alone, then for all of them together, it runs
``--pairs`` alternating rounds of (all on, the part off) with wrk at 32 connections (the Python
client when wrk is missing), the pass-through in every round, and prints per part: the proxy's
throughput with the part off over all on (what the part costs), and both over the pass-through
(proxy_bench.py's non-streaming ratio, whose target is 0.6). One process switched on and off,
not two processes: two processes with the same code differed by several percent here.
``--parts request_path`` (not in the default set) cuts out the whole request path instead: the
proxy process then does only the pass-through's work, which shows what its server, middleware and
connection protocol cost on their own.

``--instructions`` counts instead of timing (``inprocess_bench.py``'s callgrind counts, in process,
no sockets): the instructions per request of the proxy with each part off (replaced by what the
live switch puts in its place), and with all of them off, against the proxy as it is. The same from run to run, so
it tells what each part costs where live rounds on this shared machine differ by 20%; but it
counts instructions, not time: work done in batches (the usage rows, the access lines) costs less
time per instruction live than the per-request path, so a part's share of the count is an upper
bound of its share of the live figure.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _proxy_variant import DIAGNOSTIC_PARTS, PARTS  # noqa: E402
from proxy_bench import KEY, PY, free_port, load, start, stop, write_proxy_config  # noqa: E402
from inprocess_bench import instructions_per_request  # noqa: E402


def measure(proxy, parts_file: Path, parts: list[str], url: str, pass_url: str,  # type: ignore[no-untyped-def]
            args: argparse.Namespace) -> tuple[list[float], list[float], list[float]]:
    """Per round: (off / on, on / pass-through, off / pass-through) with ``parts`` switched off."""
    parts_file.write_text(",".join(parts))
    auth = {"Authorization": f"Bearer {KEY}"}
    costs, on_ratios, off_ratios = [], [], []
    for i in range(args.pairs):
        got: dict[str, float] = {}
        order = ["on", "off", "pass"] if i % 2 == 0 else ["pass", "off", "on"]
        for which in order:
            if which == "pass":
                got[which] = load(pass_url, 32, args.duration)[0]
                continue
            proxy.send_signal(signal.SIGUSR1 if which == "on" else signal.SIGUSR2)
            time.sleep(0.2)
            got[which] = load(url, 32, args.duration, auth)[0]
        costs.append(got["off"] / got["on"])
        on_ratios.append(got["on"] / got["pass"])
        off_ratios.append(got["off"] / got["pass"])
    proxy.send_signal(signal.SIGUSR1)
    return costs, on_ratios, off_ratios


def part_instructions(parts: list[str], runs: tuple[int, int] | None = None) -> list[tuple[str, float]]:
    """(label, instructions per request): the bare Falcon app, the proxy as it is, then with each
    part off and, for several, all of them off."""
    rows = [("bare Falcon app", instructions_per_request("bare", runs=runs)),
            ("proxy, all on", instructions_per_request("proxy", runs=runs))]
    for label, off in [*((p, [p]) for p in parts), *([("all of them", parts)] if len(parts) > 1 else [])]:
        rows.append((label, instructions_per_request("proxy", ("--parts-off", ",".join(off)), runs=runs)))
    return rows


def print_instructions(rows: list[tuple[str, float]]) -> None:
    bare, on = rows[0][1], rows[1][1]
    print("instructions per request, in process (callgrind: 1,500 requests - 500, over 1,000)\n")
    print(f"{'':<34} {'instructions':>12} {'saved':>9} {'of the proxy':>13} {'of its own':>11}")
    for label, count in rows[:2]:
        print(f"{label:<34} {count:>12,.0f}")
    for label, count in rows[2:]:
        saved = on - count
        print(f"{label + ' off':<34} {count:>12,.0f} {saved:>9,.0f} {saved / on:>12.1%} {saved / (on - bare):>11.1%}")
    print("\n('of its own': of the proxy's instructions beyond the bare app's)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=3, help="seconds per figure")
    parser.add_argument("--pairs", type=int, default=6, help="alternating rounds per part")
    known = {**PARTS, **DIAGNOSTIC_PARTS}
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of: {', '.join(known)}")
    parser.add_argument("--instructions", action="store_true",
                        help="count instructions per request in process instead (see above; needs valgrind)")
    args = parser.parse_args()
    parts = [p for p in args.parts.split(",") if p]
    unknown = [p for p in parts if p not in known]
    if unknown:
        raise SystemExit(f"unknown parts {unknown}; known: {', '.join(known)}")
    if args.instructions:
        if any(p in DIAGNOSTIC_PARTS for p in parts):
            raise SystemExit(f"--instructions counts the parts of {', '.join(PARTS)}: the request path is only "
                             "measured live (in process there is no upstream to forward to)")
        print_instructions(part_instructions(parts))
        return
    ports = {name: free_port() for name in ("upstream", "pass", "proxy")}
    upstream = f"http://127.0.0.1:{ports['upstream']}"
    work = Path(tempfile.mkdtemp())
    config = write_proxy_config(work, upstream)
    parts_file = work / "parts-off"
    parts_file.write_text("")
    env = dict(os.environ, PYTHONPATH=str(HERE.parent),
               LIP_BENCH_REQUEST_PATH="1" if any(p in DIAGNOSTIC_PARTS for p in parts) else "0")
    procs = []
    try:
        procs.append(start([PY, str(HERE / "_upstream.py"), str(ports["upstream"])], ports["upstream"]))
        procs.append(start([PY, str(HERE / "_passthrough.py"), str(ports["pass"]), upstream, "aiohttp"], ports["pass"]))
        proxy = start([PY, str(HERE / "_proxy_variant.py"), "parts", str(parts_file), "--config", str(config),
                       "--port", str(ports["proxy"])], ports["proxy"], env)
        procs.append(proxy)
        url = f"http://127.0.0.1:{ports['proxy']}/v2/chat/completions"
        pass_url = f"http://127.0.0.1:{ports['pass']}/v1/chat/completions"
        load(url, 4, 1, {"Authorization": f"Bearer {KEY}"})  # warm up connections and code paths
        load(pass_url, 4, 1)
        print(f"load generator: {'wrk' if shutil.which('wrk') else 'python aiohttp'}; {args.duration}s per figure, "
              f"{args.pairs} alternating rounds per line; medians\n")
        print(f"{'switched off':<34} {'off / on':>9} {'on / pass':>10} {'off / pass':>11}   rounds (off / on)")
        for label, off in [*((p, [p]) for p in parts), *([("all of them", parts)] if len(parts) > 1 else [])]:
            costs, on_ratios, off_ratios = measure(proxy, parts_file, off, url, pass_url, args)
            print(f"{label:<34} {statistics.median(costs):>9.3f} {statistics.median(on_ratios):>10.2f} "
                  f"{statistics.median(off_ratios):>11.2f}   {', '.join(f'{c:.3f}' for c in costs)}")
        print("\nparts:")
        for part in parts:
            print(f"  {part}: {known[part]}")
    finally:
        stop(procs)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
