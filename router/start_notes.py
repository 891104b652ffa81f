"""What the server says at start besides its banner: where each backend came from, and a loud
warning when ``--disable-auth`` opens everything. Logged (so ``--log-format json`` gets them as
JSON lines like every other record), one record per line."""

from __future__ import annotations

import logging

from .config import AppConfig
from .http.local_guard import is_loopback_name
from .record.logs import flush_logs

log = logging.getLogger("llm_proxy.start")  # the banner's logger (router/banner.py): shown at any --log-level

# What --disable-auth opens besides the chat endpoints, for the warning and README.
OPERATOR_ENDPOINTS = "/v2/usage/stats, /v2/usage/recent, /v2/audit/logs, POST /v2/admin/reload, /metrics, /health/backends"


def backend_origins(config: AppConfig) -> list[str]:
    """``backend openai (openai) from OPENAI_API_KEY``: one line per backend, in config order."""
    sources = config.backend_sources
    return [f"backend {name} ({backend.type}) from {sources.get(name, 'the configuration')}"
            for name, backend in config.backends.items()]


def disable_auth_warning(host: str, port: int) -> str:
    """The warning ``--disable-auth`` gets: what it opens, to whom."""
    who = (f"Anyone on every network this machine is on ({host} is not a loopback address)"
           if not is_loopback_name(host)
           else "Every program on this machine, and web pages through DNS rebinding (the local-mode "
                "Host/Origin checks are off too),")
    return (f"--disable-auth: AUTHENTICATION IS OFF on http://{host}:{port}. {who} can send chats "
            f"through your provider keys and use the operator endpoints ({OPERATOR_ENDPOINTS}) without a key. "
            "Configure auth.api_keys instead unless this is a throwaway test.")


def log_start_notes(config: AppConfig, host: str, port: int, disable_auth: bool) -> None:
    log.setLevel(logging.INFO)
    for line in backend_origins(config):
        log.info(line)
    if disable_auth:
        log.warning(disable_auth_warning(host, port))
    flush_logs()  # before the banner (info records are written in batches)
