"""Where a stream's time to first byte goes, live: the proxy's steps beside the pass-through's.

python benchmarks/ttfb_segments.py [--seconds 4]

Starts the fake upstream, the Falcon+aiohttp pass-through and the proxy (full default path, as in
``proxy_bench.py``), the last two through ``_stamped.py``, which clocks each step of a request on
its way to the client's first body byte. Streams one at a time through each (as proxy_bench's
"added TTFB" does), then prints the median of each step in µs: the request read until the upstream
request is written (everything the server does before it can ask), the upstream's own time, and
from the upstream's first bytes until the reply's head and first body are written. The stamps
cost a little themselves; read the two columns side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
import proxy_bench as pb  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    ports = {name: pb.free_port() for name in ("upstream", "passthrough", "proxy")}
    upstream = f"http://127.0.0.1:{ports['upstream']}"
    config = pb.write_proxy_config(work, upstream)
    env = dict(os.environ, PYTHONPATH=str(pb.HERE.parent))
    stamped = str(pb.HERE / "_stamped.py")
    procs: dict[str, subprocess.Popen] = {}
    try:
        procs["upstream"] = pb.start([pb.PY, str(pb.HERE / "_upstream.py"), str(ports["upstream"])], ports["upstream"])
        procs["passthrough"] = pb.start([pb.PY, stamped, "passthrough", str(work / "passthrough.json"),
                                         str(ports["passthrough"]), upstream, "aiohttp"], ports["passthrough"], env)
        procs["proxy"] = pb.start([pb.PY, stamped, "proxy", str(work / "proxy.json"), "--config",
                                   str(config), "--port", str(ports["proxy"])], ports["proxy"], env)
        targets = {
            "passthrough": pb.StreamTarget(f"http://127.0.0.1:{ports['passthrough']}/v1/chat/completions",
                                           pb.stream_body()),
            "proxy": pb.StreamTarget(f"http://127.0.0.1:{ports['proxy']}/v2/chat/completions", pb.stream_body(),
                                     {"Authorization": f"Bearer {pb.KEY}"}),
        }
        ttfb = {name: uvloop.run(pb.stream_load(target, 1, args.seconds))[1] for name, target in targets.items()}
        steps = {}
        for name in targets:
            procs[name].send_signal(signal.SIGUSR1)
            out = work / f"{name}.json"
            deadline = time.time() + 10
            while not out.exists() and time.time() < deadline:
                time.sleep(0.05)
            time.sleep(0.1)  # (written whole by then)
            steps[name] = json.loads(out.read_text())
        print(f"time to first byte at one stream (client's median): pass-through {ttfb['passthrough']:.3f} ms, "
              f"proxy {ttfb['proxy']:.3f} ms; {steps['proxy']['requests']} / {steps['passthrough']['requests']} "
              "requests stamped\n")
        print(f"{'step (median µs)':<62} {'pass-through':>12} {'proxy':>8}")
        for step, value in steps["proxy"]["steps_us"].items():
            theirs = steps["passthrough"]["steps_us"].get(step)
            print(f"{step:<62} {'' if theirs is None else f'{theirs:.1f}':>12} {value:>8.1f}")
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
