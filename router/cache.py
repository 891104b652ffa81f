"""Response cache: identical canonical requests answered from memory, opt-in per rule.

A rule opts in with ``post: cache(ttl=10m)``; a session opts out with ``!/set(cache=false)``.
The key is a hash of everything that shapes the answer (model and route, system, messages, tools,
tool choice, sampling parameters), never of who asked. Only clean answers are stored: no errors,
no guard interventions, nothing cut off. Bounded by entry count (LRU) and by entry size.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from dataclasses import asdict
from typing import Callable

from cachetools import LRUCache

from dsl import ir
from dsl.evaluate import Plan
from dsl.printer import print_chain

from .canonical import ChatRequest, ChatResponse

DEFAULT_TTL = 300
MAX_ENTRY_CHARS = 1_000_000


def cache_ttl(plan: Plan, session_params: dict[str, object]) -> int | None:
    """Seconds to cache this request's answer, or None when caching is off for it."""
    if session_params.get("cache") is False:
        return None
    for spec in plan.post:  # (a loop, not next() over a generator: this runs per request)
        if spec.name == "cache":
            break
    else:
        return None
    if not spec.param("enabled", True):
        return None
    return int(spec.param("ttl", DEFAULT_TTL) or DEFAULT_TTL)


def request_key(request: ChatRequest, plan: Plan) -> str:
    shape = {
        "route": print_chain(ir.Chain(plan.chain)) if plan.chain else "",
        "model": request.model, "system": [p.text for p in request.system],
        "messages": [asdict(m) for m in request.messages], "tools": [asdict(t) for t in request.tools],
        "tool_choice": asdict(request.tool_choice) if request.tool_choice else None,
        "temperature": request.temperature, "top_p": request.top_p, "max_tokens": request.max_tokens,
        "stop": request.stop, "thinking": request.thinking_budget,
    }
    raw = json.dumps(shape, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


class ResponseCache:
    def __init__(self, maxsize: int = 1024, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: LRUCache[str, tuple[float, ChatResponse]] = LRUCache(maxsize=maxsize)
        self.clock = clock

    def get(self, key: str) -> ChatResponse | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, response = entry
        if self.clock() >= expires:
            self._entries.pop(key, None)
            return None
        return copy.deepcopy(response)  # callers (guards, the report prefix) may modify it

    def put(self, key: str, response: ChatResponse, ttl: int) -> bool:
        if response.finish_reason in ("error", "loop") or len(response.text()) > MAX_ENTRY_CHARS:
            return False
        self._entries[key] = (self.clock() + ttl, copy.deepcopy(response))
        return True

    def __len__(self) -> int:
        return len(self._entries)
