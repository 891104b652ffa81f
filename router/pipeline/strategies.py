"""Group strategies: which member of ``fastest(...)``, ``least_busy(...)`` or ``cheapest(...)`` a
request goes to first. Pure: the observations come in through :class:`RoutingStats`, chance through
the caller's ``random.Random``; nothing here does I/O.

Every member stays in the returned order (the ones not picked are the fallbacks, in the strategy's
order), so a strategy never makes a route shorter than the plain group would.
"""

from __future__ import annotations

import random
from typing import Mapping

from dsl import ir

from ..routing_stats import RoutingStats

EXPLORATION = 0.05
"""Share of ``fastest`` requests that go to a random other member first, so a target that was slow
and has recovered gets measured again (the issue's bound: at most 5%)."""

_UNPRICED = float("inf")


def order_group(group: ir.Group, stats: RoutingStats, prices: Mapping[str, Mapping[str, float]], tokens: int,
                max_tokens: int, rng: random.Random) -> tuple[list[ir.Target], bool]:
    """The members of a strategy group in the order to try them, and whether this was exploration."""
    members = [m.target for m in group.members]
    rng.shuffle(members)  # ties (unmeasured, equally busy, equally priced) are broken by chance
    strategy = group.strategy
    if strategy == "fastest":
        # Unmeasured members first: each gets measured before the averages decide.
        members.sort(key=lambda t: _ttfb(stats, t))
        if rng.random() < EXPLORATION:
            explored = members.pop(rng.randrange(1, len(members)))
            members.insert(0, explored)
            return members, True
    elif strategy == "least_busy":
        members.sort(key=lambda t: stats.in_flight(str(t)))
    elif strategy == "cheapest":
        members.sort(key=lambda t: estimated_cost(prices.get(t.model or ""), tokens, max_tokens))
    return members, False


def _ttfb(stats: RoutingStats, target: ir.Target) -> float:
    seconds = stats.ttfb(str(target))
    return -1.0 if seconds is None else seconds


def estimated_cost(price: Mapping[str, float] | None, tokens: int, max_tokens: int) -> tuple[float, float]:
    """What a call would cost: the prompt's estimated tokens at the input price plus ``max_tokens``
    (0 when the client set none) at the output price, then the list price as a tie-break. A model
    without a price counts as the most expensive."""
    if price is None:
        return (_UNPRICED, _UNPRICED)
    inp, out = float(price.get("input", 0)), float(price.get("output", 0))
    return ((tokens * inp + max_tokens * out) / 1e6, inp + out)
