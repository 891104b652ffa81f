"""ASGI entry point for ``--workers N`` (uvicorn imports it in each worker process).

The serving options travel in environment variables set by ``llm-interactive-proxy`` itself, so
every worker builds the same app. Each worker has its own in-process limits, caches and health
state until a shared store backs them (see README "Running it").
"""

from __future__ import annotations

import dataclasses
import os

from .app import ProxyApp, create_app
from .config import load_config
from .http.connections import bind_worker
from .record.logs import configure_logging
from .record.shared_metrics import DIR_ENV, SharedMetrics


def create() -> ProxyApp:
    """One worker's app. Logging first, as the single process does it (a worker starts with none:
    its warnings went out unredacted through Python's last-resort handler, its access lines nowhere)."""
    config = load_config(os.environ.get("LLM_PROXY_CONFIG") or None)
    configure_logging(config, os.environ.get("LLM_PROXY_LOG_LEVEL"), os.environ.get("LLM_PROXY_LOG_FORMAT"))
    if os.environ.get("LLM_PROXY_DISABLE_COMMANDS") == "1":
        config = dataclasses.replace(config, interactive_commands=False)
    app = create_app(config, disable_auth=os.environ.get("LLM_PROXY_DISABLE_AUTH") == "1",
                     loopback=os.environ.get("LLM_PROXY_LOOPBACK") == "1")
    bind_worker(app.state_ref)  # this worker's connections follow this app's config
    directory = os.environ.get(DIR_ENV)
    if directory:  # /metrics answers for every worker, whichever one a scrape reaches
        shared = SharedMetrics(app.state_ref.metrics, directory, drain=app.state_ref.recorder.drain)
        app.state_ref.metrics.exposition = shared.render
        app.state_ref.on_startup.append(shared.start)
        app.state_ref.on_shutdown.insert(0, shared.stop)
    return app
