"""Connector settings → connector instances, by ``type``."""

from __future__ import annotations

from typing import Callable, Mapping

from .base import Backend
from .cooldowns import CooldownStore
from .anthropic import AnthropicBackend
from .echo import EchoBackend
from .gemini import GeminiBackend
from .gemini_cli import CodeAssistBackend
from .openai import (
    OpenAIBackend, OpenAICompatibleBackend, OpenAICompatibleResponsesBackend, OpenAIResponsesBackend, OpenRouterBackend,
)
from .settings import ConnectorSettings

Builder = Callable[[ConnectorSettings], Backend]


def _echo(settings: ConnectorSettings) -> Backend:
    return EchoBackend(settings.name, settings.models or ("echo",))


def _by_api(chat: Builder, responses: Builder) -> Builder:
    """``api: responses`` picks the Responses connector, anything else (``chat``, unset) Chat Completions."""
    return lambda settings: (responses if settings.options.get("api") == "responses" else chat)(settings)


BUILDERS: dict[str, Builder] = {
    "echo": _echo,
    "openai": _by_api(OpenAIBackend, OpenAIResponsesBackend),
    "openrouter": OpenRouterBackend,
    "openai-compatible": _by_api(OpenAICompatibleBackend, OpenAICompatibleResponsesBackend),
    "anthropic": AnthropicBackend,
    "gemini": GeminiBackend,
    "gemini-cli-oauth-personal": lambda settings: CodeAssistBackend(settings, cloud_project=False),
    "gemini-cli-cloud-project": lambda settings: CodeAssistBackend(settings, cloud_project=True),
}


def build_backends(settings: Mapping[str, ConnectorSettings],
                   cooldowns: CooldownStore | None = None) -> dict[str, Backend]:
    """One connector per backend (the server builds ``settings`` from its config:
    ``router.config.connector_settings``). Unknown types were already rejected by the schema.
    ``cooldowns``: one store for every connector's key cooldowns (else each keeps its own)."""
    built = {name: BUILDERS[one.type](one) for name, one in settings.items()}
    if cooldowns is not None:
        for backend in built.values():
            backend.share_cooldowns(cooldowns)
    return built
