"""The soak's local fake provider: ``tests/fakes``' FakeProvider (OpenAI, Anthropic, Gemini on one port)
with the behaviours the soak's mix asks for by model name, run as its own process.

python benchmarks/_soak_provider.py        (prints the port it listens on, then serves until killed)

Models: ``soak-tool`` answers with a tool call, ``soak-textual`` with a tool call written as text
(tool-call repair), ``soak-cut`` resets the connection after 3 stream chunks, ``soak-slow`` streams
40 chunks 50 ms apart (for clients that hang up mid-stream), ``soak-loop`` repeats a sentence
(loop detection), ``fail-500`` is a 500 (failover); any other model gets an echo.
The fake records every request; the record is cleared each second so the fake's own memory stays
flat over an hour.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiohttp import web  # noqa: E402

from tests.fakes.provider import (  # noqa: E402
    FakeProvider, loop, reply, reset_after_chunks, stream_chunks, textual_tool_call,
)

# Idle connections are closed after this many seconds (real providers close idle connections
# too), so the proxy's pooled upstream sockets go soon after the load stops and the soak can check
# that its descriptors return to idle within seconds rather than the pool's own 60 s.
KEEPALIVE_SECONDS = 3


async def serve() -> None:
    fake = FakeProvider()
    fake.on_model("soak-tool", reply(tool_calls=[{"name": "read_file", "arguments": {"path": "README.md"}}]))
    fake.on_model("soak-textual", textual_tool_call())
    fake.on_model("soak-cut", reset_after_chunks(3))
    fake.on_model("soak-slow", stream_chunks([f"tok{i} " for i in range(40)], gap=0.05))
    fake.on_model("soak-loop", loop("the same sentence comes back again. ", times=60, gap=0.0))
    app = web.Application(middlewares=[fake._recording_middleware], client_max_size=64 * 1024 * 1024)
    fake._add_routes(app)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, keepalive_timeout=KEEPALIVE_SECONDS)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    print(runner.addresses[0][1], flush=True)
    while True:
        await asyncio.sleep(1)
        fake.requests.clear()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    asyncio.run(serve())
