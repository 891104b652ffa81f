"""Prometheus metrics (``GET /metrics``), labelled with bounded cardinality.

Model names come from clients and are unbounded, so only the first ``MAX_MODELS`` distinct models
get their own label value; the rest are counted as ``other``. Backends and front ends are bounded
by configuration. Each app has its own registry, so tests and reloads never collide.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

MAX_MODELS = 50
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

__all__ = ["Metrics", "CONTENT_TYPE_LATEST"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("llm_proxy_requests", "Client requests by outcome",
                                ["frontend", "backend", "model", "status"], registry=r)
        self.errors = Counter("llm_proxy_errors", "Failed attempts by error class", ["backend", "kind"], registry=r)
        self.failovers = Counter("llm_proxy_failovers", "Requests served by a later target of their chain",
                                 ["backend"], registry=r)
        self.latency = Histogram("llm_proxy_request_seconds", "Whole request time", ["frontend", "backend"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.ttfb = Histogram("llm_proxy_ttfb_seconds", "Time to the first byte from the backend", ["backend"],
                              buckets=LATENCY_BUCKETS, registry=r)
        self.tokens = Counter("llm_proxy_tokens", "Tokens reported by providers", ["backend", "model", "type"],
                              registry=r)
        self.active_streams = Gauge("llm_proxy_active_streams", "Streams being relayed now", registry=r)
        self.rate_limited = Counter("llm_proxy_rate_limit_rejections", "Requests refused by a rate limit",
                                    ["scope"], registry=r)
        self.guard_events = Counter("llm_proxy_guard_events", "Agent-guard interventions", ["kind"], registry=r)
        self.backend_up = Gauge("llm_proxy_backend_up", "1 when the last health check passed", ["backend"], registry=r)
        self.config_generation = Gauge("llm_proxy_config_generation", "Config reloads applied since start",
                                       registry=r)
        self.usage_dropped = Gauge("llm_proxy_usage_records_dropped", "Usage records dropped (queue full)", registry=r)
        self.cache = Counter("llm_proxy_cache", "Response cache lookups", ["result"], registry=r)
        self._models: set[str] = set()

    def model_label(self, model: str | None) -> str:
        if not model:
            return "-"
        if model in self._models:
            return model
        if len(self._models) < MAX_MODELS:
            self._models.add(model)
            return model
        return "other"

    def render(self) -> bytes:
        return generate_latest(self.registry)
