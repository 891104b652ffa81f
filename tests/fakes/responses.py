"""The fake provider's OpenAI Responses side: ``POST /v1/responses`` (same keys and error shapes
as the Chat Completions side; replies and streams written by ``router/wire/responses.py``)."""

from __future__ import annotations

import base64

from aiohttp import web

from router.wire import responses as responses_wire
from router.wire.canonical import OpaquePart

from .openai import auth_error, openai_error
from .recording import RECORD, RecordedRequest
from .wire_format import WireFormat


class ResponsesRoutes:
    """Route handler of the Responses side (mixed into :class:`fakes.provider.FakeProvider`)."""

    def _add_responses_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/responses", self._responses)

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        record: RecordedRequest = request[RECORD]
        body = record.body if isinstance(record.body, dict) else {}
        return await self._generate(request, "responses", str(body.get("model") or ""),  # type: ignore[attr-defined]
                                    body.get("stream") is True)


def reasoning_item(number: int, summary: str) -> OpaquePart:
    """The reasoning item OpenAI's Responses API sends: the summary, and the reasoning itself
    encrypted (here a stand-in token: no client can read it, a Responses client sends it back)."""
    token = "gAAAAB" + base64.urlsafe_b64encode(f"fake-reasoning-{number}:{summary}".encode()).decode()
    return OpaquePart("responses", {"type": "reasoning", "id": f"rs_fake{number}",
                                    "summary": [{"type": "summary_text", "text": summary}] if summary else [],
                                    "encrypted_content": token})


FORMAT = WireFormat(
    "responses", error=lambda status, message, model, _retry: openai_error(status, message, model),
    auth_error=auth_error, decode=lambda body, _model, _stream: responses_wire.decode_request(body),
    encode=lambda response, _keep_ids: responses_wire.encode_response(response),
    stream_encoder=lambda _include_usage: responses_wire.StreamEncoder(),
    retry_after_header=True, response_prefix="resp_fake", call_prefix="call_fake", reasoning_item=reasoning_item,
)
