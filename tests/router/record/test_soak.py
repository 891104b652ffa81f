"""A one-minute soak (``benchmarks/soak.py``): the proxy as its own process under the soak's mixed
load, sampled once a second. The same checks as the hour-long run, on windows scaled to the
run: resident memory grows by at most 5% from 1/6 of the load to its end (after 20 s of load: the
hour-long run has ten minutes before its window), open file descriptors
and asyncio tasks return to their idle values once the load stops, and every kind of request in
the mix got the answer it should."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_a_short_soak_keeps_memory_flat_and_returns_to_idle(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "soak.py"), "--minutes", "0.9", "--warm-load", "20", "--rate", "25",
         "--warmup", "4", "--idle", "3", "--settle", "20", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=150)
    assert (tmp_path / "soak.json").exists(), done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((tmp_path / "soak.json").read_text())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert summary["failures"] == []
    assert summary["rss_mb"]["growth"] <= 0.05
    assert 0 < summary["rss_anon_mb"]["at_1_6"] < summary["rss_mb"]["at_1_6"]  # the heap, reported beside RSS
    assert summary["fds"]["after"] <= summary["fds"]["idle"] + 1  # (+1: SQLite's kept descriptor, see soak.py)
    assert summary["tasks"]["after"] <= summary["tasks"]["idle"]
    assert summary["answered"] >= summary["sent"] * 0.99
    # The mix reached the proxy: streams of every front end, commands, tools, failover, cut
    # streams, hang-ups and bad requests each answered as they should (no unexpected outcome).
    kinds = {key.split(" -> ")[0] for key in summary["outcomes"]}
    for kind in ("openai stream fake-model", "anthropic stream", "gemini stream", "command", "hang-up",
                 "openai soak-fail", "openai stream soak-cut", "bad json", "bad key"):
        assert any(k.startswith(kind) for k in kinds), (kind, sorted(kinds))
    # Sampled every second, bounded structures included.
    rows = (tmp_path / "soak.csv").read_text().splitlines()
    assert len(rows) > 50 and "sessions" in rows[0] and "plan_memo" in rows[0]
    assert summary["structures_max"]["sessions"] <= 300  # the soak's session bound held
