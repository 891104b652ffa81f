"""Anthropic Messages API."""

from __future__ import annotations

from typing import AsyncIterator

from router.wire.canonical import ChatRequest, ChatResponse, StreamEvent
from router.wire import anthropic as wire

from .base import ErrorKind
from .http import HttpBackend, classify_status, decode_or_fail, stream_events

API_VERSION = "2023-06-01"


class AnthropicBackend(HttpBackend):
    default_base_url = "https://api.anthropic.com"

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"x-api-key": key, "anthropic-version": API_VERSION}

    def classify(self, status: int, body: bytes) -> ErrorKind:
        if b"overloaded_error" in body:
            return "overloaded"
        return classify_status(status)

    async def complete(self, request: ChatRequest) -> ChatResponse:
        response, _key = await self.call("POST", f"{self.base_url}/v1/messages", wire.encode_request(request))
        return decode_or_fail(self, wire.decode_response, await self.read_json(response))

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        response, _key = await self.call("POST", f"{self.base_url}/v1/messages", wire.encode_request(request))
        async for event in stream_events(self, response, wire.StreamDecoder()):
            yield event

    async def fetch_models(self) -> list[str]:
        return await self.model_ids(f"{self.base_url}/v1/models", "data", "id")
