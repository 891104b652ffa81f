"""Stage 5a: the response cache — an answer kept from an identical earlier request instead of a
dispatch, when a rule or the session turned caching on. The cache itself is a service given to
the stage (:class:`~router.cache.ResponseCache`)."""

from __future__ import annotations

from typing import Any

from ..cache import ResponseCache, cache_policy, request_key
from ..record.metrics import Metrics
from ..wire.canonical import ChatResponse
from .exchange import Exchange


async def cached_answer(ex: Exchange, cache: ResponseCache, metrics: Metrics) -> ChatResponse | None:
    """A cached answer, or None; when caching is on, ``ex.cache_slot`` says where to keep this one."""
    plan, session = ex.plan, ex.session
    assert plan is not None and session is not None
    policy = cache_policy(plan, session.params)
    if policy is None:
        return None
    # What rules matching only through a target set is forwarded too (see ``TargetRules``).
    targets: list[Any] = []
    if ex.governed is not None:
        for target in plan.targets():
            terms = ex.governed.terms(target)
            if terms is not None and terms.overrides:
                targets.append((str(target), terms.overrides))
    key = request_key(ex.request, plan, ex.ctx.caller, policy.shared, targets)
    cached = await cache.fetch(key)
    ex.headers["x-cache"] = "hit" if cached is not None else "miss"
    metrics.cache.labels(ex.headers["x-cache"]).inc()
    if cached is None:
        ex.cache_slot = (key, policy.ttl)
    return cached
