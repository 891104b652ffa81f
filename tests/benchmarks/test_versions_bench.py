"""``benchmarks/versions_bench.py`` measures two versions of the proxy beside the pass-through in
one run: each revision's own code serves, and every figure the comparison rests on is printed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_two_revisions_are_measured_in_one_run() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "versions_bench.py"), ".", "HEAD", "--rounds", "2",
         "--duration", "1", "--connections", "4", "--python-client"],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = done.stdout
    rows = {m.group(1).strip(): (float(m.group(2)), float(m.group(4)))
            for m in re.finditer(r"^(.+?)\s+(\d+)\s+(\d+) µs\s+([\d.]+)  [\d., ]+$", out, re.M)}
    assert set(rows) == {"pass-through", "this checkout", next(k for k in rows if k.startswith("HEAD"))}, out
    for name, (rps, ratio) in rows.items():
        assert rps > 0 and ratio > 0, (name, out)  # every target served requests (a failing proxy serves none)
    assert rows["pass-through"][1] == 1.0
    assert re.search(r"^HEAD.* / this checkout: [\d.]+ \([\d., ]+\)$", out, re.M), out


def test_an_unknown_revision_is_refused_by_name() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "versions_bench.py"), "no-such-revision-x"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode != 0
    assert "no-such-revision-x" in done.stderr
