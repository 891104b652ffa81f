"""The fake provider's OpenAI Chat Completions side: error shapes, auth failure, routes
(``POST /v1/chat/completions``, and ``GET /v1/models``, which Anthropic clients share)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .anthropic import anthropic_models
from router.wire import openai as openai_wire

from .recording import RECORD, RecordedRequest, json_response
from .wire_format import WireFormat

_OPENAI_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Country, region, or territory not supported"),
    404: ("invalid_request_error", "model_not_found", "The model `{model}` does not exist or you do not have access to it."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for {model} on requests per min (RPM): Limit 3, Used 3, Requested 1."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    503: ("server_error", None, "The engine is currently overloaded, please try again later"),
}


def openai_error(status: int, message: str | None = None, model: str = "", code: str | None = "") -> dict[str, Any]:
    """``{"error": {"message", "type", "param", "code"}}`` as api.openai.com sends it."""
    kind, default_code, text = _OPENAI_ERRORS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None, f"HTTP {status}"))
    return {"error": {"message": message or text.format(model=model), "type": kind, "param": None,
                      "code": default_code if code == "" else code}}


def auth_error(key: str | None) -> web.Response:
    """api.openai.com's 401 for a missing or wrong key."""
    message = ("You didn't provide an API key. You need to provide your API key in an Authorization "
               "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)." if not key else
               f"Incorrect API key provided: {_mask(key)}. You can find your API key at "
               "https://platform.openai.com/account/api-keys.")
    return json_response(openai_error(401, message, code=None if not key else "invalid_api_key"), 401)


def _mask(key: str) -> str:
    """OpenAI shows only the ends of a wrong key."""
    return key if len(key) <= 8 else f"{key[:3]}{'*' * 12}{key[-4:]}"


class OpenAIRoutes:
    """Route handlers of the OpenAI side (mixed into :class:`fakes.provider.FakeProvider`,
    on top of the engine in :mod:`fakes.core`: ``_generate``, ``_auth_error``, ``models``)."""

    def _add_openai_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/chat/completions", self._openai_chat)
        router.add_get("/v1/models", self._list_models)

    async def _list_models(self, request: web.Request) -> web.Response:
        """``GET /v1/models`` is shared: Anthropic clients send ``x-api-key``/``anthropic-version``."""
        is_anthropic = "x-api-key" in request.headers or "anthropic-version" in request.headers
        family = "anthropic" if is_anthropic else "openai"
        request[RECORD].endpoint = "models"
        denied = self._auth_error(request, family)
        if denied is not None:
            return denied
        if is_anthropic:
            return json_response(anthropic_models(self.models))
        data = [{"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "fake"} for m in self.models]
        return json_response({"object": "list", "data": data})

    async def _openai_chat(self, request: web.Request) -> web.StreamResponse:
        record: RecordedRequest = request[RECORD]
        body = record.body if isinstance(record.body, dict) else {}
        options = body.get("stream_options") if isinstance(body.get("stream_options"), dict) else {}
        return await self._generate(request, "openai", str(body.get("model") or ""), body.get("stream") is True,
                                    include_usage=options.get("include_usage") is True)


FORMAT = WireFormat(
    "openai", error=lambda status, message, model, _retry: openai_error(status, message, model),
    auth_error=auth_error, decode=lambda body, _model, _stream: openai_wire.decode_request(body),
    encode=lambda response, _keep_ids: openai_wire.encode_response(response),
    stream_encoder=lambda include_usage: openai_wire.StreamEncoder(include_usage=include_usage),
    retry_after_header=True, response_prefix="chatcmpl-fake",
)
