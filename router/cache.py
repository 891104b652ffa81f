"""Response cache: identical requests from one caller answered from memory, opt-in per rule.

A rule opts in with ``post: cache(ttl=10m)``; a session opts out with ``!/set(cache=false)``.
The key is a hash of everything forwarded to the backend: every field of the canonical request
(messages, tools, sampling parameters, the fields the request's own format passes through in
``extra`` such as ``n``, ``response_format`` or ``logprobs``), the route, and the settings rules add
for each target of the route. Only ``stream`` is left out: an answer is replayed as JSON or as a
stream alike. Entries belong to the caller (the key id) unless the rule says
``cache(shared=true)``: then callers who send the same request share answers. Only clean answers
are stored: no errors, no guard interventions, nothing cut off. Bounded by entry count (LRU) and
by entry size.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from dataclasses import asdict
from typing import Any, Callable, NamedTuple

from cachetools import TLRUCache

from dsl import ir
from dsl.evaluate import Plan
from dsl.printer import print_chain

from .wire.canonical import ChatRequest, ChatResponse

DEFAULT_TTL = 300
MAX_ENTRY_CHARS = 1_000_000


class CachePolicy(NamedTuple):
    ttl: int  # seconds
    shared: bool  # callers share entries (``cache(shared=true)``); otherwise each caller has its own


def cache_policy(plan: Plan, session_params: dict[str, object]) -> CachePolicy | None:
    """How to cache this request's answer, or None when caching is off for it."""
    if session_params.get("cache") is False:
        return None
    for spec in plan.post:  # (a loop, not next() over a generator: this runs per request)
        if spec.name == "cache":
            break
    else:
        return None
    if not spec.param("enabled", True):
        return None
    return CachePolicy(int(spec.param("ttl", DEFAULT_TTL) or DEFAULT_TTL), bool(spec.param("shared", False)))


def request_key(request: ChatRequest, plan: Plan, caller: str | None, shared: bool = False,
                target_settings: Any = ()) -> str:
    """The entry of ``request``: what is forwarded (``target_settings``: what rules set for each
    target of the route), and whose it is."""
    forwarded = asdict(request)
    del forwarded["stream"], forwarded["size"]  # how it is delivered, and the client body's size: not forwarded
    shape = {
        "request": forwarded, "route": print_chain(ir.Chain(plan.chain)) if plan.chain else "",
        "targets": target_settings, "owner": "*" if shared else ["caller", caller],
    }
    raw = json.dumps(shape, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


class ResponseCache:
    """The in-process response cache: at most ``maxsize`` entries, least recently used evicted,
    and an entry gone once its rule's TTL has passed (expired entries are dropped as the cache is
    used, so memory held by answers nobody can get any more comes back)."""

    def __init__(self, maxsize: int = 1024, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: TLRUCache[str, tuple[float, ChatResponse]] = TLRUCache(
            maxsize=maxsize, ttu=lambda _key, entry, _now: entry[0], timer=clock)

    def get(self, key: str) -> ChatResponse | None:
        entry = self._entries.get(key)  # None once expired
        if entry is None:
            return None
        return copy.deepcopy(entry[1])  # callers (guards, the report prefix) may modify it

    async def fetch(self, key: str) -> ChatResponse | None:
        """:meth:`get` as the pipeline calls it (a shared cache's lookup is awaited)."""
        return self.get(key)

    def put(self, key: str, response: ChatResponse, ttl: int) -> bool:
        if response.finish_reason in ("error", "loop") or len(response.text()) > MAX_ENTRY_CHARS:
            return False
        self._entries[key] = (self._entries.timer() + ttl, copy.deepcopy(response))
        return True

    def __len__(self) -> int:
        return len(self._entries)
