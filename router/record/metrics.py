"""Prometheus metrics (``GET /metrics``), labelled with bounded cardinality.

Model names come from clients, so only the first ``MAX_MODELS`` distinct models get their own
label value, and a name longer than ``MAX_LABEL_CHARS`` never does; the rest are counted as
``other``. The label set is thus bounded in size, not only in count (decoding already refuses
longer model names, see ``router/bounds.py``; this holds whatever path a name took). Backends and
front ends are bounded by configuration. Each app has its own registry, so tests and reloads never collide.

The per-request series (requests, latency, tokens, ...) are plain dicts updated by the event
loop thread and turned into metric families when ``/metrics`` is scraped: prometheus-client's
own Counter/Histogram take a lock per update (a histogram three), which measured as a visible
share of the proxy's per-request CPU. Rare updates (health, reloads, cache) use the client's
metric objects directly. The exposition format is prometheus-client's either way.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from ..bounds import MAX_MODEL_CHARS

MAX_MODELS = 50
MAX_LABEL_CHARS = MAX_MODEL_CHARS
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

__all__ = ["Metrics", "CONTENT_TYPE_LATEST", "CounterSeries", "HistogramSeries", "LiveCount"]


class CounterSeries:
    """A labelled counter as ``{label values: total}``; ``inc`` is one dict update, no lock."""

    def __init__(self, name: str, documentation: str, labels: tuple[str, ...]) -> None:
        self.name, self.documentation, self.labels = name, documentation, labels
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, labels: tuple[str, ...], amount: float = 1) -> None:
        values = self.values
        values[labels] = values.get(labels, 0) + amount

    def family(self) -> Metric:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for labels, value in list(self.values.items()):
            family.add_metric(labels, value)
        return family


class HistogramSeries:
    """A labelled histogram as per-bucket counts (not cumulative) and a sum per label set."""

    def __init__(self, name: str, documentation: str, labels: tuple[str, ...],
                 buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.name, self.documentation, self.labels = name, documentation, labels
        self.buckets = buckets
        self.values: dict[tuple[str, ...], list[float]] = {}  # [count per bucket..., +Inf count, sum]

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        row = self.values.get(labels)
        if row is None:
            row = self.values[labels] = [0.0] * (len(self.buckets) + 2)
        row[bisect_left(self.buckets, value)] += 1  # the first bucket whose bound is >= value
        row[-1] += value

    def family(self) -> Metric:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labels)
        bounds = [*(_le(b) for b in self.buckets), "+Inf"]
        for labels, row in list(self.values.items()):
            cumulative, running = [], 0.0
            for bound, count in zip(bounds, row):
                running += count
                cumulative.append((bound, running))
            family.add_metric(labels, cumulative, sum_value=row[-1])
        return family


def _le(bound: float) -> str:
    return floatToGoString(bound)  # the same bucket labels as prometheus-client's own Histogram


class LiveCount:
    """A gauge's value kept as a plain number, read by its ``Gauge`` when ``/metrics`` is scraped
    (``set_function``): every stream adds and takes one, and the client's ``Gauge.inc`` takes a
    lock each time (~1% of the profile samples of a stream's path to its first byte)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        self.value += amount

    def dec(self, amount: float = 1) -> None:
        self.value -= amount

    def set(self, value: float) -> None:
        self.value = float(value)

    def get(self) -> float:
        return self.value


class _SeriesCollector:
    """Hands the dict-backed series to the registry at scrape time."""

    def __init__(self, series: list[CounterSeries | HistogramSeries]) -> None:
        self.series = series

    def collect(self) -> Iterator[Metric]:
        for series in self.series:
            yield series.family()


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = CounterSeries("llm_proxy_requests", "Client requests by outcome",
                                      ("frontend", "backend", "model", "status"))
        self.errors = CounterSeries("llm_proxy_errors", "Failed attempts by error class", ("backend", "kind"))
        self.failovers = CounterSeries("llm_proxy_failovers", "Requests served by a later target of their chain",
                                       ("backend",))
        self.latency = HistogramSeries("llm_proxy_request_seconds", "Whole request time", ("frontend", "backend"))
        self.ttfb = HistogramSeries("llm_proxy_ttfb_seconds", "Time to the first byte from the backend", ("backend",))
        self.tokens = CounterSeries("llm_proxy_tokens", "Tokens reported by providers", ("backend", "model", "type"))
        self.rate_limited = CounterSeries("llm_proxy_rate_limit_rejections", "Requests refused by a rate limit",
                                          ("scope",))
        self.guard_events = CounterSeries("llm_proxy_guard_events", "Agent-guard interventions", ("kind",))
        r.register(_SeriesCollector([self.requests, self.errors, self.failovers, self.latency, self.ttfb,
                                     self.tokens, self.rate_limited, self.guard_events]))
        self.active_streams = LiveCount()  # a stream's start and end: a plain int, read when scraped
        Gauge("llm_proxy_active_streams", "Streams being relayed now", registry=r).set_function(
            self.active_streams.get)
        self.backend_up = Gauge("llm_proxy_backend_up", "1 when the last health check passed", ["backend"], registry=r)
        self.config_generation = Gauge("llm_proxy_config_generation", "Config reloads applied since start",
                                       registry=r)
        self.usage_dropped = Gauge("llm_proxy_usage_records_dropped", "Usage records dropped (queue full)", registry=r)
        self.usage_store_up = Gauge("llm_proxy_usage_store_up", "1 while the usage store's writer can write "
                                    "(PostgreSQL only; the embedded SQLite store has no series)", ["store"], registry=r)
        self.cache = Counter("llm_proxy_cache", "Response cache lookups", ["result"], registry=r)
        self.state_store_errors = Counter("llm_proxy_state_store_errors", "Calls to the shared state store that "
                                          "failed or timed out", ["store", "op"], registry=r)
        self.state_store_up = Gauge("llm_proxy_state_store_up", "1 while the shared state store answers",
                                    ["store"], registry=r)
        self._models: set[str] = set()
        # With ``--workers``: renders every worker's series (router/record/shared_metrics.py).
        self.exposition: Callable[[], bytes] | None = None

    def model_label(self, model: str | None) -> str:
        if not model:
            return "-"
        if model in self._models:
            return model
        if len(self._models) < MAX_MODELS and len(model) <= MAX_LABEL_CHARS:
            self._models.add(model)
            return model
        return "other"

    def render(self) -> bytes:
        if self.exposition is not None:
            return self.exposition()
        return generate_latest(self.registry)
