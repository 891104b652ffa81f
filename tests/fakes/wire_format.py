"""What differs between the fake provider's wire formats, as one record per format that the
shared engine (:mod:`fakes.core`) looks up by family name instead of branching on it. Each format
module (``openai``, ``anthropic``, ``gemini``, ``code_assist``) defines its ``FORMAT``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from aiohttp import web

from router.wire.canonical import ChatRequest, ChatResponse, OpaquePart


@dataclass(frozen=True)
class WireFormat:
    name: str
    error: Callable[[int, str | None, str, float | None], dict[str, Any]]  # (status, message, model, retry_after)
    auth_error: Callable[[str | None], web.Response]  # (presented key or None) -> the provider's refusal
    decode: Callable[[Any, str, bool], ChatRequest]  # (body, model, stream); raises CodecError on a bad body
    encode: Callable[[ChatResponse, bool], dict[str, Any]]  # (response, keep functionCall ids)
    stream_encoder: Callable[[bool], Any]  # (include_usage) -> a router.wire StreamEncoder
    google_frames: bool = False  # Gemini-style frames: ids dropped, JSON-array streams without ?alt=sse
    envelope: bool = False  # Code Assist wraps every response item in {"response", "traceId"}
    retry_after_header: bool = False  # else the retry hint goes in the body (Google's RetryInfo)
    request_id_header: bool = False
    response_prefix: str = "fake-resp-"
    call_prefix: str = "call_fake"
    overloaded_status: int = 503
    # (reply number, summary) -> the provider's own reasoning item for a reply with thinking (the
    # Responses API's, with encrypted content); None: thinking is plain text in the format
    reasoning_item: Callable[[int, str], OpaquePart] | None = None
