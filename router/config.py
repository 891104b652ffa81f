"""Typed application config: ``config.yaml`` + environment variables -> :class:`AppConfig`.

The file is validated against ``schemas/config.schema.json`` (errors point at file:line:col with a
caret), ``${VAR}`` references in string values are expanded from the environment, then well-known
environment variables (provider keys, client keys, tool-call repair switches) are layered on top.
The result is a tree of frozen dataclasses so nothing mutates config at run time by accident.

Precedence, lowest to highest: embedded defaults < config.yaml < environment overrides, except
for backend API keys, where a key written in the file wins and the environment only fills gaps.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from urllib.parse import urlsplit

from backends.redaction import redact, redact_url
from backends.settings import DEFAULT_MAX_RESPONSE, ConnectorSettings, Timeouts
from dsl.errors import Location, RulesError, RulesErrors
from dsl.source import YamlDocument, parse_yaml, validate

from .wire.sse import DEFAULT_MAX_LINE

__all__ = [
    "BACKEND_TYPES",
    "DEFAULT_CONFIG_PATH",
    "AppConfig",
    "BackendConfig",
    "ConfigError",
    "LoggingConfig",
    "LoopDetectionConfig",
    "ServerConfig",
    "SessionConfig",
    "StateConfig",
    "Timeouts",
    "ToolCallLoopDetectionConfig",
    "UsageConfig",
    "connector_settings",
    "load_config",
    "load_config_collecting",
    "parse_bool",
]

BACKEND_TYPES = (
    "openai", "anthropic", "gemini", "openrouter", "openai-compatible",
    "gemini-cli-oauth-personal", "gemini-cli-cloud-project", "echo",
)
DEFAULT_CONFIG_PATH = "config.yaml"  # looked up in the working directory when no path is given
CONFIG_PATH_ENV = "LLM_PROXY_CONFIG"  # an explicit path given through the environment

# Provider key variables: NAME_API_KEY configures the backend called ``name`` (of the same type).
_PROVIDER_KEY_ENV = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "gemini": "GEMINI_API_KEY",
    "openrouter": "OPENROUTER_API_KEY",
}
_SECRET_HEADER = re.compile(r"auth|key|token|secret|cookie|password", re.IGNORECASE)
_VAR_REF = re.compile(r"\$(\$)?\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_PREFIX_RE = re.compile(r"^\S{1,10}$")
# Backend settings that are URLs: shown redacted, and refused when they carry credentials.
_URL_SETTINGS = ("base_url", "gemini_api_base_url", "token_url")
_REDACTED = "<redacted>"


class ConfigError(RulesError):
    """The config cannot be used: missing file, unknown default backend, bad environment value."""


# --------------------------------------------------------------------------- typed sections


@dataclass(frozen=True, slots=True)
class BackendConfig:
    """One configured backend. Typed fields for what every connector needs; the rest in ``options``.

    ``options`` holds every other key from the file verbatim (``models``, ``timeout``, ``headers``,
    ``gcp_project_id``, ...); the properties below give typed access to the common ones.
    """

    name: str
    type: str
    api_keys: tuple[str, ...] = ()
    base_url: str | None = None
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def models(self) -> tuple[str, ...]:
        """Static model list shown by ``GET /v2/models`` for this backend."""
        return tuple(self.options.get("models") or ())

    @property
    def default_model(self) -> str | None:
        return self.options.get("default_model")

    @property
    def headers(self) -> Mapping[str, str]:
        return self.options.get("headers") or MappingProxyType({})

    @property
    def max_line_bytes(self) -> int:
        """Longest SSE line (or one event's data) read from this backend's streams."""
        return int(self.options.get("max_line_bytes", DEFAULT_MAX_LINE))

    @property
    def max_response_bytes(self) -> int:
        """Most bytes read of one whole (non-streamed) reply of this backend."""
        return int(self.options.get("max_response_bytes", DEFAULT_MAX_RESPONSE))

    @property
    def health_check(self) -> bool:
        return bool(self.options.get("health_check", True))

    def timeouts(self, proxy_timeout: float) -> Timeouts:
        """Effective limits: a number applies to every phase; missing phases use ``proxy_timeout``."""
        raw = self.options.get("timeout")
        if raw is None:
            return Timeouts(proxy_timeout, proxy_timeout, proxy_timeout)
        if isinstance(raw, Mapping):
            return Timeouts(float(raw.get("connect", proxy_timeout)), float(raw.get("first_byte", proxy_timeout)),
                            float(raw.get("idle", proxy_timeout)))
        return Timeouts(float(raw), float(raw), float(raw))

    def secrets(self) -> tuple[str, ...]:
        """Every secret this backend's settings hold: its keys, the values of headers whose names
        look secret (``Authorization``, ``*-Key`` ...) and an OAuth ``client_secret``; the
        redaction of text that leaves the proxy looks for each of them."""
        headers = (str(v) for h, v in self.headers.items() if _SECRET_HEADER.search(h) and v)
        client_secret = self.options.get("client_secret")
        return (*self.api_keys, *headers, *([str(client_secret)] if client_secret else ()))

    def redacted(self) -> dict[str, Any]:
        """A JSON-able view safe for logs and ``!/hello``: keys and secret-looking headers hidden."""
        opts = {k: v for k, v in self.options.items()}
        if "headers" in opts:
            opts["headers"] = {h: (_REDACTED if _SECRET_HEADER.search(h) else v) for h, v in opts["headers"].items()}
        if "timeout" in opts and isinstance(opts["timeout"], Mapping):
            opts["timeout"] = dict(opts["timeout"])
        if "models" in opts:
            opts["models"] = list(opts["models"])
        for key in _URL_SETTINGS:
            if isinstance(opts.get(key), str):
                opts[key] = redact_url(opts[key])
        return {"name": self.name, "type": self.type, "api_keys": [_REDACTED] * len(self.api_keys),
                "base_url": redact_url(self.base_url) if self.base_url else None, **opts}

    def __repr__(self) -> str:
        return f"BackendConfig({self.redacted()!r})"


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Session storage and per-session post-processing defaults.

    Defaults: in-memory store, 24 h idle expiry (a coding session's ``!/backend`` choice should
    survive a lunch break), 10 000 sessions, 100 history entries, tool-call repair on with 64 KiB cap.
    """

    repository: str = "in_memory"
    path: str = "sessions"
    ttl_seconds: float = 86400.0
    max_sessions: int = 10_000
    max_history: int = 100
    tool_call_repair_enabled: bool = True
    tool_call_repair_buffer_cap_bytes: int = 65536


@dataclass(frozen=True, slots=True)
class LoopDetectionConfig:
    """Repeated-text detection in streams.

    Defaults: a chunk of 20..500 characters repeated 5 times back to back. Shorter patterns
    (table rules, list bullets) repeat legitimately; 500 covers paragraph-sized loops.
    """

    enabled: bool = True
    min_pattern_length: int = 20
    max_pattern_length: int = 500
    min_repetitions: int = 5


@dataclass(frozen=True, slots=True)
class ToolCallLoopDetectionConfig:
    """Identical tool calls repeated: ``max_repeats`` within ``ttl_seconds`` trips ``mode``."""

    enabled: bool = True
    max_repeats: int = 4
    ttl_seconds: float = 120.0
    mode: str = "break"  # or "chance_then_block"


@dataclass(frozen=True, slots=True)
class UsageConfig:
    """Usage/audit store: SQLite at ``path`` (None: in memory only), or PostgreSQL at ``url``
    (tables in ``schema``, default ``public``), shared by every instance pointed at it."""

    path: str | None = None
    retention_days: int = 30
    url: str | None = None
    schema: str | None = None
    queue_size: int = 20_000  # records waiting for the writer; beyond: dropped and counted

    def describe(self) -> str:
        """Which store, for the start banner (a password in the URL is not shown)."""
        if self.url:
            return f"PostgreSQL {safe_url(self.url)}, schema {self.schema or 'public'}"
        return f"SQLite {self.path}" if self.path else "SQLite in memory"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Limits on client connections (``router/connections.py``).

    Defaults: 10 s for a request's headers (a real client sends them in one packet), 60 s for its
    body (10 MB at ~170 KB/s), 20 s for an idle kept-alive connection (longer than the common
    clients' own idle expiry — httpx 5 s, aiohttp 15 s, Node 4 s — so the client closes first: a
    server that closes first races the client's next request, which then fails with a
    disconnect), 1024 open connections (well under a default 4096 file limit, with room for
    upstream connections).
    """

    header_timeout: float = 10.0
    body_timeout: float = 60.0
    keep_alive_timeout: float = 20.0
    max_connections: int = 1024


DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


@dataclass(frozen=True, slots=True)
class StateConfig:
    """Where the state several instances must agree on lives (``router/state_store``).

    ``memory`` (the default) keeps it in this process; ``redis`` shares it through ``url`` under
    ``prefix``. ``on_unavailable`` says what a request gets when Redis does not answer within
    ``timeout_ms``: ``fail_open`` serves on this process's own state, ``fail_closed`` a 503.
    """

    store: str = "memory"
    url: str = DEFAULT_REDIS_URL
    prefix: str = "lip"
    on_unavailable: str = "fail_open"
    timeout_ms: int = 50

    @property
    def shared(self) -> bool:
        return self.store == "redis"

    def describe(self) -> str:
        """For the start banner and ``check``: the store and where, never a password."""
        if not self.shared:
            return "memory (this process)"
        return f"redis {redact_url(self.url)} prefix {self.prefix!r} ({self.on_unavailable}, {self.timeout_ms} ms)"


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    level: str = "INFO"
    format: str = "text"  # or "json"


@dataclass(frozen=True, slots=True)
class AppConfig:
    """The whole configuration. Build with :func:`load_config`; adjust with ``dataclasses.replace``."""

    backends: dict[str, BackendConfig]
    default_backend: str
    auth_keys: tuple[str, ...] = ()
    admin_keys: tuple[str, ...] = ()
    routes_dir: str = "routes.d"
    proxy_timeout: float = 120.0
    command_prefix: str = "!/"
    max_body_bytes: int = 10 * 1024 * 1024
    interactive_commands: bool = True
    session: SessionConfig = field(default_factory=SessionConfig)
    loop_detection: LoopDetectionConfig = field(default_factory=LoopDetectionConfig)
    tool_call_loop_detection: ToolCallLoopDetectionConfig = field(default_factory=ToolCallLoopDetectionConfig)
    usage: UsageConfig = field(default_factory=UsageConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    state: StateConfig = field(default_factory=StateConfig)
    prices: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # model -> {input, output} per 1M tokens
    catalog: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # model -> {context_window}; over router/catalog.json
    source_path: str | None = None  # absolute path of the file read, None for embedded defaults
    # Who may read /metrics and /health/backends: "admin" (an admin key; any client key when no
    # admin keys are configured), "client" (any client key) or "none" (no key).
    metrics_auth: str = "admin"
    health_auth: str = "admin"
    # Where each backend came from, for the start banner: "config.yaml:5", "OPENAI_API_KEY", "embedded default".
    backend_sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    def backend_timeouts(self, name: str) -> Timeouts:
        return self.backends[name].timeouts(self.proxy_timeout)

    def redacted(self) -> dict[str, Any]:
        """A JSON-able view with every secret replaced, for logs and diagnostics."""
        return {
            "source_path": self.source_path,
            "backends": {n: b.redacted() for n, b in self.backends.items()},
            "default_backend": self.default_backend,
            "auth": {"api_keys": [_REDACTED] * len(self.auth_keys), "admin_keys": [_REDACTED] * len(self.admin_keys)},
            "routes_dir": self.routes_dir,
            "proxy_timeout": self.proxy_timeout,
            "command_prefix": self.command_prefix,
            "max_body_bytes": self.max_body_bytes,
            "interactive_commands": self.interactive_commands,
            "session": _asdict(self.session),
            "loop_detection": _asdict(self.loop_detection),
            "tool_call_loop_detection": _asdict(self.tool_call_loop_detection),
            "usage": {**_asdict(self.usage), "url": safe_url(self.usage.url) if self.usage.url else None},
            "logging": _asdict(self.logging),
            "server": _asdict(self.server),
            "metrics": {"auth": self.metrics_auth},
            "health": {"auth": self.health_auth},
            "state": {**_asdict(self.state), "url": redact_url(self.state.url)},
        }

    def __repr__(self) -> str:
        return f"AppConfig({self.redacted()!r})"


def connector_settings(config: AppConfig) -> dict[str, ConnectorSettings]:
    """Each configured backend as its connector is told about it (``backends/settings.py``):
    connectors read these, never the config, so they depend on nothing of the server's."""
    return {name: ConnectorSettings(
        name=cfg.name, type=cfg.type, api_keys=cfg.api_keys, base_url=cfg.base_url, models=cfg.models,
        headers=cfg.headers, timeouts=cfg.timeouts(config.proxy_timeout), max_line_bytes=cfg.max_line_bytes,
        max_response_bytes=cfg.max_response_bytes, secrets=cfg.secrets(), options=cfg.options,
    ) for name, cfg in config.backends.items()}


def safe_url(url: str) -> str:
    """A database URL without its password (``postgresql://user:***@host/db``), for the start
    banner, logs and the redacted config."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


def _asdict(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__dataclass_fields__}


# --------------------------------------------------------------------------- loading


def parse_bool(text: str, what: str) -> bool:
    """``true/false/1/0/yes/no/on/off`` (any case); anything else is a :class:`ConfigError`."""
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{what}={text!r} is not a boolean (use true/false, 1/0, yes/no)")


def _parse_int(text: str, what: str, minimum: int = 1) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ConfigError(f"{what}={text!r} is not an integer") from None
    if value < minimum:
        raise ConfigError(f"{what}={value} must be at least {minimum}")
    return value


def _resolve_path(doc_path: str | None, env: Mapping[str, str]) -> tuple[str | None, bool]:
    """Which file to read and whether it was asked for explicitly (then it must exist)."""
    if doc_path is not None:
        return doc_path, True
    if env.get(CONFIG_PATH_ENV):
        return env[CONFIG_PATH_ENV], True
    return (DEFAULT_CONFIG_PATH, False) if os.path.isfile(DEFAULT_CONFIG_PATH) else (None, False)


def _read_document(path: str) -> YamlDocument:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    return parse_yaml(text, path)


def _errors_of(exc: RulesError) -> list[RulesError]:
    return exc.errors if isinstance(exc, RulesErrors) else [exc]


def _raise_all(errors: list[RulesError]) -> None:
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise RulesErrors(errors)


def _expand_vars(doc: YamlDocument, env: Mapping[str, str]) -> list[RulesError]:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in string values in place; ``$${`` is a literal ``${``.

    Every reference to an unset variable is returned as an error (and left empty), so one run
    names them all instead of one per attempt."""
    errors: list[RulesError] = []

    def expand(text: str, path: tuple[Any, ...]) -> str:
        def sub(m: re.Match[str]) -> str:
            escaped, name, default = m.group(1), m.group(2), m.group(3)
            if escaped:
                return m.group(0)[1:]
            if name in env:
                return env[name]
            if default is not None:
                return default
            errors.append(ConfigError(f"environment variable {name} is not set (referenced as ${{{name}}})",
                                      doc.location(path)))
            return ""
        return _VAR_REF.sub(sub, text)

    def walk(value: Any, path: tuple[Any, ...]) -> Any:
        if isinstance(value, str):
            return expand(value, path) if "${" in value else value
        if isinstance(value, dict):
            for key in value:
                value[key] = walk(value[key], path + (key,))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                value[i] = walk(item, path + (i,))
        return value

    doc.value = walk(doc.value, ())
    return errors


def _keys(values: Iterable[str | None]) -> tuple[str, ...]:
    """Non-empty, stripped, de-duplicated, order kept."""
    out: dict[str, None] = {}
    for v in values:
        if v and v.strip():
            out[v.strip()] = None
    return tuple(out)


def _numbered(env: Mapping[str, str], base: str) -> list[str]:
    """Values of ``BASE_1 .. BASE_N`` ordered by number (gaps allowed)."""
    pattern = re.compile(re.escape(base) + r"_(\d+)$")
    found = [(int(m.group(1)), v) for k, v in env.items() if (m := pattern.match(k))]
    return [v for _, v in sorted(found)]


def _env_backends(env: Mapping[str, str]) -> dict[str, tuple[dict[str, Any], str]]:
    """Backends the environment sets up when no config file is used: each provider key variable
    (``OPENAI_API_KEY``, ``OPENAI_API_KEY_1..N``, ...) adds its provider's backend, and
    ``GCP_PROJECT_ID`` the Gemini CLI cloud-project one. (settings, the variable it came from)."""
    found: dict[str, tuple[dict[str, Any], str]] = {}
    for name, var in _PROVIDER_KEY_ENV.items():
        env_keys = _keys([env.get(var), *_numbered(env, var)])
        if env_keys:
            found[name] = ({"type": name, "api_keys": list(env_keys)}, var)
    if env.get("GCP_PROJECT_ID", "").strip():
        found["gemini-cli-cloud-project"] = ({"type": "gemini-cli-cloud-project"}, "GCP_PROJECT_ID")
    return found


def _apply_gemini_cli_env(raw: dict[str, dict[str, Any]], env: Mapping[str, str]) -> None:
    """``GCP_PROJECT_ID`` and ``GEMINI_CREDENTIALS_PATH`` fill those settings of the Gemini CLI
    backends (from the file or the environment) where they are left out."""
    project, creds = env.get("GCP_PROJECT_ID", "").strip(), env.get("GEMINI_CREDENTIALS_PATH", "").strip()
    for name, settings in raw.items():
        kind = _type_of(name, settings)
        if kind == "gemini-cli-cloud-project" and project:
            settings.setdefault("gcp_project_id", project)
        if kind in ("gemini-cli-cloud-project", "gemini-cli-oauth-personal") and creds:
            settings.setdefault("credentials_path", creds)


def _type_of(name: str, settings: Mapping[str, Any]) -> str | None:
    return settings.get("type") or (name if name in BACKEND_TYPES else None)


def _refuse_url_credentials(name: str, settings: Mapping[str, Any], doc: YamlDocument | None) -> None:
    """A backend URL with ``user:password@`` is refused: the connectors authenticate with
    ``api_key`` or ``headers``, and credentials kept in a URL end up wherever the URL is shown
    (aiohttp even refuses them beside an Authorization header). The error names the setting and
    its position but not the credentials: the excerpt of the file is redacted too."""
    for key in _URL_SETTINGS:
        value = settings.get(key)
        if not isinstance(value, str):
            continue
        try:
            parts = urlsplit(value)
        except ValueError:
            continue  # not a URL at all: the connector's first call says so
        if "@" not in parts.netloc:
            continue
        where = None
        if doc is not None:
            loc = doc.location(("backends", name, key))
            where = Location(loc.file, loc.line, loc.column, "\n".join(map(redact, loc.text.split("\n"))))
        raise ConfigError(f"backends.{name}.{key} holds credentials ({redact_url(value)}): credentials in a URL "
                          "are not supported", where,
                          "the URL without user:password@; put the key in api_key, or an Authorization "
                          "header in headers")


def _build_backend(name: str, settings: dict[str, Any], doc: YamlDocument | None) -> BackendConfig:
    kind = _type_of(name, settings)
    if kind is None:
        where = doc.location(("backends", name)) if doc else None
        raise ConfigError(f"backend {name!r} has no 'type'", where, "one of " + ", ".join(BACKEND_TYPES))
    _refuse_url_credentials(name, settings, doc)
    rest = {k: v for k, v in settings.items() if k not in ("type", "api_key", "api_keys", "base_url")}
    if isinstance(rest.get("headers"), dict):
        rest["headers"] = MappingProxyType(dict(rest["headers"]))
    if isinstance(rest.get("timeout"), dict):
        rest["timeout"] = MappingProxyType(dict(rest["timeout"]))
    if "models" in rest:
        rest["models"] = tuple(rest["models"])
    return BackendConfig(
        name=name,
        type=kind,
        api_keys=_keys([settings.get("api_key"), *(settings.get("api_keys") or ())]),
        base_url=settings.get("base_url") or settings.get("gemini_api_base_url"),
        options=MappingProxyType(rest),
    )


def _section(value: dict[str, Any], key: str) -> dict[str, Any]:
    return value.get(key) or {}


def _relative(base_dir: str, path: str) -> str:
    return os.path.normpath(os.path.join(base_dir, os.path.expanduser(path)))


def _state_url(state: Mapping[str, Any], env: Mapping[str, str], doc: YamlDocument | None) -> str:
    """``state.url`` (``${REDIS_URL}`` in it already expanded), else ``$REDIS_URL``, else the local
    default; checked for a Redis scheme here, without connecting (``check`` never connects)."""
    url = state.get("url") or env.get("REDIS_URL") or DEFAULT_REDIS_URL
    if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
        where = doc.location(("state", "url")) if doc is not None and state.get("url") else None
        raise ConfigError(f"state.url {redact_url(url)!r} is not a Redis URL", where,
                          "redis://host:6379/0, rediss://host:6380/0 (TLS) or unix:///path/to/redis.sock")
    return url


_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")  # a PostgreSQL identifier that needs no quoting


def _usage_config(usage: Mapping[str, Any], base_dir: str, doc: YamlDocument | None) -> UsageConfig:
    """``usage``: SQLite (``path``) or PostgreSQL (``url``, ``schema``), checked without connecting
    (the JSON schema checks each value's form; here, how they go together)."""
    if usage.get("url") and usage.get("path"):
        raise ConfigError("usage: give either path (SQLite) or url (PostgreSQL), not both",
                          doc.location(("usage", "url")) if doc else None)
    if usage.get("schema") and not usage.get("url"):
        raise ConfigError("usage.schema names a PostgreSQL schema: it needs usage.url",
                          doc.location(("usage", "schema")) if doc else None)
    url, schema = usage.get("url"), usage.get("schema")
    if url and not url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(f"usage.url {safe_url(url)!r} is not a PostgreSQL URL",
                          doc.location(("usage", "url")) if doc else None,
                          "postgresql://user@host:5432/database (a file for SQLite goes in usage.path)")
    if schema and not _SCHEMA_NAME.match(schema):
        raise ConfigError(f"usage.schema {schema!r}: letters, digits and _ only, not starting with a digit, "
                          "at most 63 characters", doc.location(("usage", "schema")) if doc else None)
    return UsageConfig(path=_relative(base_dir, usage["path"]) if usage.get("path") else None,
                       retention_days=usage.get("retention_days", 30), url=usage.get("url") or None,
                       schema=usage.get("schema") or None, queue_size=usage.get("queue_size", 20_000))


def load_config(path: str | None = None, env: Mapping[str, str] = os.environ) -> AppConfig:
    """Load and validate the config.

    ``path`` None: use ``$LLM_PROXY_CONFIG`` if set (then it must exist), else ``./config.yaml`` if it
    exists, else the embedded defaults (one ``echo`` backend, no client keys). An explicit path that
    does not exist is a :class:`ConfigError`. Schema violations raise ``SchemaError``/``RulesErrors``;
    all of them are :class:`~dsl.errors.RulesError`.
    """
    file, explicit = _resolve_path(path, env)
    doc: YamlDocument | None = None
    if file is not None:
        if explicit and not os.path.exists(file):
            raise ConfigError(f"config file not found: {file}")
        doc = _read_document(file)
        problems: list[RulesError] = []
        try:
            validate(doc, "config")
        except RulesError as exc:
            problems += _errors_of(exc)
        problems += _expand_vars(doc, env)  # a schema error and every missing ${VAR}, together
        _raise_all(problems)
    value: dict[str, Any] = (doc.value if doc and isinstance(doc.value, dict) else {})
    base_dir = os.path.dirname(os.path.abspath(file)) if file else os.getcwd()

    # One rule for the environment: a config file says which backends exist (it reads the
    # environment only through its ${VAR} references); without a file, the embedded defaults run
    # (echo answers) and each provider key variable adds its provider's backend beside it.
    raw_backends = {name: dict(s or {}) for name, s in (value.get("backends") or {}).items()}
    sources: dict[str, str] = {}
    for name in raw_backends:
        if doc is not None:
            loc = doc.location(("backends", name))
            sources[name] = f"{os.path.basename(loc.file)}:{loc.line}"
    if doc is None or not raw_backends:
        raw_backends["echo"] = {"type": "echo"}
        sources["echo"] = "embedded default"
    if doc is None:
        for name, (settings, var) in _env_backends(env).items():
            raw_backends[name], sources[name] = settings, var
    _apply_gemini_cli_env(raw_backends, env)
    backends = {name: _build_backend(name, s, doc) for name, s in raw_backends.items()}

    default_backend = value.get("default_backend") or next(iter(backends))
    if default_backend not in backends:
        raise ConfigError(f"default_backend {default_backend!r} is not a configured backend",
                          doc.location(("default_backend",)) if doc else None,
                          "one of " + ", ".join(backends))

    auth = _section(value, "auth")
    auth_keys = _keys([*(auth.get("api_keys") or ()), *env.get("LLM_PROXY_API_KEYS", "").split(",")])

    command_prefix = value.get("command_prefix", "!/")
    if "LLM_PROXY_COMMAND_PREFIX" in env:
        command_prefix = env["LLM_PROXY_COMMAND_PREFIX"]
        if not _PREFIX_RE.match(command_prefix):
            raise ConfigError(f"LLM_PROXY_COMMAND_PREFIX={command_prefix!r} must be 1-10 characters without spaces")

    session = _section(value, "session")
    repair_enabled = session.get("tool_call_repair_enabled", True)
    if "TOOL_CALL_REPAIR_ENABLED" in env:
        repair_enabled = parse_bool(env["TOOL_CALL_REPAIR_ENABLED"], "TOOL_CALL_REPAIR_ENABLED")
    repair_cap = session.get("tool_call_repair_buffer_cap_bytes", 65536)
    if "TOOL_CALL_REPAIR_BUFFER_CAP_BYTES" in env:
        repair_cap = _parse_int(env["TOOL_CALL_REPAIR_BUFFER_CAP_BYTES"], "TOOL_CALL_REPAIR_BUFFER_CAP_BYTES")
    session_cfg = SessionConfig(
        repository=session.get("repository", "in_memory"),
        path=_relative(base_dir, session.get("path", "sessions")),
        ttl_seconds=float(session.get("ttl_seconds", 86400)),
        max_sessions=session.get("max_sessions", 10_000),
        max_history=session.get("max_history", 100),
        tool_call_repair_enabled=repair_enabled,
        tool_call_repair_buffer_cap_bytes=repair_cap,
    )

    loop = LoopDetectionConfig(**_section(value, "loop_detection"))
    if loop.min_pattern_length > loop.max_pattern_length:
        raise ConfigError(
            f"loop_detection: min_pattern_length ({loop.min_pattern_length}) is greater than "
            f"max_pattern_length ({loop.max_pattern_length})",
            doc.location(("loop_detection", "min_pattern_length")) if doc else None)
    tcl = dict(_section(value, "tool_call_loop_detection"))
    if "ttl_seconds" in tcl:
        tcl["ttl_seconds"] = float(tcl["ttl_seconds"])
    tool_loop = ToolCallLoopDetectionConfig(**tcl)

    usage = _section(value, "usage")
    state = _section(value, "state")
    logging_section = _section(value, "logging")
    return AppConfig(
        backends=backends,
        default_backend=default_backend,
        auth_keys=auth_keys,
        admin_keys=_keys(auth.get("admin_keys") or ()),
        routes_dir=_relative(base_dir, value.get("routes_dir", "routes.d")),
        proxy_timeout=float(value.get("proxy_timeout", 120)),
        command_prefix=command_prefix,
        max_body_bytes=value.get("max_body_bytes", 10 * 1024 * 1024),
        interactive_commands=value.get("interactive_commands", True),
        session=session_cfg,
        loop_detection=loop,
        tool_call_loop_detection=tool_loop,
        usage=_usage_config(usage, base_dir, doc),
        logging=LoggingConfig(level=str(logging_section.get("level", "INFO")).upper(),
                              format=logging_section.get("format", "text")),
        server=ServerConfig(**{k: (float(v) if k.endswith("timeout") else v)
                               for k, v in _section(value, "server").items()}),
        state=StateConfig(store=state.get("store", "memory"), url=_state_url(state, env, doc),
                          prefix=state.get("prefix", "lip"), on_unavailable=state.get("on_unavailable", "fail_open"),
                          timeout_ms=state.get("timeout_ms", 50)),
        prices=MappingProxyType({m: MappingProxyType(dict(p)) for m, p in (value.get("prices") or {}).items()}),
        catalog=MappingProxyType({m: MappingProxyType(dict(c)) for m, c in (value.get("catalog") or {}).items()}),
        source_path=os.path.abspath(file) if file else None,
        metrics_auth=_section(value, "metrics").get("auth", "admin"),
        health_auth=_section(value, "health").get("auth", "admin"),
        backend_sources=MappingProxyType(sources),
    )


@dataclass(frozen=True, slots=True)
class ConfigCheck:
    """What ``check`` learns from the config, also when it is broken: the errors, and enough of it
    (the backend names, the rules directory) to go on and check the rules in the same run."""

    config: AppConfig | None
    errors: list[RulesError]
    routes_dir: str | None
    backends: tuple[str, ...]


def load_config_collecting(path: str | None = None, env: Mapping[str, str] = os.environ) -> ConfigCheck:
    """:func:`load_config` for ``check``: every error instead of the first. When the config cannot
    be built, ``routes_dir`` and the backend names are read from the file as written, so rule
    errors are reported in the same run."""
    try:
        config = load_config(path, env)
    except RulesError as exc:
        errors = _errors_of(exc)
    else:
        return ConfigCheck(config, [], config.routes_dir, tuple(config.backends))
    file, _ = _resolve_path(path, env)
    routes_dir, backends = None, ()
    if file is not None and os.path.isfile(file):
        try:
            doc = _read_document(file)
        except RulesError:
            doc = None
        value = doc.value if doc is not None and isinstance(doc.value, dict) else {}
        base_dir = os.path.dirname(os.path.abspath(file))
        if isinstance(value.get("routes_dir", "routes.d"), str):
            routes_dir = _relative(base_dir, value.get("routes_dir", "routes.d"))
        raw = value.get("backends")
        backends = tuple(str(name) for name in raw) if isinstance(raw, dict) else ()
    return ConfigCheck(None, errors, routes_dir, backends)
