"""OpenAI Chat Completions, and everything that speaks it: OpenRouter, vLLM, Ollama, llama.cpp, LM Studio;
and OpenAI's Responses API (``api: responses`` on an ``openai`` or ``openai-compatible`` backend)."""

from __future__ import annotations

from typing import AsyncIterator

import aiohttp

from router.wire import openai, responses
from router.wire.canonical import ChatRequest, ChatResponse, StreamEvent

from .base import ErrorClass
from .http import HttpBackend, with_api_version
from .keys import KeyChoice
from .settings import ConnectorSettings


class OpenAIBackend(HttpBackend):
    default_base_url = "https://api.openai.com/v1"
    codec = openai
    path = "/chat/completions"  # the endpoint under base_url that the codec's wire is served at

    @classmethod
    def fit_base_url(cls, url: str) -> str:
        """OpenAI-style servers put the version in the base URL: added when it is left out."""
        return with_api_version(url)

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"} if key else {}

    def error_class(self, status: int, body: bytes) -> ErrorClass | None:
        """OpenAI's error codes (``error.code``): ``context_length_exceeded`` and
        ``content_policy_violation`` (Azure's content filter says ``content_filter``)."""
        if status == 400 and b"context_length_exceeded" in body:
            return "context_window"
        if status == 400 and (b"content_policy_violation" in body or b'"content_filter"' in body):
            return "content_policy"
        return None

    async def complete(self, request: ChatRequest, keys: KeyChoice | None = None) -> ChatResponse:
        body = self.codec.encode_request(request)
        response, _key = await self.call("POST", f"{self.base_url}{self.path}", body, keys=keys, model=request.model)
        return self.decode(await self.read_json(response))

    def stream(self, request: ChatRequest, keys: KeyChoice | None = None) -> AsyncIterator[StreamEvent]:
        async def open_response() -> aiohttp.ClientResponse:
            body = self.codec.encode_request(request)
            return (await self.call("POST", f"{self.base_url}{self.path}", body, keys=keys, model=request.model))[0]
        return self.events(open_response)

    async def fetch_models(self) -> list[str]:
        return await self.model_ids(f"{self.base_url}/models", "data", "id")


class OpenRouterBackend(OpenAIBackend):
    """OpenRouter: OpenAI wire plus its attribution headers."""

    default_base_url = "https://openrouter.ai/api/v1"

    def __init__(self, settings: ConnectorSettings) -> None:
        super().__init__(settings)
        options = settings.options
        self.extra_headers.setdefault("HTTP-Referer", str(options.get("referer") or "https://github.com/llm-interactive-proxy"))
        self.extra_headers.setdefault("X-Title", str(options.get("title") or "llm-interactive-proxy"))


class OpenAICompatibleBackend(OpenAIBackend):
    """Any OpenAI-compatible server at ``base_url``; a key is optional (local servers have none).
    ``base_url`` is required (the config refuses the type without it): there is no default
    address for "some server"."""

    def __init__(self, settings: ConnectorSettings) -> None:
        if not settings.base_url:
            raise ValueError(f"backend {settings.name!r}: type openai-compatible needs base_url")
        super().__init__(settings)


class OpenAIResponsesBackend(OpenAIBackend):
    """OpenAI's Responses API (``POST {base_url}/responses``): models served only there are
    reachable from every front end, and a Responses client (Codex) reaches OpenAI losing nothing
    (reasoning items, custom and hosted tools pass through: ``router/wire/responses.py``)."""

    codec = responses
    path = "/responses"


class OpenAICompatibleResponsesBackend(OpenAIResponsesBackend):
    """A Responses API server at ``base_url`` (vLLM, another proxy); a key is optional, and
    ``base_url`` is required like for every openai-compatible server."""

    def __init__(self, settings: ConnectorSettings) -> None:
        if not settings.base_url:
            raise ValueError(f"backend {settings.name!r}: type openai-compatible needs base_url")
        super().__init__(settings)
