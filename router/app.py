"""``create_app``: config + rules + backends → the Falcon ASGI app.

Cross-cutting concerns are middleware (auth, request log, deprecation header); errors of every
kind are turned into the client's own error shape in one place (``router/http/edge.py``). The state
the app serves is built in ``router/state.py`` (:func:`~router.state.build_state`).
"""

from __future__ import annotations

import time
from typing import Any

import falcon
import falcon.asgi


from .config import AppConfig
from .errors import ProxyError
from .wire.codec import CodecError
from .wire.offload import GC_PAUSE_KEY, resume_gc
from .frontends import ANTHROPIC, OPENAI
from .http.edge import (
    handle_codec_error, handle_http_error, handle_proxy_error, handle_unexpected, lower_headers, successor_link,
)
from .http.admin import (
    AdminGate, AuditLogsResource, BackendHealthResource, ExplainResource, MetricsResource, ReloadResource,
    UsageRecentResource, UsageStatsResource,
)
from .http.runtime import RuntimeResource
from .http.hangup import SCOPE_KEY as HANGUP, Hangup
from .http.health import HealthMonitor
from .http.local_guard import check_local_request
from .record.logs import flush_logs
from .record.metrics import Metrics
from .pipeline import Pipeline, ToolHistories
from .record.recorder import Recorder
from .reload import Reloader
from .record.usage import SQLiteUsageStore, UsageStore
from .http.resources import (
    AnthropicCountTokensResource, ChatResource, GeminiModelResource, HealthResource, ModelsResource,
    ResponsesResource, RootResource,
)
from .state import StateRef, build_state

OPEN_PATHS = frozenset({"/", "/health"})


class ProxyMiddleware:
    """Auth (and local mode's browser guard), the ``/v1`` deprecation headers, one access-log line
    per request, and lifecycle.

    Chat requests get their access-log line from their usage record when they end (with rule,
    backend and model; for a stream that is when the stream ends); every other request from its
    resource (``http.logged``) or the error handler. No ``process_response``: Falcon awaits every
    middleware method on every request, and that one cost ~5 us of the proxy's own ~80.
    """

    def __init__(self, ref: StateRef) -> None:
        self.ref = ref

    async def process_request(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        req.context.started = time.perf_counter()
        if req.path.startswith("/v1/"):  # set first: error replies carry them too
            resp.set_header("Deprecation", "true")
            resp.set_header("Link", successor_link(req.path))
        if req.path in OPEN_PATHS:
            return
        state = self.ref.state
        auth = state.auth
        try:
            if auth.local_only:
                check_local_request(req.method, lower_headers(req))
            if req.path in state.keyless_paths:  # metrics.auth / health.auth: none
                return
            req.context.caller = auth.identify(lower_headers(req), req.params)
        except ProxyError as exc:
            # Audited with the source address and path, never the presented key.
            self.ref.recorder.audit("auth_failure", req.remote_addr, "rejected", path=req.path, reason=exc.message)
            raise

    async def process_startup(self, scope: Any, event: Any) -> None:
        await self.ref.recorder.store.start()
        for hook in self.ref.on_startup:
            await hook()

    async def process_shutdown(self, scope: Any, event: Any) -> None:
        """After uvicorn has drained the connections: stop background work, flush usage, close."""
        for hook in self.ref.on_shutdown:
            await hook()
        state = self.ref.state
        for backend in state.backends.values():
            await backend.aclose()
        await state.sessions.aclose()
        await state.responses.aclose()
        recorder = self.ref.recorder
        recorder.drain()  # what finished last comes in before the store closes
        await recorder.store.close()
        flush_logs()  # the usage store's last batch wrote access lines; the process may end abruptly


_FALCON_CALL = falcon.asgi.App.__call__


class ProxyApp(falcon.asgi.App):
    """Falcon's App plus a handle on the swappable runtime state (reload, tests)."""

    state_ref: StateRef
    monitor: HealthMonitor
    reloader: Reloader

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:  # type: ignore[override]
        """POST requests (the only ones that stream) get their ``receive`` watched for the client
        hanging up (``router/http/hangup.py``). Falcon's ``__call__`` is called directly, not through
        ``super()``, and ``close`` awaited only when a relay or a watcher is open: per request, both measured."""
        if scope.get("method") != "POST":  # (lifespan scopes have no method)
            await _FALCON_CALL(self, scope, receive, send)
            return
        hangup = scope[HANGUP] = Hangup(receive)
        try:
            await _FALCON_CALL(self, scope, hangup, send)
        finally:
            if hangup.relay is not None or hangup.watching:
                await hangup.close()
            # The scope holds the Hangup, which holds uvicorn's ``receive``, a method of the
            # request's RequestResponseCycle, which holds the scope: a cycle that only the cyclic
            # collector frees. Left in place, every request was ~12 objects of cyclic garbage and
            # the collector ran every ~1,800 requests for ~8 ms (5 µs per request, and an 8 ms
            # stall for whichever requests were in flight). Unlinked here, refcounting frees it.
            del scope[HANGUP]
            if GC_PAUSE_KEY in scope:  # a large request paused the collector (router/wire/offload.py)
                resume_gc()


def usage_store(config: AppConfig) -> UsageStore:
    """PostgreSQL when ``usage.url`` is set (shared by instances), else SQLite (``usage.path``)."""
    usage = config.usage
    if usage.url:
        from .record.usage_pg import PostgresUsageStore  # noqa: PLC0415 - psycopg loads only when used

        return PostgresUsageStore(usage.url, usage.schema, retention_days=usage.retention_days,
                                  queue_size=usage.queue_size)
    return SQLiteUsageStore(usage.path, retention_days=usage.retention_days, queue_size=usage.queue_size)


def create_app(config: AppConfig, **kwargs: Any) -> ProxyApp:
    """The ASGI app; ``kwargs`` go to :func:`build_state` (tests inject backends and rules)."""
    metrics = Metrics()
    shared = None
    if config.state.shared:  # sessions, limits, cache, circuits and reloads shared through Redis
        from .state_store.shared import SharedStores

        shared = SharedStores(config.state, metrics)
    state = build_state(config, shared=shared, **kwargs)
    store = usage_store(config)
    ref = StateRef(state, Recorder(store, metrics, config.prices))
    # A session's tool-call history lives under the same bound as the sessions themselves.
    histories = shared.histories if shared is not None else ToolHistories(config.session.max_sessions)
    pipeline = Pipeline(ref, cache=shared.cache if shared is not None else None,  # type: ignore[arg-type]
                        histories=histories)
    app = ProxyApp(middleware=[ProxyMiddleware(ref)])
    monitor = HealthMonitor(ref, ref.metrics)
    ref.state.dispatcher.health = monitor
    reloader = Reloader(ref, config.source_path, build_kwargs=kwargs)
    ref.on_startup += [monitor.start, reloader.start]
    ref.on_shutdown += [monitor.stop, reloader.stop]
    if shared is not None:
        from .state_store.circuits import SharedCircuits

        monitor.shared = SharedCircuits(shared.events, monitor)
        shared.events.on("cooldown", lambda m: shared.apply_key_cooldown(ref.state.backends, m))
        shared.events.on("reload", lambda m: reloader.reload(actor=f"instance {m.get('from')}", reason="peer"))
        reloader.broadcast = lambda: shared.events.publish("reload")
        ref.on_startup.insert(0, shared.start)
        ref.on_shutdown.append(shared.stop)
    app.monitor, app.reloader = monitor, reloader
    app.req_options.strip_url_path_trailing_slash = True
    models = ModelsResource(ref)
    openai_chat = ChatResource(pipeline, OPENAI, ref)
    anthropic_chat = ChatResource(pipeline, ANTHROPIC, ref)
    gemini = GeminiModelResource(pipeline, ref, models)
    count_tokens = AnthropicCountTokensResource(ref)
    responses = ResponsesResource(pipeline, ref)
    for version in ("v1", "v2"):
        app.add_route(f"/{version}/chat/completions", openai_chat)
        app.add_route(f"/{version}/messages", anthropic_chat)
        app.add_route(f"/{version}/messages/count_tokens", count_tokens)
        app.add_route(f"/{version}/responses", responses)
        app.add_route(f"/{version}/responses/{{response_id}}", responses, suffix="stored")
        app.add_route(f"/{version}/models", models)
        app.add_route(f"/{version}/models/{{spec}}", gemini)
    app.add_route("/v2/models/list", models)
    app.add_route("/v1beta/models", models)
    app.add_route("/v1beta/models/{spec}", gemini)
    app.add_route("/health", HealthResource(shared.health if shared is not None else None, ref.recorder.store.health))
    gate, store, drain = AdminGate(ref), ref.recorder.store, ref.recorder.drain
    app.add_route("/health/backends", BackendHealthResource(gate, monitor.report, "health_auth",
                                                            lambda: ref.generation))
    app.add_route("/v2/usage/stats", UsageStatsResource(gate, store, drain))
    app.add_route("/v2/usage/recent", UsageRecentResource(gate, store, drain))
    app.add_route("/v2/audit/logs", AuditLogsResource(gate, store))
    app.add_route("/v2/admin/reload", ReloadResource(gate, reloader))
    app.add_route("/v2/admin/explain", ExplainResource(gate, ref))
    app.add_route("/metrics", MetricsResource(gate, ref.metrics, drain, "metrics_auth"))
    app.add_route("/v2/admin/runtime", RuntimeResource(gate, ref, pipeline))
    app.add_route("/", RootResource())
    app.add_error_handler(Exception, handle_unexpected)
    app.add_error_handler(falcon.HTTPError, handle_http_error)
    app.add_error_handler(ProxyError, handle_proxy_error)
    app.add_error_handler(CodecError, handle_codec_error)
    app.state_ref = ref
    return app
