"""The start banner: what an operator needs to know the moment the proxy starts.

Which config file is in use (or that none was found and the embedded defaults run), the backends
and rules, a ``routes_dir`` that does not exist, and the base URL each client family should be
given, as README's "Pointing clients at it" sets them. Written as log records on a logger of its
own, so ``--log-format json`` makes them JSON objects like every other line.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from .cli import missing_routes_dir, version
from .config import CONFIG_PATH_ENV, DEFAULT_CONFIG_PATH

RESPONSES_PATH = "/v2/responses"  # the OpenAI Responses front end, listed once the app routes it


def client_base_urls(app: Any, host: str, port: int) -> dict[str, str]:
    """The base URL each client family should be given, as README's "Pointing clients at it"
    sets them. The Responses path is listed only when this build serves it."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}.get(host, host)
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    root = f"http://{shown}:{port}"
    urls = {"OpenAI (OPENAI_BASE_URL)": f"{root}/v2", "Anthropic (ANTHROPIC_BASE_URL)": root,
            "Gemini (GOOGLE_GEMINI_BASE_URL)": root}
    if serves(app, RESPONSES_PATH):
        urls["OpenAI Responses"] = f"{root}{RESPONSES_PATH}"
    return urls


def serves(app: Any, path: str) -> bool:
    """Whether a route for ``path`` exists in the app (Falcon's router is asked, not a list kept here)."""
    router = getattr(app, "_router", None)
    return router is not None and router.find(path) is not None


def announce(app: Any, config: Any, args: argparse.Namespace) -> None:
    """The start banner, as log records (one JSON object each with ``--log-format json``): which
    config file is in use (or that none was found and the embedded defaults run), the backends,
    and the base URL each client family should use. Logged at INFO on a logger of its own that
    is always enabled, so ``--log-level warning`` does not hide it."""
    banner = logging.getLogger("llm_proxy.start")
    banner.setLevel(logging.INFO)
    source = (f"config {config.source_path}" if config.source_path else
              f"no config file found (no --config, no ${CONFIG_PATH_ENV}, no ./{DEFAULT_CONFIG_PATH}): "
              "running the embedded defaults")
    workers = f"; {args.workers} workers" if args.workers > 1 else ""
    rules = len(app.state_ref.state.rules.rules)
    banner.info("llm-interactive-proxy %s listening on http://%s:%s%s — %s",
                version(), args.host, args.port, workers, source,
                extra={"config": config.source_path, "host": args.host, "port": args.port, "workers": args.workers})
    banner.info("backends: %s; default: %s; rules: %d from %s", ", ".join(config.backends), config.default_backend,
                rules, config.routes_dir, extra={"backends": list(config.backends), "rules": rules})
    banner.info("state store: %s", config.state.describe(), extra={"state_store": config.state.store})
    missing = missing_routes_dir(config.routes_dir, config)
    if missing:
        banner.warning(missing.removeprefix("warning: "))
    urls = client_base_urls(app, args.host, args.port)
    banner.info("clients: " + "; ".join(f"{family} {url}" for family, url in urls.items()),
                extra={"base_urls": urls})
