"""``benchmarks/feature_cost.py --instructions``: what a part of the default path costs, counted
(callgrind) in process with that part switched off, beside the same proxy with all of it on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from feature_cost import part_instructions  # noqa: E402


def test_switching_the_usage_part_off_saves_instructions() -> None:
    # Few requests (the difference of runs of 250 and 50): enough to tell a part of ~10% of the
    # proxy's count from the noise of a run (the runs' fixed work cancels out).
    rows = dict(part_instructions(["usage"], runs=(50, 250)))
    bare, on, off = rows["bare Falcon app"], rows["proxy, all on"], rows["usage"]
    assert 0 < bare < off < on
    assert (on - off) / (on - bare) > 0.05, rows  # the usage rows and metrics: a visible share of the proxy's own


def test_the_request_path_is_refused_in_process() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "feature_cost.py"), "--instructions",
                           "--parts", "request_path"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode != 0
    assert "only measured live" in done.stderr
