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


async def run_sized(size: int, fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)``: inline for a small request, in a worker thread for a large one (see module doc)."""
    if size < LARGE_BYTES:
        return fn(*args)
    return await off_loop(fn, *args)
