"""A programmable local fake LLM provider for connector and dispatch tests.

One aiohttp server on 127.0.0.1 (random free port) speaks four provider wire formats, so a
backend connector can be pointed at ``fake.url`` instead of the real service:

- OpenAI Chat Completions: ``POST /v1/chat/completions`` (JSON, or SSE ending ``data: [DONE]``),
  ``GET /v1/models``; ``Authorization: Bearer <key>``.
- Anthropic Messages: ``POST /v1/messages`` (JSON, or SSE ``message_start`` ... ``message_stop``),
  ``GET /v1/models``; ``x-api-key`` (or ``Authorization: Bearer``), ``anthropic-version`` required.
- Gemini API: ``POST /v1beta/models/{model}:generateContent`` / ``:streamGenerateContent``
  (``?alt=sse`` for SSE, otherwise a streamed JSON array), ``GET /v1beta/models[/{model}]``;
  ``x-goog-api-key`` header or ``?key=``.
- Google Code Assist (what Gemini CLI's OAuth login talks to, ``cloudcode-pa``):
  ``POST /v1internal:loadCodeAssist``, ``:onboardUser``, ``:generateContent``,
  ``:streamGenerateContent?alt=sse``, ``GET /v1internal/operations/{name}``; Bearer access token.
- An OAuth2 token endpoint ``POST /token`` (``grant_type=refresh_token``) that mints access tokens
  the Code Assist routes then accept.

Replies are produced with the project's own wire codecs (``router.wire.*``) from a canonical
:class:`~router.canonical.ChatResponse`, so the bytes match what the proxy's decoders expect,
while errors, auth failures and the Code Assist envelope are written here in each provider's
real shape. What a generation request gets is *programmable*: a queue of behaviours (see the
factory functions :func:`reply`, :func:`error`, :func:`delay`, :func:`stream_chunks`,
:func:`reset`, :func:`reset_after_chunks`, :func:`textual_tool_call`, :func:`loop`,
:func:`stream_error`, :func:`raw_stream`), per-model rules, and a default that echoes the last
user text. Every request is recorded (:class:`RecordedRequest`) including, for streams, how many chunks were sent
and whether the client hung up early.

Usage::

    async with FakeProvider() as fake:
        fake.enqueue(error(429, retry_after=2), reply(text="hi"))
        ...  # point a backend at fake.url with api key fake.key("openai")
        assert fake.last.headers["authorization"] == "Bearer sk-fake-openai"
"""


# The fake is assembled from one module per wire format (``openai``, ``anthropic``, ``gemini``,
# ``code_assist``), the shared engine (``core``), the behaviours and the record; every name tests
# import from here stays importable from here.

from __future__ import annotations

from aiohttp import web

from .anthropic import AnthropicRoutes, anthropic_error, anthropic_models
from .behaviours import (
    DEFAULT_TEXTUAL_TOOL_CALL, Behaviour, Delay, Error, Loop, RawStream, Reply, Reset, ResetAfterChunks,
    StreamChunks, StreamErrorAfter, behaviour_name, delay, error, loop, raw_stream, reply, reset,
    reset_after_chunks, stream_chunks, stream_error, textual_tool_call,
)
from .code_assist import TIERS, CodeAssistRoutes, CodeAssistState, OAuthState
from .core import DEFAULT_KEYS, DEFAULT_MODELS, FAMILIES, ProviderCore, error_body
from .gemini import GeminiRoutes, google_error, strip_function_call_ids
from .openai import OpenAIRoutes, openai_error
from .responses import ResponsesRoutes
from .recording import RECORD, RecordedRequest


class FakeProvider(OpenAIRoutes, ResponsesRoutes, AnthropicRoutes, GeminiRoutes, CodeAssistRoutes, ProviderCore):
    """A local fake of OpenAI (Chat Completions and Responses), Anthropic, Gemini, Code Assist and
    Google OAuth, all on one port: the engine (:class:`ProviderCore`, whose docstring lists what
    tests set and read) with each wire format's routes."""

    def _add_routes(self, app: web.Application) -> None:
        router = app.router  # in this order: aiohttp matches routes in the order they were added
        self._add_openai_routes(router)
        self._add_responses_routes(router)
        self._add_anthropic_routes(router)
        self._add_gemini_routes(router)
        self._add_code_assist_routes(router)


__all__ = [
    "FakeProvider", "ProviderCore", "RecordedRequest", "RECORD", "FAMILIES", "DEFAULT_KEYS", "DEFAULT_MODELS",
    "DEFAULT_TEXTUAL_TOOL_CALL", "Behaviour", "Reply", "Error", "Delay", "StreamChunks", "Reset",
    "ResetAfterChunks", "Loop", "StreamErrorAfter", "RawStream", "behaviour_name", "reply", "error", "delay",
    "stream_chunks", "reset", "reset_after_chunks", "textual_tool_call", "loop", "stream_error", "raw_stream",
    "TIERS", "CodeAssistState", "OAuthState", "openai_error", "anthropic_error", "anthropic_models",
    "google_error", "error_body", "strip_function_call_ids",
]
