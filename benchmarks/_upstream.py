"""A minimal OpenAI-compatible upstream for benchmarks: fixed replies, optional slow streams.

python benchmarks/_upstream.py PORT     (model "stream-slow" streams 20 chunks 100 ms apart)
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


async def completions(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    if not body.get("stream"):
        return web.Response(body=REPLY_BYTES, content_type="application/json")
    slow = body.get("model") == "stream-slow"
    count, gap = (20, 0.1) if slow else (20, 0.0)
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    for i in range(count):
        await resp.write(chunk(f"tok{i} "))
        if gap:
            await asyncio.sleep(gap)
    await resp.write(chunk(None, "stop"))
    await resp.write(b"data: [DONE]\n\n")
    return resp


def main() -> None:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None, backlog=4096)


if __name__ == "__main__":
    main()
