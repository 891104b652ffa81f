"""Spending limits (``budget(amount, per=..., window=...)``) from the usage store's recorded cost.

A request is refused when what its scope spent in the current window, plus the request's own
estimate (its prompt tokens at an input price: the dearest of its route for the request's own
caller and session budgets, the target's for a target's), would exceed the amount; once it has
answered, its real cost (the recorder's, from the provider's usage) is what counts. Which budgets
apply, and where in a request they are checked, is :mod:`router.pipeline.budget`'s.

Spend is read through the usage store's interface (:meth:`UsageStore.spent`), so a shared store
gives a budget shared by every instance. Reads are kept for ``refresh`` seconds per scope and window,
and the cost of requests answered here since is added to what was read, so a burst of requests does
not read the store each time and still sees its own spending at once.

Windows are calendar periods in UTC: the hour, the day (from midnight) or the month (from the 1st);
a refusal says when the window resets and sends ``Retry-After``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Mapping

from dsl import ir

from .errors import ProxyError
from .record.usage import SpendScope, UsageStoreUnavailable

log = logging.getLogger("llm_proxy.budgets")

BudgetKey = tuple[str, str, float]  # (per, scope label, window start)


@dataclass(frozen=True, slots=True)
class BudgetScope:
    """Whose spending one budget counts: ``label`` names it (in-process reads, messages), ``where``
    selects its rows in the usage store (a session's rows are its caller's rows of that session,
    as sessions belong to their caller; a caller of None is a request without auth)."""

    per: str
    label: str
    where: SpendScope

    @classmethod
    def caller(cls, caller: str | None) -> "BudgetScope":
        return cls("caller", caller or "-", (("caller", caller),))

    @classmethod
    def session(cls, caller: str | None, session_id: str) -> "BudgetScope":
        return cls("session", f"{caller or '-'}/{session_id}", (("caller", caller), ("session", session_id)))

    @classmethod
    def backend(cls, backend: str) -> "BudgetScope":
        return cls("backend", backend, (("backend", backend),))

    @classmethod
    def key(cls, label: str) -> "BudgetScope":
        return cls("key", label, (("key", label),))


def window_bounds(window: str, now: float) -> tuple[float, float]:
    """Start and end (epoch seconds, UTC) of the ``hour``/``day``/``month`` window holding ``now``."""
    t = datetime.fromtimestamp(now, timezone.utc)
    if window == "hour":
        start = t.replace(minute=0, second=0, microsecond=0)
        end = start.timestamp() + 3600
        return start.timestamp(), end
    if window == "day":
        start = t.replace(hour=0, minute=0, second=0, microsecond=0)
        return start.timestamp(), start.timestamp() + 86400
    start = t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start.timestamp(), following.timestamp()


class BudgetExceeded(ProxyError):
    """429 in the front end's error shape: the word "budget", the rule, when the window resets."""

    def __init__(self, limit: ir.Limit, rule: str, scope: str, spent: float, estimate: float, resets: float,
                 now: float) -> None:
        seconds = max(1, int(resets - now + 0.999))
        when = datetime.fromtimestamp(resets, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        # A backend or key is named (a key by its label, never the key): the caller's own scope is not.
        whose = f"per {limit.per}" + (f" {scope}" if limit.per in ("backend", "key") else "")
        super().__init__(429, f"budget of {limit.amount:g} {whose} per {limit.window} set by rule {rule!r} "
                              f"is spent ({spent:.4f} so far, this request ~{estimate:.4f}); the window resets at "
                              f"{when} (in {seconds}s)", "rate_limit", headers={"Retry-After": str(seconds)})
        self.limit, self.rule, self.scope = limit, rule, scope


@dataclass(slots=True)
class _Read:
    at: float
    spent: float


class Budgets:
    """Checks and settles budgets for requests; one per process, over the usage store."""

    def __init__(self, store: Any, *, clock: Callable[[], float] = time.time, refresh: float = 2.0,
                 max_entries: int = 10_000) -> None:
        self.store = store
        self.clock = clock
        self.refresh = refresh
        self.max_entries = max_entries
        self._reads: dict[BudgetKey, _Read] = {}
        self._warned = False  # a store outage is logged once

    async def spent(self, scope: BudgetScope, since: float) -> float:
        key = (scope.per, scope.label, since)
        now = self.clock()
        read = self._reads.get(key)
        if read is None or now - read.at >= self.refresh:
            try:
                spent = await self.store.spent(since, scope.where)
            except UsageStoreUnavailable as exc:
                # PostgreSQL away: go on with what this process knows (the last read and what it
                # settled since) rather than refuse every request; read again after ``refresh``.
                if not self._warned:
                    self._warned = True
                    log.warning("budgets: %s; counting this process's own spend until it is back", exc)
                spent = read.spent if read is not None else 0.0
            else:
                self._warned = False
            read = _Read(now, spent)
            if len(self._reads) >= self.max_entries:
                self._reads.clear()
            self._reads[key] = read
        return read.spent

    async def admit(self, budgets: Iterable[tuple[ir.Limit, str]], scopes: Mapping[str, BudgetScope],
                    estimate: float) -> list[BudgetKey] | BudgetExceeded:
        """The refusal of the first budget the request would overrun; else the keys to
        :meth:`settle` with its real cost. ``scopes`` has the scope of each ``per`` in ``budgets``."""
        now = self.clock()
        keys: list[BudgetKey] = []
        for limit, rule in budgets:
            scope = scopes[limit.per]
            since, resets = window_bounds(limit.window or "day", now)
            spent = await self.spent(scope, since)
            if spent + estimate > limit.amount:
                return BudgetExceeded(limit, rule, scope.label, spent, estimate, resets, now)
            keys.append((scope.per, scope.label, since))
        return keys

    def settle(self, keys: Iterable[BudgetKey], cost: float | None) -> None:
        """Add a finished request's recorded cost to what was read, until the next read."""
        if not cost:
            return
        for key in dict.fromkeys(keys):  # a scope two rules budget is charged once
            read = self._reads.get(key)
            if read is not None:
                read.spent += cost


def estimate_cost(tokens: int, targets: tuple[ir.Target, ...], prices: Mapping[str, Mapping[str, float]],
                  requested_model: str) -> float:
    """The prompt at the dearest input price among the route's priced targets (0 when none is priced)."""
    dearest = 0.0
    for target in targets:
        price = prices.get(target.model or requested_model)
        if price is not None:
            dearest = max(dearest, float(price.get("input", 0)))
    return tokens * dearest / 1e6
