"""Start-up: load and check everything, pick the auth policy, run uvicorn."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys

from dsl.errors import RulesError, RulesErrors

from .config import load_config
from .http.connections import protocol_for
from .http.local_guard import is_loopback_name
from .record.logs import configure_logging

log = logging.getLogger("llm_proxy")


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except RulesError as exc:
        errors = exc.errors if isinstance(exc, RulesErrors) else [exc]
        for err in errors:
            print(err.render(), file=sys.stderr)
        return 2
    level = (args.log_level or config.logging.level).upper()
    log_format = args.log_format or config.logging.format
    configure_logging(config, level, log_format)
    # Whether auth is on follows the config, at start-up and on every reload (router/auth.py):
    # without client keys, requests are accepted unauthenticated only on a loopback address.
    loopback = is_loopback_name(args.host)
    if args.disable_interactive_commands:
        config = dataclasses.replace(config, interactive_commands=False)
    from .app import create_app

    try:
        app = create_app(config, disable_auth=args.disable_auth, loopback=loopback)
    except RulesError as exc:
        errors = exc.errors if isinstance(exc, RulesErrors) else [exc]
        for err in errors:
            print(err.render(), file=sys.stderr)
        return 2
    if app.state_ref.state.auth.local_only:
        log.warning("no client API keys configured: accepting unauthenticated requests on loopback %s only, "
                    "addressed to a loopback name and not from web pages", args.host)
    import uvicorn

    print(f"llm-interactive-proxy on http://{args.host}:{args.port} — backends: {', '.join(config.backends)}; "
          f"default: {config.default_backend}; rules: {len(app.state_ref.state.rules.rules)}"
          + (f"; {args.workers} workers" if args.workers > 1 else ""), file=sys.stderr)
    print(f"usage store: {config.usage.describe()}", file=sys.stderr)
    # No "server: uvicorn" header: it tells clients nothing they need (and attackers what runs
    # here), and uvicorn validates every response header it writes.
    # No WebSocket upgrades (no endpoint uses them); the HTTP protocol bounds how long a client may
    # take to send a request and how many connections may be open (router/connections.py).
    common = dict(host=args.host, port=args.port, log_level=level.lower(), access_log=False, lifespan="on",
                  log_config=None, timeout_graceful_shutdown=args.drain_timeout, server_header=False, ws="none")
    if args.workers > 1:
        # Each worker imports router.asgi and builds the same app from these variables.
        os.environ["LLM_PROXY_CONFIG"] = config.source_path or ""
        os.environ["LLM_PROXY_DISABLE_AUTH"] = "1" if args.disable_auth else "0"
        os.environ["LLM_PROXY_LOOPBACK"] = "1" if loopback else "0"
        os.environ["LLM_PROXY_DISABLE_COMMANDS"] = "1" if args.disable_interactive_commands else "0"
        os.environ["LLM_PROXY_LOG_LEVEL"], os.environ["LLM_PROXY_LOG_FORMAT"] = level, log_format
        uvicorn.run("router.asgi:create", factory=True, workers=args.workers,
                    http="router.http.connections:WorkerProtocol", **common)
        return 0
    import gc

    gc.collect()
    gc.freeze()  # start-up objects (grammar, rules, codecs) never need scanning again
    gc.set_threshold(20_000, 50, 100)  # requests allocate many short-lived objects; collect less often
    # SIGTERM: uvicorn stops accepting, lets requests and streams finish for up to drain_timeout,
    # then the lifespan shutdown flushes the usage queue and closes connectors.
    uvicorn.run(app, http=protocol_for(app.state_ref), **common)
    return 0
