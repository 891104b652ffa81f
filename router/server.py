"""Start-up: load and check everything, pick the auth policy, run uvicorn."""

from __future__ import annotations

import argparse
import dataclasses
import errno
import logging
import os
import shutil
import socket
import sys
import tempfile
from typing import Any

from dsl.errors import RulesError, RulesErrors

from .banner import announce
from .config import load_config
from .http.connections import protocol_for
from .http.local_guard import is_loopback_name
from .record.logs import configure_logging
from .record.shared_metrics import DIR_ENV as METRICS_DIR_ENV
from .signals import STOP
from .start_notes import log_start_notes

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
    problem = port_problem(args.host, args.port)
    if problem:  # before anything else: uvicorn's own bind error came after "listening on"
        log.error(problem)
        return 2
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
    if STOP.requested:  # SIGTERM while starting: nothing served yet, nothing to drain (router/signals.py)
        log.info("SIGTERM while starting: exiting before serving")
        return 0
    if app.state_ref.state.auth.local_only:
        log.warning("no client API keys configured: accepting unauthenticated requests on loopback %s only, "
                    "addressed to a loopback name and not from web pages", args.host)
    announce(app, config, args)
    log_start_notes(config, args.host, args.port, args.disable_auth)
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
        # Where the workers leave their metrics for each other (router/record/shared_metrics.py).
        metrics_dir = os.environ[METRICS_DIR_ENV] = tempfile.mkdtemp(prefix="llm-proxy-metrics-")
        try:
            return start_uvicorn("router.asgi:create", factory=True, workers=args.workers,
                                 http="router.http.connections:WorkerProtocol", **common)
        finally:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    import gc

    gc.collect()
    gc.freeze()  # start-up objects (grammar, rules, codecs) never need scanning again
    gc.set_threshold(20_000, 50, 100)  # requests allocate many short-lived objects; collect less often
    # SIGTERM: uvicorn stops accepting, lets requests and streams finish for up to drain_timeout,
    # then the lifespan shutdown flushes the usage queue and closes connectors.
    return start_uvicorn(app, http=protocol_for(app.state_ref), **common)


def start_uvicorn(app: Any, **options: Any) -> int:
    """Serve ``app`` with uvicorn until stopped; the exit status.

    One process: uvicorn's ``Server``, told to stop by a SIGTERM that came before it ran
    (:data:`router.signals.STOP`, installed first thing by ``serve``). ``workers`` > 1: the
    supervisor in :mod:`router.workers` (graceful SIGTERM, SIGHUP reloads every worker)."""
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE

    config = uvicorn.Config(app, **options)
    if config.workers > 1:
        from .workers import serve_workers

        return serve_workers(config, config.workers, options["timeout_graceful_shutdown"], STOP)
    server = uvicorn.Server(config)
    if not STOP.serve_with(server):  # SIGTERM while starting: a clean stop, nothing served
        log.info("stop requested before the server started: exiting")
        return 0
    try:
        server.run()
    except KeyboardInterrupt:  # Ctrl-C twice: uvicorn's forced exit
        pass
    return 0 if server.started or STOP.requested else STARTUP_FAILURE


def port_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on (in use, no such address, not allowed), or None.

    Checked with a throw-away socket set up as uvicorn sets up its own (``SO_REUSEADDR``), so a
    port in TIME_WAIT is not reported and a port held by another server is."""
    if port == 0:
        return None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"cannot listen on {host}:{port}: the address does not resolve ({exc.strerror})"
    family, kind, proto, _name, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return (f"port {port} on {host} is already in use (another proxy or server is listening there; "
                        f"stop it or choose another port with --port)")
            return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None
