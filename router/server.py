"""Start-up: load and check everything, pick the auth policy, run uvicorn."""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import logging
import sys

from dsl.errors import RulesError, RulesErrors

from .config import load_config

log = logging.getLogger("llm_proxy")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except RulesError as exc:
        errors = exc.errors if isinstance(exc, RulesErrors) else [exc]
        for err in errors:
            print(err.render(), file=sys.stderr)
        return 2
    level = (args.log_level or config.logging.level).upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    disable_auth = args.disable_auth
    if not config.auth_keys and not disable_auth:
        if not _is_loopback(args.host):
            print(f"refusing to listen on {args.host} without client keys: set auth.api_keys or LLM_PROXY_API_KEYS, "
                  "or pass --disable-auth deliberately", file=sys.stderr)
            return 2
        log.warning("no client API keys configured: accepting unauthenticated requests on loopback %s only", args.host)
        disable_auth = True
    if args.disable_interactive_commands:
        config = dataclasses.replace(config, interactive_commands=False)
    from .app import create_app

    try:
        app = create_app(config, disable_auth=disable_auth)
    except RulesError as exc:
        errors = exc.errors if isinstance(exc, RulesErrors) else [exc]
        for err in errors:
            print(err.render(), file=sys.stderr)
        return 2
    import uvicorn

    print(f"llm-interactive-proxy on http://{args.host}:{args.port} — backends: {', '.join(config.backends)}; "
          f"default: {config.default_backend}; rules: {len(app.state_ref.state.rules.rules)}", file=sys.stderr)
    import gc

    gc.collect()
    gc.freeze()  # start-up objects (grammar, rules, codecs) never need scanning again
    gc.set_threshold(20_000, 50, 100)  # requests allocate many short-lived objects; collect less often
    uvicorn.run(app, host=args.host, port=args.port, log_level=level.lower(), access_log=False, lifespan="on")
    return 0
