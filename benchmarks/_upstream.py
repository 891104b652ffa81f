"""A minimal upstream for benchmarks: fixed replies, streams of any length, three wire formats.

python benchmarks/_upstream.py PORT

OpenAI ``POST /v1/chat/completions``, Anthropic ``POST /v1/messages`` and Gemini
``POST /v1beta/models/{model}:generateContent|streamGenerateContent``. A stream carries
``STREAM_TEXT_CHUNKS`` text chunks (9 SSE events in OpenAI's format, with the finish chunk and
``[DONE]``); model ``stream-<N>`` asks for N text chunks, ``stream-slow`` for 20 chunks 100 ms apart.
Each stream is written with one write per event, as providers send them.
"""

from __future__ import annotations

import asyncio
import json
import sys

from aiohttp import web

REPLY = {
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1700000000, "model": "bench",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello from the benchmark upstream."},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20},
}
REPLY_BYTES = json.dumps(REPLY).encode()


def chunk(text: str | None, finish: str | None = None) -> bytes:
    delta = {"content": text} if text is not None else {}
    body = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000, "model": "bench",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


STREAM_TEXT_CHUNKS = 7


def shape(model: str) -> tuple[int, float]:
    """(text chunks, seconds between them) for a streamed reply to ``model``."""
    if model == "stream-slow":
        return 20, 0.1
    if model.startswith("stream-") and model[7:].isdigit():
        return int(model[7:]), 0.0
    return STREAM_TEXT_CHUNKS, 0.0


async def completions(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    if not body.get("stream"):
        return web.Response(body=REPLY_BYTES, content_type="application/json")
    count, gap = shape(str(body.get("model")))
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    for i in range(count):
        await resp.write(chunk(f"tok{i} "))
        if gap:
            await asyncio.sleep(gap)
    await resp.write(chunk(None, "stop"))
    await resp.write(b"data: [DONE]\n\n")
    return resp


def event(name: str, data: dict) -> bytes:
    return f"event: {name}\ndata: ".encode() + json.dumps(data).encode() + b"\n\n"


async def messages(request: web.Request) -> web.StreamResponse:
    """Anthropic Messages: a stream only (the benchmarks' cross-format streams)."""
    body = await request.json()
    count, gap = shape(str(body.get("model")))
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    await resp.write(event("message_start", {"type": "message_start", "message": {
        "id": "msg_bench", "type": "message", "role": "assistant", "model": "bench", "content": [],
        "stop_reason": None, "usage": {"input_tokens": 12, "output_tokens": 1}}}))
    await resp.write(event("content_block_start", {"type": "content_block_start", "index": 0,
                                                   "content_block": {"type": "text", "text": ""}}))
    for i in range(count):
        await resp.write(event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                       "delta": {"type": "text_delta", "text": f"tok{i} "}}))
        if gap:
            await asyncio.sleep(gap)
    await resp.write(event("content_block_stop", {"type": "content_block_stop", "index": 0}))
    await resp.write(event("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                                             "usage": {"output_tokens": count}}))
    await resp.write(event("message_stop", {"type": "message_stop"}))
    return resp


async def gemini(request: web.Request) -> web.StreamResponse:
    """Gemini ``models/{model}:streamGenerateContent?alt=sse`` (and a plain generateContent)."""
    model, _, action = request.match_info["spec"].rpartition(":")
    await request.read()
    count, gap = shape(model)

    def candidate(text: str, finish: str | None = None) -> bytes:
        cand: dict = {"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}
        data: dict = {"candidates": [cand], "modelVersion": "bench"}
        if finish:
            cand["finishReason"] = finish
            data["usageMetadata"] = {"promptTokenCount": 12, "candidatesTokenCount": count, "totalTokenCount": 12 + count}
        return b"data: " + json.dumps(data).encode() + b"\r\n\r\n"

    if action != "streamGenerateContent":
        return web.Response(body=candidate("Hello from the benchmark upstream.", "STOP")[6:-4],
                            content_type="application/json")
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    for i in range(count):
        await resp.write(candidate(f"tok{i} ", "STOP" if i == count - 1 else None))
        if gap:
            await asyncio.sleep(gap)
    return resp


def main() -> None:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1beta/models/{spec}", gemini)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None, backlog=4096)


if __name__ == "__main__":
    main()
