"""Falcon resources: one per endpoint family. They decode, hand over to the pipeline, send.

Each gets what it uses: the pipeline (chat), the :class:`StateRef` for the current config and
backends (a reload swaps them), the front end. Whatever differs between wire formats (stream
encoder options, model-listing shapes) is asked of the front end or its codec, not branched on here.
"""

from __future__ import annotations

import functools

import json
import time
from typing import Any, Callable

import falcon
import falcon.asgi

from ..errors import ProxyError
from ..wire.offload import GC_PAUSE_KEY, is_large, let_go, off_loop, pause_gc
from ..frontends import ANTHROPIC, GEMINI, GEMINI_ACTIONS, RESPONSES, Frontend, models_frontend
from ..sessions import valid_session_id
from ..wire.codec import CodecError
from ..wire.responses import input_items
from .hangup import SCOPE_KEY as HANGUP, Hangup
from .edge import logged, logged_responder, lower_headers, parse_body, parse_json, read_body, read_json, send
from ..wire.canonical import ChatRequest
from ..pipeline import JsonReply, Pipeline, Reply, RequestContext, StreamReply, estimate_prompt_tokens
from ..state import StateRef


def _context(req: falcon.asgi.Request) -> RequestContext:
    """The pipeline's view of the request. From here on the pipeline's usage record writes the
    access-log line (it knows the rule, backend and model); the middleware does not."""
    req.context.access_logged = True
    return RequestContext(headers=lower_headers(req), caller=getattr(req.context, "caller", None), path=req.path)


class ChatResource:
    """``POST /v1|v2/chat/completions`` (OpenAI) and ``POST /v1|v2/messages`` (Anthropic)."""

    def __init__(self, pipeline: Pipeline, frontend: Frontend, ref: StateRef) -> None:
        self.pipeline = pipeline
        self.frontend = frontend
        self.ref = ref

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        codec = self.frontend.codec
        body, request = await read_chat(req, self.ref.state.config.max_body_bytes, codec.decode_request)
        ctx = _context(req)
        ctx.encoder_options = codec.encoder_options(body)
        reply = await serve_chat(self.pipeline, self.frontend, request, ctx, req.scope.get(HANGUP))
        if reply is not None:
            send(resp, reply, req.scope.get(HANGUP))
        await let_go_if_large(reply, request, body)


async def let_go_if_large(reply: Any, request: ChatRequest, body: Any, keep: str | None = None) -> None:
    """Once a large request's JSON answer is made, free its many small objects a part at a time
    rather than all at once when the handler's frame ends (offload.let_go). A stream still reads
    the request as it goes, so it frees it the usual way. ``keep``: a field of the body whose
    list lives on elsewhere (a kept Responses reply's input)."""
    if isinstance(reply, JsonReply) and is_large(request.size):
        lists = [value for name, value in body.items() if isinstance(value, list) and name != keep] \
            if isinstance(body, dict) else []
        await let_go(request.messages, *lists)


async def serve_chat(pipeline: Pipeline, frontend: Frontend, request: ChatRequest, ctx: RequestContext,
                     hangup: Hangup | None) -> Reply | None:
    """The pipeline's reply; for a stream, None when the client left before its first event
    (then the request was cancelled, upstream call included: router/http/hangup.py)."""
    work = pipeline.chat(frontend, request, ctx)
    if request.stream and hangup is not None:
        return await hangup.before_first_event(work)
    return await work


async def read_chat(req: falcon.asgi.Request, max_bytes: int, decode: Callable[..., ChatRequest],
                    **path: Any) -> tuple[Any, ChatRequest]:
    """The body as JSON and as a canonical request; a large body is decoded off the loop."""
    raw = await read_body(req, max_bytes)
    if is_large(len(raw)):
        _pause_gc_for(req)
        body = await parse_body(raw)
        request = await off_loop(functools.partial(decode, **path), body)
    else:
        body, request = _decode(raw, decode, path)
    request.size = len(raw)
    return body, request


def _pause_gc_for(req: falcon.asgi.Request) -> None:
    """The collector pauses for a large request until it ends (``router/wire/offload.py``
    :func:`pause_gc`); ``ProxyApp`` resumes it when the request is done, whatever happened."""
    if not req.scope.get(GC_PAUSE_KEY):
        req.scope[GC_PAUSE_KEY] = True
        pause_gc()


def _decode(raw: bytes, decode: Callable[..., ChatRequest], path: dict[str, Any]) -> tuple[Any, ChatRequest]:
    body = parse_json(raw)
    return body, decode(body, **path)


class ResponsesResource:
    """``POST /v1|v2/responses`` (the Responses API: Codex CLI, ``client.responses``) and
    ``GET /v2/responses/{id}`` (a stored reply, to the caller that made it).

    Before decoding, a ``previous_response_id`` is replaced by the conversation it continues
    (``router/responses_store.py``); after the reply, unless the client said ``store: false``, the
    reply is kept with its conversation, before the client can see its id (a stream's final event
    is held until it is kept)."""

    def __init__(self, pipeline: Pipeline, ref: StateRef) -> None:
        self.pipeline = pipeline
        self.ref = ref

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        state = self.ref.state
        caller = getattr(req.context, "caller", None)
        raw = await read_body(req, state.config.max_body_bytes)
        if is_large(len(raw)):
            _pause_gc_for(req)
        body = await parse_body(raw)
        store = True
        if isinstance(body, dict):
            body, store = await self._continue(body, caller)
        request = await off_loop(RESPONSES.codec.decode_request, body) if is_large(len(raw)) \
            else RESPONSES.codec.decode_request(body)
        request.size = len(raw)
        ctx = _context(req)
        hint = body.get("prompt_cache_key")
        ctx.session_hint = hint if valid_session_id(hint) else None
        kept: list[dict[str, Any]] = []
        ctx.encoder_options = {"on_complete": kept.append}
        if store:  # a stream keeps its reply itself, before the frame with the reply's id (pipeline/encode.py)
            conversation = input_items(body.get("input"))
            ctx.completed = kept
            ctx.keep_reply = lambda reply: state.responses.put(reply, conversation, caller)
        reply = await serve_chat(self.pipeline, RESPONSES, request, ctx, req.scope.get(HANGUP))
        if reply is None:
            return
        kept_input = False
        if store and isinstance(reply, JsonReply) and reply.status == 200:
            kept_input = await state.responses.put(reply.body, conversation, caller)
        send(resp, reply, req.scope.get(HANGUP))
        # A kept reply holds its input list (the store keeps it as it is): that one is not let go.
        await let_go_if_large(reply, request, body, keep="input" if kept_input else None)

    async def _continue(self, body: dict[str, Any], caller: str | None) -> tuple[dict[str, Any], bool]:
        """The body with ``previous_response_id`` resolved into its conversation, and whether to
        keep the reply (``store``, default true)."""
        store = body.get("store", True)
        if store is not None and not isinstance(store, bool):
            raise CodecError("store", "store: expected true or false")
        previous = body.get("previous_response_id")
        if previous is None:
            return body, store is not False
        if not isinstance(previous, str):
            raise CodecError("previous_response_id", "previous_response_id: expected a response id (a string)")
        earlier = await self.ref.state.responses.conversation(previous, caller)
        body = {k: v for k, v in body.items() if k != "previous_response_id"}
        body["input"] = earlier + input_items(body.get("input"))
        return body, store is not False

    @logged_responder  # (on_post's line comes from its usage record, like every chat request's)
    async def on_get_stored(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, response_id: str) -> None:
        stored = await self.ref.state.responses.get(response_id, getattr(req.context, "caller", None))
        if stored is None:
            shown = response_id if len(response_id) <= 100 else response_id[:97] + "..."
            raise ProxyError(404, f"No response with id '{shown}' found.", "not_found", param="response_id")
        resp.media = stored["response"]


@logged
class AnthropicCountTokensResource:
    """``POST /v1/messages/count_tokens``: Claude Code asks before long turns; we estimate."""

    def __init__(self, ref: StateRef) -> None:
        self.ref = ref

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        body = await read_json(req, self.ref.state.config.max_body_bytes)
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

    def __init__(self, pipeline: Pipeline, ref: StateRef, models: "ModelsResource") -> None:
        self.pipeline = pipeline
        self.ref = ref
        self.models = models

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, spec: str) -> None:
        model, sep, action = spec.rpartition(":")
        if not sep or action not in self.ACTIONS or not model:
            raise ProxyError(404, f"unknown model action {spec!r}; expected models/{{model}}:"
                                  + "|".join(self.ACTIONS), "not_found")
        model = model.removeprefix("models/")
        state = self.ref.state
        if action == "countTokens":
            body = await read_json(req, state.config.max_body_bytes)
            if isinstance(body, dict) and isinstance(body.get("generateContentRequest"), dict):
                body = body["generateContentRequest"]
            request = GEMINI.codec.decode_request(body, model=model, stream=False)
            resp.media = {"totalTokens": estimate_prompt_tokens(request)}
            return
        streaming = action == "streamGenerateContent"
        chat_body, request = await read_chat(req, state.config.max_body_bytes, GEMINI.codec.decode_request,
                                             model=model, stream=streaming)
        reply = await serve_chat(self.pipeline, GEMINI, request, _context(req), req.scope.get(HANGUP))
        if reply is None:
            return
        if streaming and req.get_param("alt") != "sse" and isinstance(reply, StreamReply):
            reply = await _as_json_array(reply)
        send(resp, reply, req.scope.get(HANGUP))
        await let_go_if_large(reply, request, chat_body)

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

    def __init__(self, ref: StateRef) -> None:
        self.ref = ref

    async def ids(self) -> list[tuple[str, str]]:
        state = self.ref.state
        out: list[tuple[str, str]] = []
        for name, backend in state.backends.items():
            try:
                models = await backend.list_models()
            except Exception:  # noqa: BLE001 - a failing backend must not break the listing
                models = list(state.config.backends[name].models)
            out.extend((name, m) for m in models)
        return out

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        frontend = models_frontend(req.path, lower_headers(req), req.params)
        resp.media = frontend.list_models(await self.ids(), int(time.time()))

    async def describe(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, spec: str) -> None:
        ids = await self.ids()
        wanted = spec.removeprefix("models/")
        for backend, model in ids:
            if wanted in (model, f"{backend}:{model}"):
                frontend = models_frontend(req.path, lower_headers(req), req.params)
                resp.media = frontend.describe_model(backend, model, 0)
                return
        raise ProxyError(404, f"unknown model {wanted!r}; GET /v2/models lists them", "not_found")


@logged
class HealthResource:
    """``{"status": "ok"}``; ``"degraded"`` naming the store that does not work while it does not:
    the shared state store (Redis) when it does not answer, the usage store (PostgreSQL) when its
    writer cannot write. Each shared store is reported under its own key, working or not."""

    def __init__(self, state_store: Callable[[], dict[str, Any]] | None = None,
                 usage_store: Callable[[], dict[str, Any] | None] | None = None) -> None:
        self.parts = {name: report for name, report in (("state_store", state_store), ("usage_store", usage_store))
                      if report is not None}

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        reports = {name: report() for name, report in self.parts.items()}
        reports = {name: value for name, value in reports.items() if value is not None}
        up = all(value["up"] for value in reports.values())
        resp.media = {"status": "ok" if up else "degraded", **reports}


@logged
class RootResource:
    """``GET|HEAD /``: Claude Code probes the base URL before its first request."""

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.media = {"name": "llm-interactive-proxy", "status": "ok"}

    async def on_head(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.status = 200


__all__ = ["ChatResource", "ResponsesResource", "AnthropicCountTokensResource", "GeminiModelResource", "ModelsResource",
           "HealthResource", "RootResource"]
