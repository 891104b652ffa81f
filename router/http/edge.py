"""HTTP plumbing shared by the resources: bounded body reading, replies, errors in the right shape."""

from __future__ import annotations

import logging
import re
import time
from typing import Any, Mapping
from urllib.parse import quote

import falcon
import falcon.asgi

from ..wire import fastjson, piecewise_json
from ..wire.codec import CodecError
from ..errors import ProxyError, bad_request
from ..frontends import frontend_for_path
from .hangup import Hangup
from ..pipeline import JsonReply, Reply, StreamReply
from ..record.recorder import access_log

log = logging.getLogger("llm_proxy.http")


def log_request(req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
    """The access-log line of a request that no usage record logs (everything but chat): called
    by the ``logged`` resources after their responder and by the error handlers, once."""
    context = req.context
    if getattr(context, "access_logged", False) or not access_log.enabled():
        return
    context.access_logged = True
    started = getattr(context, "started", None)
    elapsed = (time.perf_counter() - started) * 1000 if started else 0.0
    status = resp.status_code
    access_log.info(f"{req.method} {req.path} {status} {elapsed:.1f}ms", lambda: {
        "caller": getattr(context, "caller", None), "status": status, "latency_ms": round(elapsed, 1)})


async def _log_after(req: falcon.asgi.Request, resp: falcon.asgi.Response, resource: Any, *args: Any,
                     **kwargs: Any) -> None:
    log_request(req, resp)


def logged(cls: type) -> type:
    """Class decorator for every resource that is not a chat endpoint: its responders write the
    access-log line (chat requests get theirs from the usage record, so the hot path has no
    response middleware at all)."""
    return falcon.after(_log_after)(cls)


def logged_responder(responder: Any) -> Any:
    """:func:`logged` for one responder of a resource whose chat responder is logged by its usage
    record (``ResponsesResource``): the chat one then runs without Falcon's after-hook wrapper."""
    return falcon.after(_log_after)(responder)

_FALCON_KIND = {
    400: "invalid_request", 401: "authentication", 403: "permission", 404: "not_found", 405: "invalid_request",
    408: "timeout", 411: "invalid_request", 413: "request_too_large", 415: "invalid_request", 429: "rate_limit",
}


async def read_body(req: falcon.asgi.Request, max_bytes: int) -> bytes:
    """The raw request body, refusing bodies over ``max_bytes`` before reading them whole."""
    length = req.content_length
    if length is not None and length > max_bytes:
        raise ProxyError(413, f"request body is {length} bytes; the limit is {max_bytes} (max_body_bytes)",
                         "request_too_large")
    if length is not None:
        raw = await req.stream.read()  # Falcon stops at Content-Length, checked above
    else:  # chunked: count while reading
        chunks: list[bytes] = []
        total = 0
        async for chunk in req.stream:
            total += len(chunk)
            if total > max_bytes:
                raise ProxyError(413, f"request body exceeds {max_bytes} bytes (max_body_bytes)", "request_too_large")
            chunks.append(chunk)
        raw = b"".join(chunks)
    if not raw or raw.isspace():
        raise ProxyError(400, "request body is empty; send a JSON object", "invalid_request")
    return raw


def parse_json(raw: bytes) -> Any:
    """A request body as JSON; malformed or too deeply nested bodies are a 400."""
    try:
        return fastjson.loads(raw)
    except fastjson.JSONDecodeError as exc:
        if "depth limit" in exc.msg:
            raise ProxyError(400, "request body is nested too deeply to be a chat request", "invalid_request") from None
        raise ProxyError(400, f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                         "invalid_request") from None


async def parse_body(raw: bytes) -> Any:
    """:func:`parse_json` for a body of any size: a large one (``piecewise_json.PIECEWISE_BYTES``)
    is parsed in pieces so that the event loop keeps serving others (``router/wire/piecewise_json.py``);
    same result, same 400 shape."""
    if len(raw) < piecewise_json.PIECEWISE_BYTES:
        return parse_json(raw)
    try:
        return await piecewise_json.loads(raw)
    except piecewise_json.PiecewiseJSONError as exc:
        if "depth limit" in exc.reason:
            raise ProxyError(400, "request body is nested too deeply to be a chat request", "invalid_request") from None
        raise ProxyError(400, f"request body is not valid JSON: {exc.reason}", "invalid_request") from None


async def read_json(req: falcon.asgi.Request, max_bytes: int) -> Any:
    """The request body as JSON (:func:`read_body`, then :func:`parse_body`)."""
    return await parse_body(await read_body(req, max_bytes))


def lower_headers(req: falcon.asgi.Request) -> Mapping[str, str]:
    """Header names in lower case: Falcon's ASGI ``req.headers`` already is that (ASGI servers send
    lower-case names), parsed once per request and cached by Falcon. Read only."""
    return req.headers


# Characters a path may carry into a header unchanged (RFC 3986 pchar and "/", no "%": Falcon's
# ``req.path`` is already decoded, so a "%" in it is a literal percent sign).
_UNSAFE_IN_LINK = re.compile(r"[^A-Za-z0-9/._~:@!$&'()*+,;=-]")


def successor_link(path: str) -> str:
    """The ``Link`` header of a ``/v1/`` reply, naming the ``/v2/`` path.

    ``req.path`` is percent-decoded, so it can hold anything a client encoded (``%0d%0a``, ``%00``,
    non-ASCII): such a path is re-encoded, because a header value with those characters makes the
    server drop the reply."""
    successor = path.replace("/v1/", "/v2/", 1)
    if _UNSAFE_IN_LINK.search(successor):
        successor = quote(successor, safe="/:@!$&'()*+,;=-._~", errors="replace")
    return f'<{successor}>; rel="successor-version"'


def send(resp: falcon.asgi.Response, reply: Reply, hangup: Hangup | None = None) -> None:
    """``reply`` onto ``resp``; a stream is relayed through ``hangup`` (the request's, from the
    ASGI scope) so that the client leaving cancels it at once."""
    for name, value in reply.headers.items():
        resp.set_header(name, value)
    if isinstance(reply, JsonReply):
        resp.status = reply.status
        resp.data = fastjson.dumps(reply.body)
        resp.content_type = "application/json"
        return
    assert isinstance(reply, StreamReply)
    resp.status = 200
    resp.content_type = "text/event-stream"
    resp.set_header("Cache-Control", "no-cache")
    resp.set_header("X-Accel-Buffering", "no")
    if hangup is None:  # a request that did not come through ProxyApp: nothing watches it
        hangup = Hangup(None)
    # Already-encoded SSE frames, one ASGI send per upstream read. ``resp.stream``, not
    # ``resp.sse``: Falcon's SSE path starts a task per stream to read the hang-up, before the
    # first byte; the Hangup reads it itself, and only for streams that last (router/http/hangup.py).
    resp.stream = hangup.start(hangup.frames(reply.chunks))


def render_error(req: falcon.asgi.Request, resp: falcon.asgi.Response, err: ProxyError) -> None:
    frontend = frontend_for_path(req.path, req.method)
    resp.status = err.status
    resp.media = frontend.codec.encode_error(err)
    for name, value in err.headers.items():
        resp.set_header(name, value)


async def handle_proxy_error(req: falcon.asgi.Request, resp: falcon.asgi.Response, ex: ProxyError, params: Any) -> None:
    # Messages are ours (or a provider's, keys redacted): safe to log, and operators need them.
    log.log(logging.WARNING if ex.status >= 500 else logging.INFO, "%s %s -> %d %s", req.method, req.path,
            ex.status, ex.message)
    render_error(req, resp, ex)
    log_request(req, resp)


async def handle_codec_error(req: falcon.asgi.Request, resp: falcon.asgi.Response, ex: CodecError,
                             params: Any) -> None:
    """A request body the codec could not read (codec errors carry no HTTP status): the client's
    fault, a 400 naming the field, in the client's error shape."""
    await handle_proxy_error(req, resp, bad_request(ex.message, ex.param), params)


async def handle_http_error(req: falcon.asgi.Request, resp: falcon.asgi.Response, ex: falcon.HTTPError,
                            params: Any) -> None:
    """Falcon's own errors (unknown path, wrong method) in the client's error shape."""
    status = ex.status_code if hasattr(ex, "status_code") else int(str(ex.status).split()[0])
    if status == 404:
        message = f"no such endpoint: {req.method} {req.path}"
    elif status == 405:
        message = f"method {req.method} is not allowed on {req.path}"
    else:
        message = ex.description or ex.title or "request error"
    err = ProxyError(status, message, _FALCON_KIND.get(status, "invalid_request"), headers=dict(ex.headers or {}))
    render_error(req, resp, err)
    log_request(req, resp)


async def handle_unexpected(req: falcon.asgi.Request, resp: falcon.asgi.Response, ex: Exception, params: Any) -> None:
    """A bug: log it with its traceback for operators; the client gets a plain 500, no internals."""
    if isinstance(ex, falcon.HTTPError):
        await handle_http_error(req, resp, ex, params)
        return
    log.exception("unhandled error on %s %s", req.method, req.path)
    render_error(req, resp, ProxyError(500, "internal error in the proxy; the operator's log has the details",
                                       "api_error"))
    log_request(req, resp)
