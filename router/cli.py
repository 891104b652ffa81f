"""Command line: ``llm-interactive-proxy [serve]`` serves; ``llm-interactive-proxy check`` validates;
``llm-interactive-proxy explain`` shows which rules decide a described request.

``check`` compiles config.yaml and every routes.d file exactly as the server would and prints
every problem like a compiler; operators run it before a reload, CI runs it on the shipped files.
The command table below is the one place that knows the subcommands: ``--help`` lists it and a
misspelt one is answered with the nearest name.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from importlib import metadata
from typing import TYPE_CHECKING, Callable, Sequence

from . import signals

if TYPE_CHECKING:  # imported where used: ``serve`` takes over SIGTERM before anything slow loads
    from dsl.errors import RulesError
    from dsl.loader import LoadedRules

    from .config import AppConfig

PROG = "llm-interactive-proxy"


def version() -> str:
    """The installed distribution's version (what ``pip show`` says)."""
    try:
        return metadata.version(PROG)
    except metadata.PackageNotFoundError:  # run from a source tree without installing
        return "unknown (not installed)"


def load_everything(config_path: str | None) -> tuple[AppConfig, LoadedRules]:
    """Config and compiled rules; raises :class:`RulesError` (possibly several) on any error."""
    from dsl.loader import load_rules_dir

    from .config import load_config

    config = load_config(config_path)
    rules = load_rules_dir(config.routes_dir, known_backends=config.backends.keys())
    rules.raise_for_errors()
    return config, rules


def _errors_of(exc: RulesError) -> list[RulesError]:
    from dsl.errors import RulesErrors

    return exc.errors if isinstance(exc, RulesErrors) else [exc]


def missing_routes_dir(routes_dir: str, config: AppConfig | None = None) -> str | None:
    """The warning for a ``routes_dir`` that does not exist: a typo there silently meant "no rules"."""
    if os.path.isdir(routes_dir):
        return None
    source = config.source_path if config is not None and config.source_path else "the config"
    return f"warning: routes_dir {routes_dir} does not exist: no rule files are loaded (create it, or fix routes_dir in {source})"


def _quote_safely(text: str, config: AppConfig | None) -> str:
    """An error or warning as ``check`` prints it: its excerpt quotes the file's line, which may hold
    a key, and the terminal or CI log it goes to is no place for one. The reload path's redaction
    (``router/reload.py``): the config's known secrets when it loaded, and credential shapes."""
    from backends.redaction import redact

    from .record.logs import config_secrets

    return redact(text, config_secrets(config) if config is not None else ())


def check(argv: Sequence[str]) -> int:
    from dsl.loader import LoadedRules, load_rules_dir
    from dsl.printer import print_rules

    from .config import load_config_collecting

    parser = argparse.ArgumentParser(prog=f"{PROG} check",
                                     description="Validate and compile config.yaml and routes.d/ without serving; "
                                                 "print every error and warning, exit 1 on any error.")
    parser.add_argument("--config", help="config file (default: $LLM_PROXY_CONFIG, else ./config.yaml, "
                                         "else embedded defaults)")
    parser.add_argument("--print", dest="print_rules", action="store_true",
                        help="print the compiled rules in canonical form, in evaluation order")
    args = parser.parse_args(argv)
    # Every problem in one run: the config's (schema, every missing ${VAR}) and the rules', also
    # when the config is broken (then its backends and routes_dir are read as written).
    loaded = load_config_collecting(args.config)
    for err in loaded.errors:
        print(_quote_safely(err.render(), loaded.config), file=sys.stderr)
    rules, missing_dir = LoadedRules(), None
    if loaded.routes_dir is not None:
        rules = load_rules_dir(loaded.routes_dir, known_backends=loaded.backends)
        missing_dir = missing_routes_dir(loaded.routes_dir, loaded.config)
    if missing_dir:
        print(missing_dir, file=sys.stderr)
    for warning in rules.warnings:
        print(_quote_safely(warning.render(), loaded.config), file=sys.stderr)
    for err in rules.errors:
        print(_quote_safely(err.render(), loaded.config), file=sys.stderr)
    total = len(loaded.errors) + len(rules.errors)
    if total or loaded.config is None:
        print(f"{total} error(s): {len(loaded.errors)} in the config, {len(rules.errors)} in the rules"
              + (f" ({loaded.routes_dir})" if loaded.routes_dir else ""), file=sys.stderr)
        return 1
    config = loaded.config
    if args.print_rules:
        sys.stdout.write(print_rules(rules.rules) if rules.rules else "rules: []\n")
    source = config.source_path or "embedded defaults"
    where = f"{len(rules.files)} file(s) in {config.routes_dir}" if not missing_dir else "no routes_dir"
    warnings = len(rules.warnings) + (1 if missing_dir else 0)
    print(f"ok: {source}: {len(config.backends)} backend(s) ({', '.join(config.backends)}), "
          f"{len(rules.rules)} rule(s) from {where}" + (f", {warnings} warning(s)" if warnings else ""), file=sys.stderr)
    print(f"state store: {config.state.describe()} (not contacted by check)", file=sys.stderr)
    return 0


def explain(argv: Sequence[str]) -> int:
    """Every rule in order, matched or not and why, then the plan: before traffic arrives."""
    parser = argparse.ArgumentParser(prog=f"{PROG} explain",
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
    from dsl.errors import RulesError

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


def _serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Run the proxy (the default command; `serve` may also be named).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n" + "\n".join(f"  {name:<8}{summary}" for name, (summary, _) in COMMANDS.items())
        + f"\n\nRun `{PROG} COMMAND --help` for a command's own options.")
    parser.add_argument("--version", action="version", version=f"{PROG} {version()}")
    parser.add_argument("--config", help="config file (default: $LLM_PROXY_CONFIG, else ./config.yaml, "
                                         "else embedded defaults)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default: %(default)s)")
    parser.add_argument("--disable-auth", action="store_true", help="accept requests without an API key")
    parser.add_argument("--disable-interactive-commands", action="store_true", help="treat !/ text as plain text")
    parser.add_argument("--log-level", default=None, type=str.lower,
                        choices=("debug", "info", "warning", "error", "critical"),
                        help="log level (default: logging.level in the config, else info)")
    parser.add_argument("--log-format", choices=("text", "json"), default=None,
                        help="log lines as text or JSON (default: logging.format in the config, else text)")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes (default: %(default)s; limits, caches and health are per process)")
    parser.add_argument("--drain-timeout", type=float, default=30.0,
                        help="seconds to let open requests and streams finish on SIGTERM (default: %(default)s)")
    return parser


def serve(argv: Sequence[str]) -> int:
    args = _serve_parser().parse_args(argv)
    from .server import run  # imported late: `check` must not need the server's dependencies

    return run(args)


COMMANDS: dict[str, tuple[str, Callable[[Sequence[str]], int]]] = {
    "serve": ("run the proxy (default when no command is given)", serve),
    "check": ("validate config.yaml and routes.d/, print every error, exit 1 on any", check),
    "explain": ("show which rules decide a described request, and the plan they make", explain),
}


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (``argv`` None: this process's own, and then ``serve`` also takes over the
    process's signals; a caller passing ``argv``, such as a test, keeps its own)."""
    program = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and not argv[0].startswith("-"):
        name = argv[0]
        if name not in COMMANDS:
            near = difflib.get_close_matches(name, COMMANDS, n=1, cutoff=0.6)
            hint = f"; did you mean '{near[0]}'?" if near else ""
            print(f"{PROG}: error: unknown command '{name}'{hint} (commands: {', '.join(COMMANDS)}; "
                  f"see {PROG} --help)", file=sys.stderr)
            return 2
        command, argv = COMMANDS[name][1], argv[1:]
    else:
        command = serve
    if command is serve and program:
        # The serving process: SIGTERM from now on is a clean stop (router/signals.py), before
        # the second or more of imports and compiling that comes before uvicorn's own handlers.
        signals.install()
    return command(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
