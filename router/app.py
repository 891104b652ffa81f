"""``create_app``: config + rules + backends → the Falcon ASGI app.

Cross-cutting concerns are middleware (auth, request log, deprecation header); errors of every
kind are turned into the client's own error shape in one place (``router/http.py``).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Mapping

import falcon
import falcon.asgi

from backends.base import Backend
from backends.factory import build_backends
from dsl.evaluate import RuleSet
from dsl.loader import LoadedRules, load_rules_dir

from .auth import Authenticator
from .config import AppConfig
from .dispatch import Dispatcher
from .errors import ProxyError
from .frontends import ANTHROPIC, OPENAI
from .http import handle_http_error, handle_proxy_error, handle_unexpected, lower_headers
from .pipeline import Pipeline, StateRef
from .resources import (
    AnthropicCountTokensResource, ChatResource, GeminiModelResource, HealthResource, ModelsResource, RootResource,
)
from .sessions import make_repository
from .state import RuntimeState

log = logging.getLogger("llm_proxy.access")
OPEN_PATHS = frozenset({"/", "/health"})


class ProxyMiddleware:
    """Auth, the ``/v1`` deprecation headers, one access-log line per request, and lifecycle.

    One class rather than three: Falcon awaits every middleware method on every request.
    """

    def __init__(self, ref: StateRef) -> None:
        self.ref = ref

    async def process_request(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        req.context.started = time.perf_counter()
        if req.path in OPEN_PATHS:
            return
        req.context.caller = self.ref.state.auth.identify(lower_headers(req), req.params)

    async def process_response(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, resource: Any,
                               req_succeeded: bool) -> None:
        if req.path.startswith("/v1/"):
            resp.set_header("Deprecation", "true")
            resp.set_header("Link", f'<{req.path.replace("/v1/", "/v2/", 1)}>; rel="successor-version"')
        if log.isEnabledFor(logging.INFO):
            started = getattr(req.context, "started", None)
            elapsed = (time.perf_counter() - started) * 1000 if started else 0.0
            log.info("%s %s %s %.1fms", req.method, req.path, resp.status, elapsed,
                     extra={"session": resp.get_header("x-session-id"), "caller": getattr(req.context, "caller", None)})

    async def process_shutdown(self, scope: Any, event: Any) -> None:
        state = self.ref.state
        for backend in state.backends.values():
            await backend.aclose()
        await state.sessions.aclose()


def build_state(config: AppConfig, *, rules: LoadedRules | None = None, backends: Mapping[str, Backend] | None = None,
                disable_auth: bool = False, disable_commands: bool = False) -> RuntimeState:
    """Everything a request needs. Raises :class:`dsl.RulesError` when the rules do not compile."""
    if rules is None:
        rules = load_rules_dir(config.routes_dir, known_backends=config.backends.keys())
        rules.raise_for_errors()
    built = dict(backends) if backends is not None else build_backends(config)
    return RuntimeState(
        config=config, rules=rules, ruleset=RuleSet(rules.rules), backends=built,
        sessions=make_repository(config.session), dispatcher=Dispatcher(built, deadline=config.proxy_timeout),
        auth=Authenticator(config.auth_keys, enabled=not disable_auth),
        commands_enabled=config.interactive_commands and not disable_commands,
    )


class ProxyApp(falcon.asgi.App):
    """Falcon's App plus a handle on the swappable runtime state (reload, tests)."""

    state_ref: StateRef


def create_app(config: AppConfig, **kwargs: Any) -> ProxyApp:
    """The ASGI app; ``kwargs`` go to :func:`build_state` (tests inject backends and rules)."""
    ref = StateRef(build_state(config, **kwargs))
    pipeline = Pipeline(ref)
    app = ProxyApp(middleware=[ProxyMiddleware(ref)])
    app.req_options.strip_url_path_trailing_slash = True
    models = ModelsResource(pipeline)
    openai_chat = ChatResource(pipeline, OPENAI)
    anthropic_chat = ChatResource(pipeline, ANTHROPIC)
    gemini = GeminiModelResource(pipeline, models)
    count_tokens = AnthropicCountTokensResource(pipeline)
    for version in ("v1", "v2"):
        app.add_route(f"/{version}/chat/completions", openai_chat)
        app.add_route(f"/{version}/messages", anthropic_chat)
        app.add_route(f"/{version}/messages/count_tokens", count_tokens)
        app.add_route(f"/{version}/models", models)
        app.add_route(f"/{version}/models/{{spec}}", gemini)
    app.add_route("/v2/models/list", models)
    app.add_route("/v1beta/models", models)
    app.add_route("/v1beta/models/{spec}", gemini)
    app.add_route("/health", HealthResource())
    app.add_route("/", RootResource())
    app.add_error_handler(Exception, handle_unexpected)
    app.add_error_handler(falcon.HTTPError, handle_http_error)
    app.add_error_handler(ProxyError, handle_proxy_error)
    app.state_ref = ref
    return app
