"""Anthropic Messages API."""

from __future__ import annotations

from typing import AsyncIterator

import aiohttp

from router.wire import anthropic
from router.wire.canonical import ChatRequest, ChatResponse, StreamEvent

from .base import BackendError, ErrorClass, ErrorKind
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

    def error_class(self, status: int, body: bytes) -> ErrorClass | None:
        """Anthropic says ``prompt is too long: N tokens > M maximum`` (an invalid_request_error),
        and blocks output with ``Output blocked by content filtering policy``."""
        if status == 400 and b"prompt is too long" in body:
            return "context_window"
        if status == 400 and b"content filtering policy" in body:
            return "content_policy"
        return None

    def refused(self, reply: ChatResponse) -> None:
        """A whole reply that is only a refusal (``stop_reason: refusal``, nothing said) fails over
        like a policy error: the client has received nothing yet."""
        if reply.finish_reason == "content_filter" and not reply.text().strip() and not reply.tool_calls():
            raise BackendError("bad_request", "the provider refused the request (stop_reason: refusal)", status=400,
                               backend=self.name, error_class="content_policy")

    async def complete(self, request: ChatRequest, keys: KeyChoice | None = None) -> ChatResponse:
        response, _key = await self.call("POST", f"{self.base_url}/v1/messages", self.codec.encode_request(request),
                                         keys=keys, model=request.model)
        reply = self.decode(await self.read_json(response))
        self.refused(reply)
        return reply

    def stream(self, request: ChatRequest, keys: KeyChoice | None = None) -> AsyncIterator[StreamEvent]:
        async def open_response() -> aiohttp.ClientResponse:
            return (await self.call("POST", f"{self.base_url}/v1/messages", self.codec.encode_request(request),
                                    keys=keys, model=request.model))[0]
        return self.events(open_response)

    async def fetch_models(self) -> list[str]:
        return await self.model_ids(f"{self.base_url}/v1/models", "data", "id")
