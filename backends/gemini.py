"""Gemini API with an API key (Google AI Studio)."""

from __future__ import annotations

from typing import Any, AsyncIterator
from urllib.parse import quote

import aiohttp

from router.wire import gemini
from router.wire.canonical import ChatRequest, ChatResponse, StreamEvent

from .base import BackendError, ErrorClass, ErrorKind
from .http import HttpBackend, classify_status, without_api_version
from .keys import KeyChoice


class GeminiBackend(HttpBackend):
    default_base_url = "https://generativelanguage.googleapis.com"
    codec = gemini

    @classmethod
    def fit_base_url(cls, url: str) -> str:
        """The connector adds ``/v1beta/...`` itself: a base URL ending in a version loses it."""
        return without_api_version(url, "/v1beta", "/v1alpha", "/v1")

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"x-goog-api-key": key}

    def classify(self, status: int, body: bytes) -> ErrorKind:
        if status == 400 and b"API_KEY_INVALID" in body:  # Gemini answers a bad key with 400, not 401
            return "auth"
        return classify_status(status)

    def error_class(self, status: int, body: bytes) -> ErrorClass | None:
        """Gemini answers a prompt over the model's limit with a 400 ``INVALID_ARGUMENT`` that
        counts tokens ("The input token count (N) exceeds the maximum number of tokens allowed (M)")."""
        if status == 400 and b"INVALID_ARGUMENT" in body and b"token" in body.lower() and (
                b"exceeds the maximum" in body or b"token count" in body):
            return "context_window"
        return None

    def blocked(self, frame: Any) -> Any:
        """A prompt blocked on safety comes back as a 200 whose ``promptFeedback.blockReason`` is
        set and which has no candidates: a policy error, before the client got anything."""
        if isinstance(frame, dict) and not frame.get("candidates"):
            feedback = frame.get("promptFeedback")
            reason = feedback.get("blockReason") if isinstance(feedback, dict) else None
            if reason:
                raise BackendError("bad_request", f"the provider blocked the prompt (blockReason: {reason})",
                                   status=400, backend=self.name, error_class="content_policy")
        return frame

    def _url(self, model: str, action: str) -> str:
        return f"{self.base_url}/v1beta/models/{quote(model.removeprefix('models/'), safe='-._')}:{action}"

    async def complete(self, request: ChatRequest, keys: KeyChoice | None = None) -> ChatResponse:
        response, _key = await self.call("POST", self._url(request.model, "generateContent"),
                                         self.codec.encode_request(request), keys=keys, model=request.model)
        reply = self.decode(self.blocked(await self.read_json(response)))
        reply.model = reply.model or request.model
        return reply

    def stream(self, request: ChatRequest, keys: KeyChoice | None = None) -> AsyncIterator[StreamEvent]:
        async def open_response() -> aiohttp.ClientResponse:
            return (await self.call("POST", self._url(request.model, "streamGenerateContent"),
                                    self.codec.encode_request(request), params={"alt": "sse"}, keys=keys, model=request.model))[0]
        return self.events(open_response, self.blocked)

    async def fetch_models(self) -> list[str]:
        names = await self.model_ids(f"{self.base_url}/v1beta/models", "models", "name")
        return [name.removeprefix("models/") for name in names]
