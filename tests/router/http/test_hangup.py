"""router/http/hangup.py on its own: who reads ``receive``, and when.

Live-server tests of the same (the upstream call ends within a second of the client leaving,
before and after the first event) are in tests/router/test_stream_limits.py.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

import pytest

from router.http.hangup import Hangup


class Client:
    """An ASGI ``receive`` whose client leaves when told to; counts how often it was read."""

    def __init__(self) -> None:
        self.left = asyncio.Event()
        self.reads = 0

    async def receive(self) -> dict[str, Any]:
        self.reads += 1
        await self.left.wait()
        return {"type": "http.disconnect"}


class Upstream:
    """Chunks that come at once, then (optionally) never; remembers being closed."""

    def __init__(self, chunks: list[bytes], then_silent: bool = False) -> None:
        self.chunks, self.then_silent, self.closed = chunks, then_silent, False

    async def __call__(self) -> AsyncIterator[bytes]:
        try:
            for chunk in self.chunks:
                yield chunk
            if self.then_silent:
                await asyncio.Event().wait()
        finally:
            self.closed = True


async def test_a_stream_over_within_the_grace_starts_no_task_and_leaves_no_timer() -> None:
    client = Client()
    hangup = Hangup(client.receive)
    tasks_before = len(asyncio.all_tasks())

    async def first_event() -> str:
        return "first"

    assert await hangup.before_first_event(first_event(), grace=5) == "first"
    assert hangup.watching  # a timer, not a task, covers the relay that follows
    assert len(asyncio.all_tasks()) == tasks_before
    upstream = Upstream([b"a", b"b", b"c"])
    relay = hangup.start(hangup.frames(upstream()))
    assert [chunk async for chunk in relay] == [b"a", b"b", b"c"]
    assert upstream.closed and not hangup.watching and hangup.relay is None
    assert client.reads == 0  # nobody read receive: the client was never waited for


async def test_a_client_leaving_mid_stream_ends_a_relay_waiting_for_a_silent_upstream() -> None:
    client = Client()
    hangup = Hangup(client.receive)

    async def first_event() -> str:
        return "first"

    await hangup.before_first_event(first_event(), grace=0.01)
    upstream = Upstream([b"first"], then_silent=True)
    got: list[bytes] = []

    async def relay() -> None:
        async for chunk in hangup.start(hangup.frames(upstream())):
            got.append(chunk)

    relaying = asyncio.ensure_future(relay())
    await asyncio.sleep(0.05)  # past the grace: the watcher reads receive
    assert client.reads == 1 and got == [b"first"]
    client.left.set()
    await asyncio.wait_for(relaying, 1)  # ends quietly: the cancellation was ours
    assert upstream.closed and hangup.gone and not hangup.watching


async def test_a_client_leaving_before_the_first_event_cancels_the_request() -> None:
    client = Client()
    hangup = Hangup(client.receive)
    upstream_cancelled = asyncio.Event()

    async def thinking_for_minutes() -> str:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            upstream_cancelled.set()
            raise
        return "too late"

    waiting = asyncio.ensure_future(hangup.before_first_event(thinking_for_minutes(), grace=0.01))
    await asyncio.sleep(0.05)
    assert client.reads == 1 and not waiting.done()
    client.left.set()
    assert await asyncio.wait_for(waiting, 1) is None
    assert upstream_cancelled.is_set() and not hangup.watching


async def test_a_client_leaving_within_the_grace_is_noticed_when_it_ends() -> None:
    """A hang-up before the watcher starts goes unseen until the grace is over, then ends the relay."""
    client = Client()
    client.left.set()  # gone from the start
    hangup = Hangup(client.receive)

    async def first_event() -> str:
        return "first"

    await hangup.before_first_event(first_event(), grace=0.05)
    upstream = Upstream([b"first"], then_silent=True)
    relaying = asyncio.ensure_future(_drain(hangup.start(hangup.frames(upstream()))))
    await asyncio.sleep(0.01)
    assert not relaying.done() and client.reads == 0
    assert await asyncio.wait_for(relaying, 1) == [b"first"]
    assert upstream.closed


async def test_a_server_shutdown_cancelling_the_relay_is_not_swallowed() -> None:
    client = Client()
    hangup = Hangup(client.receive)
    upstream = Upstream([b"first"], then_silent=True)
    relaying = asyncio.ensure_future(_drain(hangup.start(hangup.frames(upstream()))))
    await asyncio.sleep(0.01)
    relaying.cancel()  # not the client: uvicorn shutting down
    with pytest.raises(asyncio.CancelledError):
        await relaying
    assert upstream.closed


async def test_close_stops_the_timer_of_a_stream_that_was_never_relayed() -> None:
    """A reply read whole by the resource (Gemini's JSON array), or an error after the first event."""
    client = Client()
    hangup = Hangup(client.receive)

    async def first_event() -> str:
        return "first"

    await hangup.before_first_event(first_event(), grace=0.01)
    assert hangup.watching
    await hangup.close()
    assert not hangup.watching
    await asyncio.sleep(0.03)
    assert client.reads == 0  # the timer did not fire after close


async def _drain(relay: AsyncIterator[bytes]) -> list[bytes]:
    return [chunk async for chunk in relay]


async def test_streams_waiting_out_their_grace_share_one_loop_timer() -> None:
    """One timer for every request in its grace (router/http/hangup.py ``_Watchlist``), not one each;
    a request over before its grace is skipped when due, the others get their watcher."""
    loop = asyncio.get_running_loop()
    scheduled_before = len(loop._scheduled)  # type: ignore[attr-defined]
    clients = [Client() for _ in range(5)]
    hangups = [Hangup(client.receive) for client in clients]
    for hangup in hangups:
        hangup.watch_after(0.02)
    assert all(hangup.watching for hangup in hangups)
    assert len(loop._scheduled) == scheduled_before + 1  # type: ignore[attr-defined]
    await hangups[0].close()  # over within the grace
    await asyncio.sleep(0.05)
    assert clients[0].reads == 0 and [client.reads for client in clients[1:]] == [1, 1, 1, 1]
    for hangup in hangups:
        await hangup.close()
    assert not any(hangup.watching for hangup in hangups)
