"""The baseline: a bare Falcon ASGI pass-through, no auth, rules or translation.

python benchmarks/_passthrough.py PORT UPSTREAM_URL aiohttp|httpx
It forwards POST /v1/chat/completions bodies verbatim with one pooled client, so the proxy's
figures can be read as a fraction of "the least any Falcon proxy must do". A streaming request
(``"stream": true`` in the body) is relayed as it arrives, one write per upstream read (aiohttp only).
"""

from __future__ import annotations

import sys

import falcon.asgi
import uvicorn

PORT, UPSTREAM, CLIENT = int(sys.argv[1]), sys.argv[2], sys.argv[3]


class Forward:
    def __init__(self) -> None:
        self.session = None

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        body = await req.stream.read()
        if CLIENT == "aiohttp":
            import aiohttp

            if self.session is None:
                self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
            if b'"stream": true' in body or b'"stream":true' in body:
                r = await self.session.post(f"{UPSTREAM}/v1/chat/completions", data=body,
                                            headers={"Content-Type": "application/json"})
                resp.status = r.status
                resp.content_type = "text/event-stream"
                resp.stream = relay(r)
                return
            async with self.session.post(f"{UPSTREAM}/v1/chat/completions", data=body,
                                         headers={"Content-Type": "application/json"}) as r:
                resp.data = await r.read()
                resp.status = r.status
        else:
            import httpx

            if self.session is None:
                self.session = httpx.AsyncClient(limits=httpx.Limits(max_connections=None, max_keepalive_connections=256))
            r = await self.session.post(f"{UPSTREAM}/v1/chat/completions", content=body,
                                        headers={"Content-Type": "application/json"})
            resp.data = r.content
            resp.status = r.status_code
        resp.content_type = "application/json"


async def relay(r):  # type: ignore[no-untyped-def]
    try:
        async for chunk in r.content.iter_any():
            yield chunk
    finally:
        r.release()


app = falcon.asgi.App()
app.add_route("/v1/chat/completions", Forward())

if __name__ == "__main__":
    # The proxy's own uvicorn settings (no access log, no "server" header): the ratio then
    # measures the proxy's work, not a difference in server configuration.
    uvicorn.run(app, host="127.0.0.1", port=PORT, log_level="warning", access_log=False, loop="uvloop", http="httptools",
                server_header=False)
