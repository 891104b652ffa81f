"""The fake provider's Gemini API side: Google's error shape (``google.rpc.Status``, shared with
Code Assist), auth failure, ``GET /v1beta/models[/{model}]`` and the generation routes."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from router.wire import gemini as gemini_wire
from router.wire.canonical import ChatResponse

from .recording import RECORD, json_response
from .wire_format import WireFormat

_GOOGLE_ERRORS: dict[int, tuple[str, str]] = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: ("UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 access token, "
          "login cookie or other valid authentication credential. See "
          "https://developers.google.com/identity/sign-in/web/devconsole-project."),
    403: ("PERMISSION_DENIED", "The caller does not have permission"),
    404: ("NOT_FOUND", "models/{model} is not found for API version v1beta, or is not supported for "
          "generateContent. Call ListModels to see the list of available models and their supported methods."),
    409: ("ABORTED", "The operation was aborted."),
    429: ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    499: ("CANCELLED", "The operation was cancelled."),
    500: ("INTERNAL", "An internal error has occurred. Please retry or report in "
          "https://developers.generativeai.google/guide/troubleshooting"),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    504: ("DEADLINE_EXCEEDED", "The request timed out. Please try again."),
}


def google_error(status: int, message: str | None = None, model: str = "", retry_after: float | None = None,
                 reason: str | None = None, domain: str = "googleapis.com") -> dict[str, Any]:
    """``{"error": {"code", "message", "status", "details"?}}`` (google.rpc.Status as JSON).

    ``reason`` adds a ``google.rpc.ErrorInfo`` detail, ``retry_after`` a ``google.rpc.RetryInfo``
    with ``retryDelay: "<n>s"`` - Google APIs put retry hints in the body, not a header.
    """
    kind, text = _GOOGLE_ERRORS.get(status, ("INTERNAL" if status >= 500 else "FAILED_PRECONDITION", f"HTTP {status}"))
    body: dict[str, Any] = {"code": status, "message": message or text.format(model=model), "status": kind}
    details: list[dict[str, Any]] = []
    if reason:
        details.append({"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": domain,
                        "metadata": {"service": domain}})
    if retry_after is not None:
        details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_after:g}s"})
    if details:
        body["details"] = details
    return {"error": body}


def auth_error(key: str | None) -> web.Response:
    """generativelanguage.googleapis.com's answer to a missing (403) or wrong (400) API key."""
    if not key:
        message = ("Method doesn't allow unregistered callers (callers without established identity). "
                   "Please use API Key or other form of API consumer identity to call this API.")
        return json_response(google_error(403, message), 403)
    return json_response(google_error(400, "API key not valid. Please pass a valid API key.",
                                      reason="API_KEY_INVALID", domain="googleapis.com"), 400)


def strip_function_call_ids(item: dict[str, Any]) -> None:
    """The Gemini API does not put ``id`` on ``functionCall`` parts; the codec does. Make it real."""
    for candidate in item.get("candidates") or []:
        for part in ((candidate or {}).get("content") or {}).get("parts") or []:
            if isinstance(part, dict) and isinstance(part.get("functionCall"), dict):
                part["functionCall"].pop("id", None)


def gemini_model_info(name: str) -> dict[str, Any]:
        return {"name": f"models/{name}", "version": "001", "displayName": name, "description": f"Fake {name}",
                "inputTokenLimit": 1_048_576, "outputTokenLimit": 65_536,
                "supportedGenerationMethods": ["generateContent", "countTokens"]}


class GeminiRoutes:
    """Route handlers of the Gemini side (mixed into :class:`fakes.provider.FakeProvider`,
    on top of the engine in :mod:`fakes.core`: ``_generate``, ``_auth_error``, ``models``)."""

    def _add_gemini_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/v1beta/models", self._gemini_models)
        router.add_get("/v1beta/models/{model}", self._gemini_model)
        router.add_post("/v1beta/models/{model}:generateContent", self._gemini_generate)
        router.add_post("/v1beta/models/{model}:streamGenerateContent", self._gemini_generate)

    async def _gemini_models(self, request: web.Request) -> web.Response:
        request[RECORD].endpoint = "models"
        denied = self._auth_error(request, "gemini")
        if denied is not None:
            return denied
        return json_response({"models": [gemini_model_info(m) for m in self.models]})

    async def _gemini_model(self, request: web.Request) -> web.Response:
        request[RECORD].endpoint = "model"
        denied = self._auth_error(request, "gemini")
        if denied is not None:
            return denied
        name = request.match_info["model"]
        if name not in self.models:
            return json_response(google_error(404, f"models/{name} is not found for API version v1beta"), 404)
        return json_response(gemini_model_info(name))

    async def _gemini_generate(self, request: web.Request) -> web.StreamResponse:
        stream = request.path.endswith(":streamGenerateContent")
        return await self._generate(request, "gemini", request.match_info["model"], stream,
                                    sse=request.query.get("alt") == "sse")


def google_error_body(domain: str) -> Any:
    """The ``WireFormat.error`` of a Google API at ``domain``: a 429 carries ``RATE_LIMIT_EXCEEDED``."""
    def error(status: int, message: str | None, model: str, retry_after: float | None) -> dict[str, Any]:
        reason = "RATE_LIMIT_EXCEEDED" if status == 429 else None
        return google_error(status, message, model, retry_after, reason, domain)
    return error


def encode_response(response: ChatResponse, keep_call_ids: bool) -> dict[str, Any]:
    body = gemini_wire.encode_response(response)
    if not keep_call_ids:
        strip_function_call_ids(body)
    return body


FORMAT = WireFormat(
    "gemini", error=google_error_body("generativelanguage.googleapis.com"), auth_error=auth_error,
    decode=lambda body, model, stream: gemini_wire.decode_request(body, model=model, stream=stream),
    encode=encode_response, stream_encoder=lambda _include_usage: gemini_wire.StreamEncoder(), google_frames=True,
)
