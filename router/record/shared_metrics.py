"""``/metrics`` over every ``--workers`` process: each worker's series, added up.

A scrape is answered by whichever worker accepts the connection, and each worker counts only
what it served. So with ``--workers N`` (the parent sets ``LLM_PROXY_METRICS_DIR``, a private
directory it removes at exit) every worker writes a snapshot of its series to
``<dir>/<pid>.json`` once a second and at shutdown, and the worker that answers a scrape adds
the others' latest snapshots to its own live values.

How series combine: counters and histograms (buckets, counts, sums) are summed, also over
workers that have exited (their totals stay part of the proxy's, so a counter never goes down
when uvicorn replaces a worker); gauges are taken from live workers only, summed for amounts
(active streams, dropped usage records) and the minimum for states (``backend_up``,
``state_store_up``, ``usage_store_up``: up only if up in every worker; ``config_generation``:
the generation every worker has reached).
``llm_proxy_worker_processes`` says how many live workers the numbers cover. The per-request
path is untouched: the snapshot is taken from the same dict-backed series a single process
exposes, and a second's delay is what the other workers' numbers may lag behind.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any, Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from ..tasks import cancel_and_wait
from .metrics import Metrics

DIR_ENV = "LLM_PROXY_METRICS_DIR"
STATE_GAUGES = frozenset({"llm_proxy_backend_up", "llm_proxy_config_generation",
                          "llm_proxy_state_store_up", "llm_proxy_usage_store_up"})  # min; other gauges sum
SUMMED_TYPES = frozenset({"counter", "histogram", "summary", "gaugehistogram", "unknown", "info"})

log = logging.getLogger("llm_proxy.metrics")

Family = dict[str, Any]  # {"name", "type", "doc", "samples": [[sample name, labels, value], ...]}


def snapshot(registry: CollectorRegistry) -> list[Family]:
    """The registry's families as plain data (``_created`` samples left out: they are per process)."""
    return [{"name": family.name, "type": family.type, "doc": family.documentation,
             "samples": [[s.name, s.labels, s.value] for s in family.samples if not s.name.endswith("_created")]}
            for family in registry.collect()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - someone else's process: it exists
        return True
    return True


def merge(workers: Iterable[tuple[list[Family], bool]]) -> list[Metric]:
    """Families of several workers, ``(families, alive)`` each, combined as the module says."""
    order: list[str] = []
    kinds: dict[str, tuple[str, str]] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    live = 0
    for families, alive in workers:
        live += alive
        for family in families:
            name, kind = family["name"], family["type"]
            if kind == "gauge" and not alive:
                continue
            if name not in kinds:
                order.append(name)
                kinds[name] = (kind, family["doc"])
                values[name] = {}
            table = values[name]
            for sample, labels, value in family["samples"]:
                key = (sample, tuple(sorted(labels.items())))
                if key not in table:
                    table[key] = value
                elif kind in SUMMED_TYPES or name not in STATE_GAUGES:
                    table[key] += value
                else:
                    table[key] = min(table[key], value)
    out: list[Metric] = []
    for name in order:
        kind, doc = kinds[name]
        metric = Metric(name, doc, kind)
        for (sample, labels), value in values[name].items():
            metric.add_sample(sample, dict(labels), value)
        out.append(metric)
    workers_gauge = GaugeMetricFamily("llm_proxy_worker_processes", "Live worker processes these series cover")
    workers_gauge.add_metric([], live)
    out.append(workers_gauge)
    return out


class _Families:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


class SharedMetrics:
    """One worker's part: write its snapshot, and answer a scrape with every worker's."""

    def __init__(self, metrics: Metrics, directory: str, interval: float = 1.0, pid: int | None = None,
                 drain: Callable[[], None] | None = None) -> None:
        self.metrics, self.directory, self.interval = metrics, directory, interval
        # The recorder's drain (accounting is batched): called before each snapshot, so a
        # snapshot holds every request this worker has finished. The metrics never call it.
        self.drain = drain
        self.pid = pid or os.getpid()
        self.path = os.path.join(directory, f"{self.pid}.json")
        self._task: asyncio.Task[None] | None = None

    def take(self) -> list[Family]:
        """This worker's series now, what its recorder still held included (on the event loop)."""
        if self.drain is not None:
            self.drain()
        return snapshot(self.metrics.registry)

    def write(self, families: list[Family]) -> None:
        """This worker's snapshot, replaced atomically (a reader never sees half a file)."""
        temporary = f"{self.path}.tmp"
        with open(temporary, "w", encoding="utf-8") as fh:
            json.dump(families, fh)
        os.replace(temporary, self.path)

    def _others(self) -> Iterator[tuple[list[Family], bool]]:
        for name in sorted(os.listdir(self.directory)):
            stem, dot, ext = name.partition(".")
            if ext != "json" or not stem.isdigit() or int(stem) == self.pid:
                continue
            try:
                with open(os.path.join(self.directory, name), encoding="utf-8") as fh:
                    families = json.load(fh)
            except (OSError, ValueError):  # removed or being replaced this instant: its next snapshot counts
                continue
            yield families, _alive(int(stem))

    def render(self) -> bytes:
        """The exposition of every worker's series (this one's live)."""
        own = self.take()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Families(merge([(own, True), *self._others()])))  # type: ignore[arg-type]
        return generate_latest(registry)

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.write, self.take())
            except OSError:  # the directory went away (the parent is exiting)
                log.debug("metrics snapshot not written", exc_info=True)
            await asyncio.sleep(self.interval)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop, and leave the final totals for the workers that go on."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
        try:
            self.write(self.take())
        except OSError:
            pass
