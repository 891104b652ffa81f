"""OpenAI Chat Completions, and everything that speaks it: OpenRouter, vLLM, Ollama, llama.cpp, LM Studio."""

from __future__ import annotations

from typing import AsyncIterator

import aiohttp

from router.wire import openai
from router.wire.canonical import ChatRequest, ChatResponse, StreamEvent

from .http import HttpBackend
from .keys import KeyChoice
from .settings import ConnectorSettings


class OpenAIBackend(HttpBackend):
    default_base_url = "https://api.openai.com/v1"
    codec = openai

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"} if key else {}

    async def complete(self, request: ChatRequest, keys: KeyChoice | None = None) -> ChatResponse:
        body = self.codec.encode_request(request)
        response, _key = await self.call("POST", f"{self.base_url}/chat/completions", body, keys=keys)
        return self.decode(await self.read_json(response))

    def stream(self, request: ChatRequest, keys: KeyChoice | None = None) -> AsyncIterator[StreamEvent]:
        async def open_response() -> aiohttp.ClientResponse:
            body = self.codec.encode_request(request)
            return (await self.call("POST", f"{self.base_url}/chat/completions", body, keys=keys))[0]
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
    """Any OpenAI-compatible server at ``base_url``; a key is optional (local servers have none)."""

    default_base_url = "http://127.0.0.1:8000/v1"
