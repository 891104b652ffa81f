"""Start-up: load and check everything, pick the auth policy, run uvicorn."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from typing import Any, Iterator

from dsl.errors import RulesError, RulesErrors

from .cli import missing_routes_dir, version
from .config import CONFIG_PATH_ENV, DEFAULT_CONFIG_PATH, load_config
from .http.connections import protocol_for
from .http.local_guard import is_loopback_name
from .record.logs import configure_logging
from .record.shared_metrics import DIR_ENV as METRICS_DIR_ENV

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
    if app.state_ref.state.auth.local_only:
        log.warning("no client API keys configured: accepting unauthenticated requests on loopback %s only, "
                    "addressed to a loopback name and not from web pages", args.host)
    import uvicorn

    announce(app, config, args)
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
            uvicorn.run("router.asgi:create", factory=True, workers=args.workers,
                        http="router.http.connections:WorkerProtocol", **common)
        finally:
            shutil.rmtree(metrics_dir, ignore_errors=True)
        return 0
    import gc

    gc.collect()
    gc.freeze()  # start-up objects (grammar, rules, codecs) never need scanning again
    gc.set_threshold(20_000, 50, 100)  # requests allocate many short-lived objects; collect less often
    # SIGTERM: uvicorn stops accepting, lets requests and streams finish for up to drain_timeout,
    # then the lifespan shutdown flushes the usage queue and closes connectors.
    with exit_zero_on_sigterm():
        uvicorn.run(app, http=protocol_for(app.state_ref), **common)
    return 0


@contextlib.contextmanager
def exit_zero_on_sigterm() -> Iterator[None]:
    """SIGTERM is how a supervisor asks for a stop, and a drained stop is a success: uvicorn
    handles the signal (drain, lifespan shutdown), then re-raises it to whatever handler was there
    before, which by default killed the process with status -15/143 and skipped ``atexit``
    (so the log handler's last batch was lost). With this no-op handler in place the re-raised
    signal is absorbed and the process exits 0 through the ordinary path."""
    previous = signal.signal(signal.SIGTERM, lambda _signum, _frame: None)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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


RESPONSES_PATH = "/v2/responses"


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
    missing = missing_routes_dir(config.routes_dir, config)
    if missing:
        banner.warning(missing.removeprefix("warning: "))
    urls = client_base_urls(app, args.host, args.port)
    banner.info("clients: " + "; ".join(f"{family} {url}" for family, url in urls.items()),
                extra={"base_urls": urls})
