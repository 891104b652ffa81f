"""OpenAI Chat Completions, and everything that speaks it: OpenRouter, vLLM, Ollama, llama.cpp, LM Studio."""

from __future__ import annotations

from typing import AsyncIterator

from router.wire import openai
from router.wire.canonical import ChatRequest, ChatResponse, StreamEvent

from .base import ErrorClass
from .http import HttpBackend
from .keys import KeyChoice
from .settings import ConnectorSettings


class OpenAIBackend(HttpBackend):
    default_base_url = "https://api.openai.com/v1"
    codec = openai

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
        response, _key = await self.call("POST", f"{self.base_url}/chat/completions", body, keys=keys)
        return self.decode(await self.read_json(response))

    async def stream(self, request: ChatRequest, keys: KeyChoice | None = None) -> AsyncIterator[StreamEvent]:
        body = self.codec.encode_request(request)
        response, _key = await self.call("POST", f"{self.base_url}/chat/completions", body, keys=keys)
        async for event in self.events(response):
            yield event

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
    """Any OpenAI-compatible server at ``base_url``; a key is optional (local servers have none)."""

    default_base_url = "http://127.0.0.1:8000/v1"
