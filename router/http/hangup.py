"""A client that hangs up ends its stream at once, upstream call included.

Falcon relays ``resp.sse`` by iterating it and watches for the client leaving in a task of its own
(it reads ASGI ``receive`` until ``http.disconnect``), but it only looks at what that task saw
after it has sent the next event. An upstream that sends nothing for minutes therefore kept its
call, its rate-limit reservation and its connection for minutes after the client had gone (the
issue measured 109 s). So the ``receive`` Falcon reads is wrapped (:class:`Hangup`): the moment
the disconnect passes through it, a relay that is waiting for the upstream's next event is
cancelled. The cancellation arrives inside the pipeline's stream (its ``finally`` closes the
upstream response and writes the usage record, finish reason ``incomplete``) and ends there: the
relay returns quietly, nothing is logged as an error.

Only the wait for the next upstream event is cancelled, never Falcon's own ``send``; a hang-up
noticed between events ends the relay through Falcon's check after its send, and
:meth:`Hangup.close` (run by the app once Falcon is done) closes a relay Falcon left suspended.

The time before a stream starts (the wait for the upstream's first event, long for reasoning
models) is watched only once it has lasted :data:`FIRST_EVENT_GRACE`: a timer, not a task, covers
the common case of a quick first event, and only a slow start gets a watcher task that reads
``receive``; if the client leaves, the request is cancelled (the upstream call with it) and recorded
with status 499. (Falcon's test conductor, which hangs up at once, therefore cuts only streams whose
first event takes longer than the grace.)
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Awaitable, Callable, TypeVar

__all__ = ["SCOPE_KEY", "Hangup"]

SCOPE_KEY = "llm_proxy.hangup"  # where the app leaves the request's Hangup in the ASGI scope
FIRST_EVENT_GRACE = 0.5  # seconds a stream may take to start before the client is watched

T = TypeVar("T")


class Hangup:
    """The ASGI ``receive`` of one request, plus what a stream relay needs to stop on a hang-up."""

    __slots__ = ("_receive", "gone", "relay", "_waiting", "_cancelled")

    def __init__(self, receive: Callable[[], Awaitable[dict[str, Any]]] | None) -> None:
        self._receive = receive
        self.gone = False  # the client disconnected
        self.relay: Any = None  # the relay the response sends, until closed by :meth:`close`
        self._waiting: asyncio.Task[Any] | None = None  # the task waiting for the upstream, if any
        self._cancelled = False  # we cancelled that task

    async def __call__(self) -> dict[str, Any]:
        assert self._receive is not None, "a detached Hangup (no receive) is never called"
        message = await self._receive()
        if message["type"] == "http.disconnect" and not self.gone:
            self.gone = True
            waiting = self._waiting
            if waiting is not None:
                self._cancelled = True
                waiting.cancel()
        return message

    async def frames(self, chunks: AsyncIterator[bytes], wrap: Callable[[bytes], Any]) -> AsyncIterator[Any]:
        """``chunks`` as ``wrap(chunk)`` items until they end or the client leaves; ``chunks`` is
        closed either way."""
        task = asyncio.current_task()
        try:
            while not self.gone:
                self._waiting = task
                try:
                    chunk = await anext(chunks)
                except StopAsyncIteration:
                    return
                finally:
                    self._waiting = None
                yield wrap(chunk)
        except asyncio.CancelledError:
            # Ours (the client left) unless someone else cancels too (server shutdown): re-raise then.
            if not self._cancelled or task is None or task.uncancel() > 0:
                raise
        finally:
            await chunks.aclose()

    async def before_first_event(self, work: Awaitable[T], grace: float = FIRST_EVENT_GRACE) -> T | None:
        """``await work`` (a stream's request up to its first event); None when the client left
        first: after ``grace`` a watcher reads ``receive``, and a disconnect cancels ``work``."""
        task = asyncio.current_task()
        assert task is not None
        watcher: asyncio.Task[None] | None = None

        def watch() -> None:
            nonlocal watcher
            watcher = asyncio.ensure_future(self._until_gone(task))

        timer = asyncio.get_running_loop().call_later(grace, watch)
        try:
            return await work
        except asyncio.CancelledError:
            if not self._cancelled or task.uncancel() > 0:
                raise  # not ours (server shutdown)
            return None
        finally:
            timer.cancel()
            if watcher is not None:
                watcher.cancel()

    async def _until_gone(self, task: asyncio.Task[Any]) -> None:
        while not self.gone:
            await self()
        self._cancelled = True
        task.cancel()

    def start(self, relay: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """Remember the relay (:meth:`frames`) the response sends, for :meth:`close`."""
        self.relay = relay
        return relay

    async def close(self) -> None:
        """Close the relay if it was left suspended (Falcon stops iterating when it sees the client
        gone after a send, without closing what it iterated)."""
        relay, self.relay = self.relay, None
        if relay is not None:
            await relay.aclose()
