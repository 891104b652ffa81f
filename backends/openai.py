"""OpenAI Chat Completions, and everything that speaks it: OpenRouter, vLLM, Ollama, llama.cpp, LM Studio."""

from __future__ import annotations

from typing import AsyncIterator

from router.wire.canonical import ChatRequest, ChatResponse, StreamEvent
from router.config import AppConfig, BackendConfig
from router.wire import openai as wire

from .http import HttpBackend, decode_or_fail, stream_events


class OpenAIBackend(HttpBackend):
    default_base_url = "https://api.openai.com/v1"

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"} if key else {}

    async def complete(self, request: ChatRequest) -> ChatResponse:
        body = wire.encode_request(request)
        response, _key = await self.call("POST", f"{self.base_url}/chat/completions", body)
        return decode_or_fail(self, wire.decode_response, await self.read_json(response))

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        body = wire.encode_request(request)
        response, _key = await self.call("POST", f"{self.base_url}/chat/completions", body)
        async for event in stream_events(self, response, wire.StreamDecoder()):
            yield event

    async def fetch_models(self) -> list[str]:
        return await self.model_ids(f"{self.base_url}/models", "data", "id")


class OpenRouterBackend(OpenAIBackend):
    """OpenRouter: OpenAI wire plus its attribution headers."""

    default_base_url = "https://openrouter.ai/api/v1"

    def __init__(self, cfg: BackendConfig, app: AppConfig) -> None:
        super().__init__(cfg, app)
        self.extra_headers.setdefault("HTTP-Referer", str(cfg.options.get("referer") or "https://github.com/llm-interactive-proxy"))
        self.extra_headers.setdefault("X-Title", str(cfg.options.get("title") or "llm-interactive-proxy"))


class OpenAICompatibleBackend(OpenAIBackend):
    """Any OpenAI-compatible server at ``base_url``; a key is optional (local servers have none)."""

    default_base_url = "http://127.0.0.1:8000/v1"
