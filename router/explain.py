"""``explain``: the facts of a described request (CLI flags, an admin request's JSON, or the chat
request a ``!/route-explain`` arrives in), with every fact worked out, given to :func:`dsl.explain.explain`.

Evaluation fills only the facts some rule reads; an explanation shows them all, so the request
line says what each rule would see.
"""

from __future__ import annotations

from typing import Any, Mapping

from dsl.evaluate import Facts, RuleSet, clock_now
from dsl.explain import Explanation, explain
from dsl.session import session_ruleset

from .catalog import Catalog
from .config import AppConfig
from .errors import ProxyError
from .sessions import Session

FRONTENDS = ("openai", "anthropic", "gemini")


def explain_request(config: AppConfig, rules: RuleSet, catalog: Catalog, model: str, *, frontend: str = "openai",
                    headers: Mapping[str, str] | None = None, tokens: int = 0, caller: str | None = None,
                    stream: bool = False, tools: bool = False, session: Session | None = None) -> Explanation:
    """Explain one request as the proxy would plan it (a ``backend:model`` names the backend)."""
    backend, sep, rest = model.partition(":")
    client_backend = backend if sep and backend in config.backends else None
    if client_backend is not None:
        model = rest or (config.backends[backend].default_model or "")
    session_rules = RuleSet(())
    session_facts: dict[str, Any] = {}
    if session is not None:
        model = session.model or model
        session_rules = session_ruleset(session.route_edits, session.backend if not client_backend else None,
                                        None, session.oneoff)
        session_facts = {"project": session.project, "project_dir": session.project_dir, "backend": session.backend,
                         "model": session.model, "id": session.id}
    clock, weekday = clock_now()
    facts = Facts(model, frontend, client_backend or (session.backend if session else None), caller, tokens, stream,
                  tools, {k.lower(): v for k, v in (headers or {}).items()}, session_facts, clock, weekday,
                  catalog.context_window(model))
    return explain(facts, rules, session_rules=session_rules, default_backend=config.default_backend)


def explain_body(body: Any) -> dict[str, Any]:
    """The checked arguments of ``POST /v2/admin/explain``; a 400 naming the field otherwise."""
    if not isinstance(body, dict):
        raise ProxyError(400, "the body must be a JSON object like {\"model\": \"gpt-4o\"}", "invalid_request")
    known = {"model", "frontend", "headers", "tokens", "caller", "stream", "tools"}
    for key in body:
        if key not in known:
            raise ProxyError(400, f"{key}: unknown field; the fields are " + ", ".join(sorted(known)),
                             "invalid_request", param=str(key)[:100])
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ProxyError(400, "model: a model name is required", "invalid_request", param="model")
    frontend = body.get("frontend", "openai")
    if frontend not in FRONTENDS:
        raise ProxyError(400, "frontend: one of " + ", ".join(FRONTENDS), "invalid_request", param="frontend")
    headers = body.get("headers") or {}
    if not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise ProxyError(400, "headers: an object of header names to string values", "invalid_request", param="headers")
    tokens = body.get("tokens", 0)
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
        raise ProxyError(400, "tokens: a whole number of tokens, 0 or more", "invalid_request", param="tokens")
    caller = body.get("caller")
    if caller is not None and not isinstance(caller, str):
        raise ProxyError(400, "caller: a caller id (string)", "invalid_request", param="caller")
    for flag in ("stream", "tools"):
        if not isinstance(body.get(flag, False), bool):
            raise ProxyError(400, f"{flag}: true or false", "invalid_request", param=flag)
    return {"model": model, "frontend": frontend, "headers": headers, "tokens": tokens, "caller": caller,
            "stream": body.get("stream", False), "tools": body.get("tools", False)}
