"""Spending limits (``budget(amount, per=..., window=...)``) from the usage store's recorded cost.

A request is refused when what its scope spent in the current window, plus the request's own
estimate (prompt tokens at the dearest input price of its route), would exceed the amount; once it
has answered, its real cost (the recorder's, from the provider's usage) is what counts.

Spend is read through the usage store's interface (:meth:`UsageStore.stats`), so a shared store
gives a budget shared by every instance. Reads are kept for ``refresh`` seconds per scope and window,
and the cost of requests answered here since is added to what was read, so a burst of requests does
not read the store each time and still sees its own spending at once.

Windows are calendar periods in UTC: the hour, the day (from midnight) or the month (from the 1st);
a refusal says when the window resets and sends ``Retry-After``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from dsl import ir

from .errors import ProxyError

BudgetKey = tuple[str, str, float]  # (per, scope value, window start)


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
        super().__init__(429, f"budget of {limit.amount:g} per {limit.per} per {limit.window} set by rule {rule!r} "
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

    async def spent(self, per: str, value: str, since: float) -> float:
        key = (per, value, since)
        now = self.clock()
        read = self._reads.get(key)
        if read is None or now - read.at >= self.refresh:
            read = _Read(now, await self._query(per, value, since))
            if len(self._reads) >= self.max_entries:
                self._reads.clear()
            self._reads[key] = read
        return read.spent

    async def _query(self, per: str, value: str, since: float) -> float:
        if per == "caller":
            stats = await self.store.stats(since, None, None, caller=value)
            return float(stats["totals"].get("cost") or 0.0)
        stats = await self.store.stats(since, None, per)  # "session" or "backend" groups
        return sum(float(g.get("cost") or 0.0) for g in stats.get("groups", ()) if str(g.get("key")) == value)

    async def check(self, budgets: tuple[tuple[ir.Limit, str], ...], scopes: Mapping[str, str | None],
                    estimate: float) -> list[BudgetKey]:
        """Raise :class:`BudgetExceeded` for the first budget the request would overrun; else the
        keys to :meth:`settle` with its real cost."""
        now = self.clock()
        keys: list[BudgetKey] = []
        for limit, rule in budgets:
            value = scopes.get(limit.per) or "-"
            since, resets = window_bounds(limit.window or "day", now)
            spent = await self.spent(limit.per, value, since)
            if spent + estimate > limit.amount:
                raise BudgetExceeded(limit, rule, value, spent, estimate, resets, now)
            keys.append((limit.per, value, since))
        return keys

    def settle(self, keys: list[BudgetKey], cost: float | None) -> None:
        """Add a finished request's recorded cost to what was read, until the next read."""
        if not cost:
            return
        for key in keys:
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
