"""Stage 5b: budgets — the plan's ``budget(...)`` limits against recorded spend, before dispatch.

Budgets per caller and per session refuse the request (429) when it would overrun them; a budget
per backend takes the backends that are over it out of the route, so the request falls over to the
others, and refuses only when none is left. A cached answer costs nothing and is not checked.
"""

from __future__ import annotations

from dataclasses import replace

from dsl import ir

from ..budgets import BudgetExceeded, BudgetKey, Budgets, estimate_cost
from .exchange import Exchange
from .plan import estimate_prompt_tokens


async def check_budgets(ex: Exchange, budgets: Budgets) -> None:
    plan = ex.plan
    assert plan is not None
    targets = plan.targets()
    estimate = estimate_cost(estimate_prompt_tokens(ex.request), targets, ex.state.config.prices, ex.model)
    scopes = {"caller": ex.ctx.caller, "session": ex.ctx.session_id}
    keys: list[BudgetKey] = await budgets.check(tuple(b for b in plan.budgets if b[0].per != "backend"), scopes,
                                                estimate)
    per_backend = tuple(b for b in plan.budgets if b[0].per == "backend")
    if per_backend:
        over: set[str] = set()
        refusal: BudgetExceeded | None = None
        for backend in dict.fromkeys(t.backend for t in targets):
            try:
                keys += await budgets.check(per_backend, {"backend": backend}, estimate)
            except BudgetExceeded as exc:
                over.add(backend)
                refusal = exc
        if over:
            chain = without_backends(plan.chain, over)
            if not chain:
                assert refusal is not None
                raise refusal
            ex.plan = replace(plan, chain=chain)
    ex.budget_charge = (budgets, keys)


def without_backends(chain: tuple[ir.Link, ...], over: set[str]) -> tuple[ir.Link, ...]:
    """The chain without the targets of ``over``'s backends (a group keeps its other members)."""
    out: list[ir.Link] = []
    for link in chain:
        if isinstance(link, ir.Target):
            if link.backend not in over:
                out.append(link)
            continue
        members = tuple(m for m in link.members if m.target.backend not in over)
        if len(members) > 1:
            out.append(ir.Group(members, link.span, link.strategy) if link.strategy or all(
                m.weight is None for m in members) else ir.Group(tuple(ir.Member(m.target) for m in members)))
        elif members:
            out.append(members[0].target)
    return tuple(out)


def settle_budgets(ex: Exchange, cost: float | None) -> None:
    """The request's recorded cost counts against every budget it was checked for (a backend's
    only when that backend answered)."""
    budgets, keys = ex.budget_charge
    answered = ex.record.backend
    budgets.settle([k for k in keys if k[0] != "backend" or k[1] == answered], cost)
