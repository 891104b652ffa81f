"""Requests to the proxy's ASGI app in this process: no server, no socket, no test client.

The in-process benchmarks (``benchmarks/inprocess_bench.py``, ``benchmarks/usage_bench.py``) and
the tests that count what one request does (``tests/router/state_store/test_round_trips.py``:
Redis round trips) call the app this way, so that what they measure is the app's own work and
both drive it alike. Falcon's test client would add its own per-request work and event loop.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Iterable

Header = tuple[bytes, bytes]


def request_scope(path: str, headers: Iterable[Header] = (), body: bytes = b"",
                  method: str = "POST") -> dict[str, Any]:
    """The ASGI scope of a JSON request from 127.0.0.1 to ``path`` with ``headers`` (beyond
    ``host``, ``content-type`` and the ``content-length`` of ``body``)."""
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
            "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()), *headers],
            "client": ("127.0.0.1", 5555), "server": ("127.0.0.1", 8000)}


def receive_once(body: bytes) -> Callable[[], Awaitable[dict[str, Any]]]:
    """An ASGI ``receive`` that gives ``body`` whole, once. The client never leaves: a second
    call (a stream's relay listening for a hang-up) waits for good, and is cancelled with the
    request when the reply is complete."""
    received = False

    async def receive() -> dict[str, Any]:
        nonlocal received
        if received:
            await asyncio.Event().wait()
        received = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def call(app: Any, scope: dict[str, Any], body: bytes) -> tuple[int, bytes]:
    """Send ``body`` to ``app`` under (a copy of) ``scope`` (see :func:`receive_once`): the
    reply's status and body."""
    status, chunks = 0, []

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(dict(scope), receive_once(body), send)
    return status, b"".join(chunks)


async def lifespan(app: Any, event: str) -> None:
    """Run the app's lifespan ``event`` (``startup`` or ``shutdown``) to its end: the connectors,
    stores and writers a request needs are started by ``startup``. Raises when the app reports
    the event failed."""
    messages = [{"type": f"lifespan.{event}"}]
    outcome: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")  # pragma: no cover - the wait above never ends

    async def send(message: dict[str, Any]) -> None:
        if message["type"].startswith(f"lifespan.{event}.") and not outcome.done():
            outcome.set_result(message)

    task = asyncio.get_running_loop().create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send))
    try:
        await asyncio.wait((task, outcome), return_when=asyncio.FIRST_COMPLETED)
        if not outcome.done():  # the app returned or raised without answering
            task.result()
            raise RuntimeError(f"lifespan {event}: the app ended without answering")
    finally:
        task.cancel()
    reply = outcome.result()
    if reply["type"] != f"lifespan.{event}.complete":
        raise RuntimeError(f"lifespan {event} failed: {reply.get('message', '')}")
