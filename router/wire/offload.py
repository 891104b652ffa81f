"""Work that grows with a request's size leaves the event loop when the request is large.

One request of up to ``max_body_bytes`` (10 MB by default) must not keep the loop from serving
everyone else: decoding a body of 200,000 small messages, scanning a megabyte message for commands
or encoding it for a provider takes Python time in proportion to its size. Such work is done in a
worker thread when the client's body had at least :data:`LARGE_BYTES`; the loop then gets the GIL
back every switch interval (5 ms) and keeps answering. Small requests (nearly all) run inline: a
thread hop costs more than the work.
"""

from __future__ import annotations

import asyncio
import functools
import gc
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

T = TypeVar("T")

LARGE_BYTES = 256 * 1024
"""From this body size on, size-proportional work runs in a worker thread."""

WORKERS = 2
"""Threads for large work. Few on purpose: each busy one competes with the loop for the GIL, so
many large requests at once queue here instead of slowing everyone else."""

_executor: ThreadPoolExecutor | None = None


def is_large(size: int) -> bool:
    return size >= LARGE_BYTES


async def off_loop(fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)`` in one of the :data:`WORKERS` threads (see module doc)."""
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(WORKERS, thread_name_prefix="large-request")
    return await asyncio.get_running_loop().run_in_executor(_executor, functools.partial(fn, *args))


LET_GO_STEP = 4096
"""Items a list loses per event-loop step in :func:`let_go`."""


async def let_go(*lists: list[object]) -> None:
    """Empty each of ``lists`` :data:`LET_GO_STEP` items at a time, letting the loop run between.

    Why: the last reference to a large request going away frees all of it in one step, and
    deallocation is C code that holds the GIL throughout (a worker thread cannot take it over):
    the 200,000 messages of a 9 MB body (the parsed JSON and the canonical request) took 45-85 ms
    to free at once, the longest step of their request. Only for lists nothing reads any more."""
    for items in lists:
        while items:
            del items[-LET_GO_STEP:]
            await asyncio.sleep(0)


async def run_sized(size: int, fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)``: inline for a small request, in a worker thread for a large one (see module doc)."""
    if size < LARGE_BYTES:
        return fn(*args)
    return await off_loop(fn, *args)


GC_PAUSE_KEY = "llm_proxy.gc_paused"
"""ASGI scope key set on a request that paused the cyclic garbage collector (see :func:`pause_gc`)."""

_gc_holds = 0
_gc_was_enabled = False


def pause_gc() -> None:
    """The cyclic garbage collector stops until :func:`resume_gc` (counted: the last resume of
    overlapping large requests restarts it).

    Why: a large body makes ~a million objects that live until its request ends; every full
    collection meanwhile walks all of them while holding the GIL. Decoding the 9 MB "many small
    messages" body triggered seven of them, 105-211 ms each, and the loop waited through every one
    (a worker thread cannot help). Reference counting still frees everything acyclic at once;
    cycles made meanwhile (by any request) wait for the collector, which runs again when the last
    large request has ended and its objects are gone, so that restart walks only what survives."""
    global _gc_holds, _gc_was_enabled
    if _gc_holds == 0:
        _gc_was_enabled = gc.isenabled()
        gc.disable()
    _gc_holds += 1


UNFREEZE_AFTER = 1.0
"""Seconds after the collector restarts before what was alive then is handed back to it."""


def resume_gc() -> None:
    """The end of one :func:`pause_gc`.

    Everything allocated during the pause is still in the youngest generation, so the first
    collection after a plain restart walked all the large request's objects that were still alive
    (140 ms measured). So they are frozen first (no collection looks at them; reference counting
    still frees them), and unfrozen :data:`UNFREEZE_AFTER` later, when the request's objects are
    gone: unfreezing only moves the survivors, whatever cycles were made meanwhile among them, to
    the oldest generation for a later full collection."""
    global _gc_holds
    _gc_holds = max(0, _gc_holds - 1)
    if _gc_holds == 0 and _gc_was_enabled:
        gc.freeze()
        gc.enable()
        try:
            asyncio.get_running_loop().call_later(UNFREEZE_AFTER, _unfreeze)
        except RuntimeError:  # no loop (tests, scripts): nothing will free them later; now then
            gc.unfreeze()


def _unfreeze() -> None:
    if _gc_holds == 0:
        gc.unfreeze()
