"""Command line: ``llm-interactive-proxy`` serves; ``llm-interactive-proxy check`` validates;
``llm-interactive-proxy explain`` shows which rules decide a described request.

``check`` compiles config.yaml and every routes.d file exactly as the server would and prints
every problem like a compiler; operators run it before a reload, CI runs it on the shipped files.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from dsl.errors import RulesError, RulesErrors
from dsl.loader import LoadedRules, load_rules_dir
from dsl.printer import print_rules

from .config import AppConfig, load_config


def load_everything(config_path: str | None) -> tuple[AppConfig, LoadedRules]:
    """Config and compiled rules; raises :class:`RulesError` (possibly several) on any error."""
    config = load_config(config_path)
    rules = load_rules_dir(config.routes_dir, known_backends=config.backends.keys())
    rules.raise_for_errors()
    return config, rules


def _errors_of(exc: RulesError) -> list[RulesError]:
    return exc.errors if isinstance(exc, RulesErrors) else [exc]


def check(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="llm-interactive-proxy check",
                                     description="Validate and compile config.yaml and routes.d/ without serving.")
    parser.add_argument("--config", help="config file (default: ./config.yaml, else embedded defaults)")
    parser.add_argument("--print", dest="print_rules", action="store_true",
                        help="print the compiled rules in canonical form, in evaluation order")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except RulesError as exc:
        for err in _errors_of(exc):
            print(err.render(), file=sys.stderr)
        return 1
    rules = load_rules_dir(config.routes_dir, known_backends=config.backends.keys())
    for warning in rules.warnings:
        print(warning.render(), file=sys.stderr)
    for err in rules.errors:
        print(err.render(), file=sys.stderr)
    if rules.errors:
        print(f"{len(rules.errors)} error(s) in {config.routes_dir}", file=sys.stderr)
        return 1
    if args.print_rules:
        sys.stdout.write(print_rules(rules.rules) if rules.rules else "rules: []\n")
    source = config.source_path or "embedded defaults"
    print(f"ok: {source}: {len(config.backends)} backend(s) ({', '.join(config.backends)}), "
          f"{len(rules.rules)} rule(s) from {len(rules.files)} file(s) in {config.routes_dir}"
          + (f", {len(rules.warnings)} warning(s)" if rules.warnings else ""), file=sys.stderr)
    return 0


def explain(argv: Sequence[str]) -> int:
    """Every rule in order, matched or not and why, then the plan: before traffic arrives."""
    parser = argparse.ArgumentParser(prog="llm-interactive-proxy explain",
                                     description="Show which rules decide a request, and the plan they make.")
    parser.add_argument("--config", help="config file (default: ./config.yaml, else embedded defaults)")
    parser.add_argument("--model", required=True, help="the model the client asks for (or backend:model)")
    parser.add_argument("--frontend", choices=("openai", "anthropic", "gemini"), default="openai")
    parser.add_argument("--header", action="append", default=[], metavar="K=V", help="a request header (repeatable)")
    parser.add_argument("--tokens", type=int, default=0, help="estimated prompt tokens")
    parser.add_argument("--caller", help="the caller's key id")
    parser.add_argument("--stream", action="store_true", help="the client asks for a stream")
    parser.add_argument("--tools", action="store_true", help="the request declares tools")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    headers = {}
    for item in args.header:
        name, sep, value = item.partition("=")
        if not sep or not name:
            parser.error(f"--header {item!r}: write it as name=value")
        headers[name] = value
    try:
        config, rules = load_everything(args.config)
    except RulesError as exc:
        for err in _errors_of(exc):
            print(err.render(), file=sys.stderr)
        return 1
    from dsl.evaluate import RuleSet

    from .catalog import Catalog
    from .explain import explain_request

    result = explain_request(config, RuleSet(rules.rules), Catalog(config.catalog), args.model, frontend=args.frontend,
                             headers=headers, tokens=args.tokens, caller=args.caller, stream=args.stream,
                             tools=args.tools)
    if args.json:
        import json

        print(json.dumps(result.as_json(), indent=2))
    else:
        print(result.text())
    return 0


def serve(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="llm-interactive-proxy", description="Run the proxy.")
    parser.add_argument("--config", help="config file (default: ./config.yaml, else embedded defaults)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--disable-auth", action="store_true", help="accept requests without an API key")
    parser.add_argument("--disable-interactive-commands", action="store_true", help="treat !/ text as plain text")
    parser.add_argument("--log-level", default=None, help="debug, info, warning, error")
    parser.add_argument("--log-format", choices=("text", "json"), default=None, help="log lines as text or JSON")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes (limits, caches and health are per process)")
    parser.add_argument("--drain-timeout", type=float, default=30.0,
                        help="seconds to let open requests and streams finish on SIGTERM")
    args = parser.parse_args(argv)
    from .server import run  # imported late: `check` must not need the server's dependencies

    return run(args)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "check":
        return check(argv[1:])
    if argv and argv[0] == "explain":
        return explain(argv[1:])
    if argv and argv[0] == "serve":
        argv = argv[1:]
    return serve(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
