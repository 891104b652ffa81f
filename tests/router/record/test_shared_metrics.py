"""``/metrics`` with ``--workers``: each worker's snapshot is added to the answering worker's own
series (counters and histograms summed, also of exited workers; gauges of live workers only)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from router.record.metrics import Metrics
from router.record.shared_metrics import SharedMetrics


def _values(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text.decode()) for s in family.samples}


def _worker(metrics: Metrics, requests: int, latency: float, streams: int, up: int, generation: int) -> None:
    for _ in range(requests):
        metrics.requests.inc(("openai", "echo", "echo", "200"))
        metrics.latency.observe(("openai", "echo"), latency)
    metrics.active_streams.set(streams)
    metrics.backend_up.labels("echo").set(up)
    metrics.config_generation.set(generation)
    metrics.cache.labels("hit").inc(requests)


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_a_scrape_adds_up_every_worker(tmp_path: Path) -> None:
    here, there, gone = Metrics(), Metrics(), Metrics()
    _worker(here, 3, 0.02, 1, 1, 2)
    _worker(there, 5, 2.0, 2, 0, 1)
    _worker(gone, 7, 0.2, 4, 1, 3)
    live_pid = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        SharedMetrics(there, str(tmp_path), pid=live_pid.pid).write(SharedMetrics(there, str(tmp_path)).take())
        SharedMetrics(gone, str(tmp_path), pid=_dead_pid()).write(SharedMetrics(gone, str(tmp_path)).take())
        values = _values(SharedMetrics(here, str(tmp_path), pid=1).render())
    finally:
        live_pid.kill()
        live_pid.wait()
    labels = (("backend", "echo"), ("frontend", "openai"), ("model", "echo"), ("status", "200"))
    assert values[("llm_proxy_requests_total", labels)] == 15  # an exited worker's requests still count
    assert values[("llm_proxy_cache_total", (("result", "hit"),))] == 15
    hist = (("backend", "echo"), ("frontend", "openai"))
    assert values[("llm_proxy_request_seconds_count", hist)] == 15
    assert values[("llm_proxy_request_seconds_bucket", hist + (("le", "0.025"),))] == 3
    assert values[("llm_proxy_request_seconds_bucket", hist + (("le", "0.25"),))] == 10
    assert abs(values[("llm_proxy_request_seconds_sum", hist)] - (3 * 0.02 + 5 * 2.0 + 7 * 0.2)) < 1e-9
    assert values[("llm_proxy_active_streams", ())] == 3          # live workers' gauges summed
    assert values[("llm_proxy_backend_up", (("backend", "echo"),))] == 0  # up only where up in every worker
    assert values[("llm_proxy_config_generation", ())] == 1
    assert values[("llm_proxy_worker_processes", ())] == 2


def test_without_a_directory_metrics_render_alone() -> None:
    metrics = Metrics()
    _worker(metrics, 2, 0.1, 0, 1, 0)
    assert b"llm_proxy_worker_processes" not in metrics.render()
