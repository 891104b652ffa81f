"""The three client wire formats as front ends: which codec, which error shape, which paths,
which model-listing shape.

The error shape of a request is decided by its path alone, so even a 404 for an unknown path or a
401 before the body is read comes back in the shape the client's SDK can parse. The HTTP resources
are generic: whatever differs between front ends is asked of the front end (or its codec), never
branched on by name in a resource.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from .wire import anthropic, gemini, openai, responses
from .wire.codec import Codec

ModelIds = Iterable[tuple[str, str]]  # (backend, model) pairs


def _openai_model(backend: str, model: str, created: int) -> dict[str, Any]:
    return {"id": f"{backend}:{model}", "object": "model", "created": created, "owned_by": backend}


# Where each id can be sent, beside the OpenAI-shaped listing (SDKs read ``data`` and ignore the rest).
ENDPOINTS = {"chat.completions": "/v2/chat/completions", "responses": "/v2/responses", "messages": "/v2/messages"}


def _openai_models(ids: ModelIds, created: int) -> dict[str, Any]:
    return {"object": "list", "data": [_openai_model(b, m, created) for b, m in ids], "endpoints": dict(ENDPOINTS)}


def _gemini_model(backend: str, model: str, created: int) -> dict[str, Any]:
    return {"name": f"models/{backend}:{model}", "displayName": f"{model} ({backend})",
            "supportedGenerationMethods": list(GEMINI_ACTIONS)}


def _gemini_models(ids: ModelIds, created: int) -> dict[str, Any]:
    return {"models": [_gemini_model(b, m, created) for b, m in ids]}


@dataclass(frozen=True, slots=True)
class Frontend:
    """A client wire format: its codec, and the shapes of its model listing and model description
    (``created`` is the Unix time an OpenAI-shaped entry reports; Gemini's shape has none)."""

    name: str  # "openai" | "anthropic" | "gemini" | "responses"
    codec: Codec  # a codec module (router/wire/<format>.py)
    list_models: Callable[[ModelIds, int], dict[str, Any]] = _openai_models
    describe_model: Callable[[str, str, int], dict[str, Any]] = _openai_model


OPENAI = Frontend("openai", openai)
ANTHROPIC = Frontend("anthropic", anthropic)  # no model routes of its own: clients list models the OpenAI way
GEMINI = Frontend("gemini", gemini, list_models=_gemini_models, describe_model=_gemini_model)
RESPONSES = Frontend("responses", responses)  # lists models the OpenAI way, like its clients
FRONTENDS = {f.name: f for f in (OPENAI, ANTHROPIC, GEMINI, RESPONSES)}


GEMINI_ACTIONS = ("generateContent", "streamGenerateContent", "countTokens")


def frontend_for_path(path: str, method: str = "POST") -> Frontend:
    """Anthropic for ``/messages``, Responses for ``/v1|v2/responses``, Gemini for ``/v1beta``, ``/v2/models/list`` and model actions, else OpenAI.

    ``GET /v1|v2/models/backend:model`` describes a model in OpenAI shape, so a colon in the last
    segment means a Gemini action only for a POST or a known action name.
    """
    if "/messages" in path:
        return ANTHROPIC
    if path.startswith("/v1/responses") or path.startswith("/v2/responses"):
        return RESPONSES
    if path.startswith("/v1beta") or path.startswith("/v1alpha") or path.rstrip("/") == "/v2/models/list":
        return GEMINI
    last = path.rstrip("/").rsplit("/", 1)[-1]
    if "/models/" in path and ":" in last and (method == "POST" or last.rpartition(":")[2] in GEMINI_ACTIONS):
        return GEMINI
    return OPENAI


def is_google_client(headers: Mapping[str, str], params: Mapping[str, Any]) -> bool:
    """google-genai lists models at ``GET /v1/models`` (its default API version is v1): it is told
    apart from OpenAI clients, which share that path, by the headers and key parameter only Google's
    clients send. ``headers`` has lower-case names."""
    return bool(headers.get("x-goog-api-key") or headers.get("x-goog-api-client") or params.get("key"))


def models_frontend(path: str, headers: Mapping[str, str], params: Mapping[str, Any]) -> Frontend:
    """Whose shape a ``GET`` of a model listing or description gets: Gemini's on Gemini's paths
    (``/v1beta``, ``/v2/models/list``) or for a Google client, else OpenAI's."""
    if path.startswith("/v1beta") or path.rstrip("/") == "/v2/models/list" or is_google_client(headers, params):
        return GEMINI
    return OPENAI
