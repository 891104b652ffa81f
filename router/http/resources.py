"""Falcon resources: one per endpoint family. They decode, hand over to the pipeline, send."""

from __future__ import annotations

import json
import time
from typing import Any, Callable

import falcon
import falcon.asgi

from ..errors import ProxyError
from ..wire.offload import is_large, off_loop
from ..frontends import ANTHROPIC, GEMINI, GEMINI_ACTIONS, OPENAI, Frontend
from .hangup import SCOPE_KEY as HANGUP
from .edge import logged, lower_headers, parse_json, read_body, read_json, send
from ..wire.canonical import ChatRequest
from ..pipeline import JsonReply, Pipeline, RequestContext, StreamReply, estimate_prompt_tokens


def _context(req: falcon.asgi.Request) -> RequestContext:
    """The pipeline's view of the request. From here on the pipeline's usage record writes the
    access-log line (it knows the rule, backend and model); the middleware does not."""
    req.context.access_logged = True
    return RequestContext(headers=lower_headers(req), caller=getattr(req.context, "caller", None), path=req.path)


class ChatResource:
    """``POST /v1|v2/chat/completions`` (OpenAI) and ``POST /v1|v2/messages`` (Anthropic)."""

    def __init__(self, pipeline: Pipeline, frontend: Frontend) -> None:
        self.pipeline = pipeline
        self.frontend = frontend

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        state = self.pipeline.ref.state
        body, request = await read_chat(req, state.config.max_body_bytes, self.frontend.codec.decode_request)
        ctx = _context(req)
        if self.frontend is OPENAI:
            ctx.encoder_options["include_usage"] = _include_usage(body)
        send(resp, await self.pipeline.chat(self.frontend, request, ctx), req.scope.get(HANGUP))


async def read_chat(req: falcon.asgi.Request, max_bytes: int, decode: Callable[..., ChatRequest],
                    **path: Any) -> tuple[Any, ChatRequest]:
    """The body as JSON and as a canonical request; a large body is decoded off the loop."""
    raw = await read_body(req, max_bytes)
    if is_large(len(raw)):
        body, request = await off_loop(_decode, raw, decode, path)
    else:
        body, request = _decode(raw, decode, path)
    request.size = len(raw)
    return body, request


def _decode(raw: bytes, decode: Callable[..., ChatRequest], path: dict[str, Any]) -> tuple[Any, ChatRequest]:
    body = parse_json(raw)
    return body, decode(body, **path)


def _include_usage(body: dict[str, Any]) -> bool:
    """OpenAI sends the final usage chunk (empty ``choices``) only when asked: clients that did not
    ask may read ``chunk.choices[0]`` of every chunk."""
    options = body.get("stream_options")
    if options is None:
        return False
    if not isinstance(options, dict) or not isinstance(options.get("include_usage", False), bool):
        raise ProxyError(400, "stream_options: expected an object like {\"include_usage\": true}", "invalid_request",
                         param="stream_options")
    return bool(options.get("include_usage"))


@logged
class AnthropicCountTokensResource:
    """``POST /v1/messages/count_tokens``: Claude Code asks before long turns; we estimate."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        body = await read_json(req, self.pipeline.ref.state.config.max_body_bytes)
        if isinstance(body, dict) and "max_tokens" not in body:
            body = {**body, "max_tokens": 1}
        request = ANTHROPIC.codec.decode_request(body)
        resp.media = {"input_tokens": estimate_prompt_tokens(request)}


@logged
class GeminiModelResource:
    """``/v1beta|v2/models/{model}:{action}``: generateContent, streamGenerateContent, countTokens.

    ``GET`` on the same path describes one model (Gemini shape, or OpenAI shape under ``/v1``).
    """

    ACTIONS = GEMINI_ACTIONS

    def __init__(self, pipeline: Pipeline, models: "ModelsResource") -> None:
        self.pipeline = pipeline
        self.models = models

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, spec: str) -> None:
        model, sep, action = spec.rpartition(":")
        if not sep or action not in self.ACTIONS or not model:
            raise ProxyError(404, f"unknown model action {spec!r}; expected models/{{model}}:"
                                  + "|".join(self.ACTIONS), "not_found")
        model = model.removeprefix("models/")
        state = self.pipeline.ref.state
        if action == "countTokens":
            body = await read_json(req, state.config.max_body_bytes)
            if isinstance(body, dict) and isinstance(body.get("generateContentRequest"), dict):
                body = body["generateContentRequest"]
            request = GEMINI.codec.decode_request(body, model=model, stream=False)
            resp.media = {"totalTokens": estimate_prompt_tokens(request)}
            return
        streaming = action == "streamGenerateContent"
        _body, request = await read_chat(req, state.config.max_body_bytes, GEMINI.codec.decode_request,
                                         model=model, stream=streaming)
        reply = await self.pipeline.chat(GEMINI, request, _context(req))
        if streaming and req.get_param("alt") != "sse" and isinstance(reply, StreamReply):
            reply = await _as_json_array(reply)
        send(resp, reply, req.scope.get(HANGUP))

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, spec: str) -> None:
        await self.models.describe(req, resp, spec)


async def _as_json_array(reply: StreamReply) -> JsonReply:
    """Gemini's non-SSE stream is a JSON array of responses; we send it whole, as one array."""
    from ..wire.sse import SSEParser

    parser = SSEParser(max_line=None)  # our own frames, already in memory
    items: list[Any] = []
    async for chunk in reply.chunks:
        for _event, data in parser.feed(chunk):
            items.append(json.loads(data))
    return JsonReply(200, items, reply.headers)  # type: ignore[arg-type]


@logged
class ModelsResource:
    """Model listings: OpenAI shape at ``/v1|v2/models``, Gemini shape at ``/v2/models/list`` and ``/v1beta/models``."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    async def ids(self) -> list[tuple[str, str]]:
        state = self.pipeline.ref.state
        out: list[tuple[str, str]] = []
        for name, backend in state.backends.items():
            try:
                models = await backend.list_models()
            except Exception:  # noqa: BLE001 - a failing backend must not break the listing
                models = list(state.config.backends[name].models)
            out.extend((name, m) for m in models)
        return out

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        ids = await self.ids()
        if req.path.rstrip("/") in ("/v2/models/list", "/v1beta/models") or _gemini_client(req):
            resp.media = {"models": [_gemini_model(b, m) for b, m in ids]}
            return
        now = int(time.time())
        resp.media = {"object": "list", "data": [
            {"id": f"{b}:{m}", "object": "model", "created": now, "owned_by": b} for b, m in ids]}

    async def describe(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, spec: str) -> None:
        ids = await self.ids()
        wanted = spec.removeprefix("models/")
        for backend, model in ids:
            if wanted in (model, f"{backend}:{model}"):
                if req.path.startswith("/v1beta") or _gemini_client(req):
                    resp.media = _gemini_model(backend, model)
                else:
                    resp.media = {"id": f"{backend}:{model}", "object": "model", "created": 0, "owned_by": backend}
                return
        raise ProxyError(404, f"unknown model {wanted!r}; GET /v2/models lists them", "not_found")


def _gemini_client(req: falcon.asgi.Request) -> bool:
    """google-genai lists models at ``GET /v1/models`` (its default API version is v1): it is told
    apart from OpenAI clients, which share that path, by the headers and key parameter only Google's
    clients send."""
    return bool(req.get_header("x-goog-api-key") or req.get_header("x-goog-api-client") or req.get_param("key"))


def _gemini_model(backend: str, model: str) -> dict[str, Any]:
    return {"name": f"models/{backend}:{model}", "displayName": f"{model} ({backend})",
            "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens"]}


@logged
class HealthResource:
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.media = {"status": "ok"}


@logged
class RootResource:
    """``GET|HEAD /``: Claude Code probes the base URL before its first request."""

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.media = {"name": "llm-interactive-proxy", "status": "ok"}

    async def on_head(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.status = 200


__all__ = ["ChatResource", "AnthropicCountTokensResource", "GeminiModelResource", "ModelsResource",
           "HealthResource", "RootResource"]
