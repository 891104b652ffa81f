"""Configured backends → connector instances, by ``type``."""

from __future__ import annotations

from typing import Callable

from router.config import AppConfig, BackendConfig

from .base import Backend
from .echo import EchoBackend

Builder = Callable[[BackendConfig, AppConfig], Backend]


def _echo(cfg: BackendConfig, app: AppConfig) -> Backend:
    return EchoBackend(cfg.name, tuple(cfg.models) or ("echo",))


BUILDERS: dict[str, Builder] = {"echo": _echo}


def build_backends(config: AppConfig) -> dict[str, Backend]:
    """One connector per configured backend. Unknown types were already rejected by the schema."""
    out: dict[str, Backend] = {}
    for name, cfg in config.backends.items():
        builder = BUILDERS.get(cfg.type)
        if builder is None:
            from .unavailable import UnavailableBackend

            out[name] = UnavailableBackend(name, cfg.type)
        else:
            out[name] = builder(cfg, config)
    return out
