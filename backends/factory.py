"""Configured backends → connector instances, by ``type``."""

from __future__ import annotations

from typing import Callable

from router.config import AppConfig, BackendConfig

from .base import Backend
from .anthropic import AnthropicBackend
from .echo import EchoBackend
from .gemini import GeminiBackend
from .gemini_cli import CodeAssistBackend
from .openai import OpenAIBackend, OpenAICompatibleBackend, OpenRouterBackend

Builder = Callable[[BackendConfig, AppConfig], Backend]


def _echo(cfg: BackendConfig, app: AppConfig) -> Backend:
    return EchoBackend(cfg.name, tuple(cfg.models) or ("echo",))


def _http(cls: type) -> Builder:
    return lambda cfg, app: cls(cfg, app)


BUILDERS: dict[str, Builder] = {
    "echo": _echo,
    "openai": _http(OpenAIBackend),
    "openrouter": _http(OpenRouterBackend),
    "openai-compatible": _http(OpenAICompatibleBackend),
    "anthropic": _http(AnthropicBackend),
    "gemini": _http(GeminiBackend),
    "gemini-cli-oauth-personal": lambda cfg, app: CodeAssistBackend(cfg, app, cloud_project=False),
    "gemini-cli-cloud-project": lambda cfg, app: CodeAssistBackend(cfg, app, cloud_project=True),
}


def build_backends(config: AppConfig) -> dict[str, Backend]:
    """One connector per configured backend. Unknown types were already rejected by the schema."""
    out: dict[str, Backend] = {}
    for name, cfg in config.backends.items():
        out[name] = BUILDERS[cfg.type](cfg, config)
    return out
