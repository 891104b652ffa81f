"""Anthropic Messages API."""

from __future__ import annotations

from typing import AsyncIterator

import aiohttp

from router.wire import anthropic
from router.wire.canonical import ChatRequest, ChatResponse, StreamEvent

from .base import ErrorKind
from .http import HttpBackend, classify_status, without_api_version
from .keys import KeyChoice

API_VERSION = "2023-06-01"


class AnthropicBackend(HttpBackend):
    default_base_url = "https://api.anthropic.com"
    codec = anthropic

    @classmethod
    def fit_base_url(cls, url: str) -> str:
        """The connector adds ``/v1/...`` itself: a base URL ending in ``/v1`` loses it."""
        return without_api_version(url, "/v1")

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"x-api-key": key, "anthropic-version": API_VERSION}

    def classify(self, status: int, body: bytes) -> ErrorKind:
        if b"overloaded_error" in body:
            return "overloaded"
        return classify_status(status)

    async def complete(self, request: ChatRequest, keys: KeyChoice | None = None) -> ChatResponse:
        response, _key = await self.call("POST", f"{self.base_url}/v1/messages", self.codec.encode_request(request),
                                         keys=keys, model=request.model)
        return self.decode(await self.read_json(response))

    def stream(self, request: ChatRequest, keys: KeyChoice | None = None) -> AsyncIterator[StreamEvent]:
        async def open_response() -> aiohttp.ClientResponse:
            return (await self.call("POST", f"{self.base_url}/v1/messages", self.codec.encode_request(request),
                                    keys=keys, model=request.model))[0]
        return self.events(open_response)

    async def fetch_models(self) -> list[str]:
        return await self.model_ids(f"{self.base_url}/v1/models", "data", "id")
