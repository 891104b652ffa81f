"""The fake provider's Anthropic Messages side: error shapes, auth failure, the model listing
shape, the ``POST /v1/messages`` route."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from router.wire import anthropic as anthropic_wire
from router.wire.canonical import ChatRequest
from router.wire.codec import CodecError

from .recording import RECORD, RecordedRequest, json_response
from .wire_format import WireFormat

_ANTHROPIC_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."), 401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low to access the Anthropic API."),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "model: {model}"), 413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "This request would exceed the rate limit for your organization."),
    500: ("api_error", "Internal server error"), 503: ("overloaded_error", "Overloaded"),
    504: ("timeout_error", "Request timed out"), 529: ("overloaded_error", "Overloaded"),
}


def anthropic_error(status: int, message: str | None = None, model: str = "") -> dict[str, Any]:
    """``{"type": "error", "error": {"type", "message"}, "request_id"}`` as api.anthropic.com sends it."""
    kind, text = _ANTHROPIC_ERRORS.get(status, ("api_error" if status >= 500 else "invalid_request_error", f"HTTP {status}"))
    return {"type": "error", "error": {"type": kind, "message": message or text.format(model=model)},
            "request_id": f"req_fake{uuid.uuid4().hex[:20]}"}


def auth_error(key: str | None) -> web.Response:
    """api.anthropic.com's 401 for a missing or wrong ``x-api-key``."""
    message = "x-api-key header is required" if not key else "invalid x-api-key"
    return json_response(anthropic_error(401, message), 401)


def anthropic_models(models: list[str]) -> dict[str, Any]:
    """``GET /v1/models`` as api.anthropic.com answers it."""
    data = [{"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"} for m in models]
    return {"data": data, "has_more": False, "first_id": models[0] if models else None,
            "last_id": models[-1] if models else None}


def decode(body: Any) -> ChatRequest:
    """The request as api.anthropic.com reads it, refusing what it refuses beyond the codec's
    checks: tool blocks in a request that declares no tools."""
    if isinstance(body, dict) and not body.get("tools") and any(
            isinstance(block, dict) and block.get("type") in ("tool_use", "tool_result")
            for message in body.get("messages") or [] if isinstance(message, dict)
            for block in (message.get("content") if isinstance(message.get("content"), list) else [])):
        raise CodecError("messages", "Requests which include `tool_use` or `tool_result` blocks must define tools.")
    return anthropic_wire.decode_request(body)


class AnthropicRoutes:
    """Route handlers of the Anthropic side (mixed into :class:`fakes.provider.FakeProvider`,
    on top of the engine in :mod:`fakes.core`: ``_generate``, ``_auth_error``, ``models``)."""

    def _add_anthropic_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/messages", self._anthropic_messages)

    async def _anthropic_messages(self, request: web.Request) -> web.StreamResponse:
        record: RecordedRequest = request[RECORD]
        denied = self._auth_error(request, "anthropic")
        if denied is None and "anthropic-version" not in request.headers:
            denied = json_response(anthropic_error(400, "anthropic-version: header is required"), 400)
        body = record.body if isinstance(record.body, dict) else {}
        return await self._generate(request, "anthropic", str(body.get("model") or ""), body.get("stream") is True,
                                    denied=denied)


FORMAT = WireFormat(
    "anthropic", error=lambda status, message, model, _retry: anthropic_error(status, message, model),
    auth_error=auth_error, decode=lambda body, _model, _stream: decode(body),
    encode=lambda response, _keep_ids: anthropic_wire.encode_response(response),
    stream_encoder=lambda _include_usage: anthropic_wire.StreamEncoder(),
    retry_after_header=True, request_id_header=True, response_prefix="msg_fake", call_prefix="toolu_fake",
    overloaded_status=529,
)
