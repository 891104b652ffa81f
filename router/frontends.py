"""The three client wire formats as front ends: which codec, which error shape, which paths.

The error shape of a request is decided by its path alone, so even a 404 for an unknown path or a
401 before the body is read comes back in the shape the client's SDK can parse.
"""

from __future__ import annotations

from dataclasses import dataclass

from .wire import anthropic, gemini, openai
from .wire.codec import Codec


@dataclass(frozen=True, slots=True)
class Frontend:
    name: str  # "openai" | "anthropic" | "gemini"
    codec: Codec  # a codec module (router/wire/<format>.py)


OPENAI = Frontend("openai", openai)
ANTHROPIC = Frontend("anthropic", anthropic)
GEMINI = Frontend("gemini", gemini)
FRONTENDS = {f.name: f for f in (OPENAI, ANTHROPIC, GEMINI)}


GEMINI_ACTIONS = ("generateContent", "streamGenerateContent", "countTokens")


def frontend_for_path(path: str, method: str = "POST") -> Frontend:
    """Anthropic for ``/messages``, Gemini for ``/v1beta``, ``/v2/models/list`` and model actions, else OpenAI.

    ``GET /v1|v2/models/backend:model`` describes a model in OpenAI shape, so a colon in the last
    segment means a Gemini action only for a POST or a known action name.
    """
    if "/messages" in path:
        return ANTHROPIC
    if path.startswith("/v1beta") or path.startswith("/v1alpha") or path.rstrip("/") == "/v2/models/list":
        return GEMINI
    last = path.rstrip("/").rsplit("/", 1)[-1]
    if "/models/" in path and ":" in last and (method == "POST" or last.rpartition(":")[2] in GEMINI_ACTIONS):
        return GEMINI
    return OPENAI
