"""A client that hangs up ends its stream at once, upstream call included.

Nothing tells an ASGI app that its client has gone except ``receive`` returning
``http.disconnect``, and that only to whoever is reading it. A stream relay is busy waiting for
the upstream, so an upstream that sends nothing for minutes kept its call, its rate-limit
reservation and its connection for minutes after the client had gone (the issue measured 109 s).
So the ``receive`` of a POST is wrapped (:class:`Hangup`): the moment the disconnect passes
through it, whatever is waiting for the upstream for this request (the request itself before the
first event, the relay afterwards) is cancelled. The cancellation arrives inside the pipeline's
stream (its ``finally`` closes the upstream response and writes the usage record, finish reason
``incomplete``) and ends there: the relay returns quietly, nothing is logged as an error.

Who reads ``receive``: one watcher task per request, started only once the request has lasted
:data:`FIRST_EVENT_GRACE` — a place in a shared list, not a task, covers the common case of a reply
that is over sooner, and nothing is started before the first byte goes out. The list
(:class:`_Watchlist`, one per event loop and grace) has one loop timer for all its requests:
a timer per request (``call_later``: a handle, a heap push, a cancellation) took ~4% of the py-spy
samples of a stream's path to its first byte (``benchmarks/inprocess_bench.py --stream --ttfb``).
Coding agents' streams last seconds, so they get their watcher half a second in; a client
leaving before then is noticed within the grace (its writes go nowhere meanwhile, ASGI's ``send`` after a disconnect does
nothing). Before the first event the request is cancelled (the upstream call with it) and
recorded with status 499; afterwards the relay ends. (Falcon's own SSE path started a watcher
task per stream before the first byte, and awaited its cancellation before the last: the
relay therefore goes out as ``resp.stream``.) Falcon's test conductor, which hangs up at once,
therefore cuts only streams that last longer than the grace.

Only the wait for the upstream is cancelled, never a ``send``; a hang-up noticed between events
ends the relay before its next read, and :meth:`Hangup.close` (run by the app once Falcon is
done) closes a relay Falcon left suspended and stops the timer or watcher.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, AsyncIterator, Awaitable, Callable, TypeVar

__all__ = ["SCOPE_KEY", "Hangup"]

SCOPE_KEY = "llm_proxy.hangup"  # where the app leaves the request's Hangup in the ASGI scope
FIRST_EVENT_GRACE = 0.5  # seconds a stream may take to start before the client is watched

T = TypeVar("T")


class Hangup:
    """The ASGI ``receive`` of one request, plus what a stream relay needs to stop on a hang-up."""

    __slots__ = ("_receive", "gone", "relay", "_waiting", "_cancelled", "_timer", "_watcher")

    def __init__(self, receive: Callable[[], Awaitable[dict[str, Any]]] | None) -> None:
        self._receive = receive
        self.gone = False  # the client disconnected
        self.relay: Any = None  # the relay the response sends, until closed by :meth:`close`
        self._waiting: asyncio.Task[Any] | None = None  # the task waiting for the upstream, if any
        self._cancelled = False  # we cancelled that task
        self._timer: _Watchlist | None = None  # the list that starts the watcher after the grace
        self._watcher: asyncio.Task[None] | None = None  # reads receive until the client leaves

    @property
    def watching(self) -> bool:
        """A timer or watcher runs: :meth:`close` must stop it."""
        return self._timer is not None or self._watcher is not None

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

    def watch_after(self, grace: float = FIRST_EVENT_GRACE) -> None:
        """Start reading ``receive`` for a hang-up once ``grace`` seconds have passed (once per request)."""
        if self._timer is None and self._watcher is None and self._receive is not None:
            loop = asyncio.get_running_loop()
            watchlist = _LISTS.get((loop, grace))
            if watchlist is None:
                watchlist = _LISTS[(loop, grace)] = _Watchlist(loop, grace)
            watchlist.add(self)
            self._timer = watchlist

    def _watch(self) -> None:
        self._timer = None
        self._watcher = asyncio.ensure_future(self._until_gone())

    async def _until_gone(self) -> None:
        while not self.gone:
            await self()

    def _stop_watching(self) -> None:
        watchlist, watcher = self._timer, self._watcher
        self._timer = self._watcher = None  # (a list's entry left behind is skipped when due)
        if watchlist is not None:
            watchlist.drop(self)
        if watcher is not None:
            watcher.cancel()

    def _ours(self, task: asyncio.Task[Any] | None) -> bool:
        """A CancelledError in ``task`` came from the client leaving (not from a server shutdown,
        which cancels too: then it must go on)."""
        return self._cancelled and task is not None and task.uncancel() == 0

    async def frames(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """``chunks`` until they end or the client leaves; ``chunks`` is closed either way."""
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
                yield chunk
        except asyncio.CancelledError:
            if not self._ours(task):
                raise
        finally:
            self._stop_watching()
            self.relay = None  # closed here: nothing left for :meth:`close`
            await chunks.aclose()

    async def before_first_event(self, work: Awaitable[T], grace: float = FIRST_EVENT_GRACE) -> T | None:
        """``await work`` (a stream's request up to its first event); None when the client left
        first. The watcher started after ``grace`` (:meth:`watch_after`) goes on watching the relay
        that follows; :meth:`frames` or :meth:`close` stops it."""
        task = asyncio.current_task()
        assert task is not None
        self.watch_after(grace)
        self._waiting = task
        try:
            return await work
        except asyncio.CancelledError:
            if not self._ours(task):
                raise  # not ours (server shutdown)
            self._stop_watching()
            return None
        except BaseException:
            self._stop_watching()
            raise
        finally:
            self._waiting = None

    def start(self, relay: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """Remember the relay (:meth:`frames`) the response sends, for :meth:`close`."""
        self.relay = relay
        return relay

    async def close(self) -> None:
        """Stop the timer or watcher, and close the relay if it was left suspended (Falcon stops
        iterating on an error without closing what it iterated)."""
        self._stop_watching()
        relay, self.relay = self.relay, None
        if relay is not None:
            await relay.aclose()


class _Watchlist:
    """The requests of one event loop waiting out one grace, in the order they are due, and one
    loop timer for the first of them. A request that ends sooner is not taken out (that would
    cost a search): it stops pointing at the list, and its entry is dropped when due."""

    __slots__ = ("loop", "grace", "due", "timer")

    def __init__(self, loop: asyncio.AbstractEventLoop, grace: float) -> None:
        self.loop, self.grace = loop, grace
        self.due: deque[tuple[float, Hangup]] = deque()
        self.timer: asyncio.TimerHandle | None = None

    def add(self, hangup: Hangup) -> None:
        when = self.loop.time() + self.grace
        self.due.append((when, hangup))
        if self.timer is None:
            self.timer = self.loop.call_at(when, self._sweep)

    def drop(self, hangup: Hangup) -> None:
        """Forget ``hangup`` when it is the latest entry (one stream at a time: always), so an idle
        list's timer finds nothing and is not set again until the next stream."""
        due = self.due
        if due and due[-1][1] is hangup:
            due.pop()

    def _sweep(self) -> None:
        """Start the watcher of every request whose grace is over and that still waits for it."""
        self.timer = None
        due = self.due
        now = self.loop.time() + _EARLY
        while due and due[0][0] <= now:
            hangup = due.popleft()[1]
            if hangup._timer is self:
                hangup._watch()
        if due:
            self.timer = self.loop.call_at(due[0][0], self._sweep)
        elif _LISTS.get((self.loop, self.grace)) is self:
            del _LISTS[(self.loop, self.grace)]  # idle: a closed loop (tests) leaves nothing behind


_LISTS: dict[tuple[asyncio.AbstractEventLoop, float], _Watchlist] = {}
_EARLY = 0.001  # seconds a watcher may start before its grace is over (the loop's timers fire that early too)
