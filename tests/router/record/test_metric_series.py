"""The dict-backed series must expose exactly what prometheus-client's own Counter and Histogram
would for the same updates (same names, labels, buckets, counts and sums)."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from router.record.metrics import LATENCY_BUCKETS, CounterSeries, HistogramSeries, _SeriesCollector


def _samples(registry: CollectorRegistry) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
    out = set()
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            if not s.name.endswith("_created"):  # creation times differ by nature
                out.add((s.name, tuple(sorted(s.labels.items())), round(s.value, 9)))
    return out


def test_series_match_prometheus_client_metrics() -> None:
    rng = random.Random(7)
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    counter = CounterSeries("demo_requests", "Requests", ("backend", "status"))
    histogram = HistogramSeries("demo_seconds", "Latency", ("backend",))
    ours.register(_SeriesCollector([counter, histogram]))
    ref_counter = Counter("demo_requests", "Requests", ["backend", "status"], registry=theirs)
    ref_histogram = Histogram("demo_seconds", "Latency", ["backend"], buckets=LATENCY_BUCKETS, registry=theirs)
    # Values on bucket bounds too: a bound belongs to its own bucket (le = less or equal).
    values = [rng.choice([*LATENCY_BUCKETS, 0.0, 1e-4, 400.0]) for _ in range(200)]
    values += [rng.uniform(0, 400) for _ in range(500)]
    for value in values:
        backend, status = rng.choice(["a", "b"]), rng.choice(["200", "502"])
        amount = rng.randint(1, 5)
        counter.inc((backend, status), amount)
        ref_counter.labels(backend, status).inc(amount)
        histogram.observe((backend,), value)
        ref_histogram.labels(backend).observe(value)
    assert _samples(ours) == _samples(theirs)
