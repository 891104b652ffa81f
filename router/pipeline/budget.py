"""Stage 5b: budgets — ``budget(...)`` limits against recorded spend, where each one applies.

Budgets come from the rules that decide a request, with the precedence ``limits`` follow (README,
"How rules combine"): a file rule's budget applies to a call when the rule matches the request's
facts *or* the facts of the target called, so no route (a session's, a one-off, ``backend:model``)
leads around it. Where each is checked:

- a budget per caller or per session of a rule matching the request: before dispatch; over it,
  the request is refused (429);
- a budget per backend: for each target tried (also the ``on:`` fallbacks'); a target whose
  backend is over it is skipped and the chain falls over to the next;
- a budget per key: in the connector's key loop, for each provider key; a key over it is skipped,
  and a target none of whose keys is left is skipped;
- any budget of a rule matching only through the target: for that target, as above (a target the
  caller's budget is spent for is skipped, like a target over such a rule's ``rpm``).

When nothing is left, the refusal answers: 429 naming the budget, its rule and when its window
resets. A cached answer costs nothing and is not checked. Once the answer is recorded, its cost
counts against the budgets checked for the request, the target that answered and its key.
"""

from __future__ import annotations

from dsl import ir

from ..budgets import BudgetExceeded, BudgetKey, Budgets, BudgetScope, estimate_cost
from .exchange import Exchange
from .plan import estimate_prompt_tokens

BudgetList = tuple[tuple[ir.Limit, str], ...]  # (budget, the rule that set it)


def applies(ex: Exchange) -> bool:
    """Whether any budget may apply to this request (most have none: then nothing is made)."""
    plan = ex.plan
    assert plan is not None
    return bool(plan.budgets) or (ex.governed is not None and ex.state.ruleset.budgeted)


class KeyGate:
    """The per-key budgets of one call, asked about each key the connector would send with;
    ``refused`` keeps the last refusal (the connector reports only that no key was left)."""

    def __init__(self, gate: "BudgetGate", target: ir.Target, budgets: BudgetList) -> None:
        self.gate, self.target, self.budgets = gate, target, budgets
        self.refused: BudgetExceeded | None = None

    async def __call__(self, label: str) -> bool:
        gate = self.gate
        admitted = await gate.budgets.admit(self.budgets, {"key": BudgetScope.key(label)}, gate.estimate(self.target))
        if isinstance(admitted, BudgetExceeded):
            self.refused = admitted
            return False
        gate.key_keys[(self.target, label)] = admitted
        return True


class BudgetGate:
    """One request's budgets (see the module docstring); dispatch asks it about each target and key."""

    def __init__(self, budgets: Budgets, ex: Exchange) -> None:
        plan = ex.plan
        assert plan is not None
        self.budgets = budgets
        self.ex = ex
        self.own = tuple(b for b in plan.budgets if b[0].per in ("caller", "session"))
        self.per_backend = tuple(b for b in plan.budgets if b[0].per == "backend")
        self.per_key = tuple(b for b in plan.budgets if b[0].per == "key")
        caller = ex.ctx.caller
        self.scopes = {"caller": BudgetScope.caller(caller), "session": BudgetScope.session(caller, ex.ctx.session_id)}
        self.request_keys: list[BudgetKey] = []
        self.target_keys: dict[ir.Target, list[BudgetKey]] = {}
        self.key_keys: dict[tuple[ir.Target, str], list[BudgetKey]] = {}
        self._tokens: int | None = None

    def _prompt_tokens(self) -> int:
        if self._tokens is None:
            self._tokens = estimate_prompt_tokens(self.ex.request)
        return self._tokens

    def estimate(self, target: ir.Target | None = None) -> float:
        """The request's cost estimate: its prompt at the target's input price (without a target,
        the dearest of its route)."""
        ex = self.ex
        targets = (target,) if target is not None else ex.plan.targets()  # type: ignore[union-attr]
        return estimate_cost(self._prompt_tokens(), targets, ex.state.config.prices, ex.model)

    async def admit_request(self) -> None:
        """The request's own caller and session budgets, before dispatch: raise the refusal."""
        if self.own:
            admitted = await self.budgets.admit(self.own, self.scopes, self.estimate())
            if isinstance(admitted, BudgetExceeded):
                raise admitted
            self.request_keys = admitted

    async def admit_target(self, target: ir.Target, through: BudgetList) -> BudgetExceeded | None:
        """The refusal of ``target`` (its backend's budgets, and those of the rules that match only
        through it, ``through``, except per key), or None when it may be tried."""
        wanted = self.per_backend + tuple(b for b in through if b[0].per != "key")
        if not wanted:
            return None
        scopes = {**self.scopes, "backend": BudgetScope.backend(target.backend)}
        admitted = await self.budgets.admit(wanted, scopes, self.estimate(target))
        if isinstance(admitted, BudgetExceeded):
            return admitted
        self.target_keys[target] = admitted
        return None

    def key_gate(self, target: ir.Target, through: BudgetList) -> KeyGate | None:
        """The per-key budgets for calling ``target`` (None when there are none)."""
        wanted = self.per_key + tuple(b for b in through if b[0].per == "key")
        return KeyGate(self, target, wanted) if wanted else None

    def settle(self, target: ir.Target | None, key_id: str | None, cost: float | None) -> None:
        """The answer's recorded cost counts against the budgets checked for the request, for the
        target that answered and for its key."""
        keys = list(self.request_keys)
        if target is not None:
            keys += self.target_keys.get(target, ())
            if key_id is not None:
                keys += self.key_keys.get((target, key_id), ())
        self.budgets.settle(keys, cost)


def settle_budgets(ex: Exchange, cost: float | None) -> None:
    """Called when the request is recorded (``record.finish_record``)."""
    gate: BudgetGate = ex.budget_charge
    outcome = ex.outcome
    gate.settle(outcome.target if outcome is not None else None, outcome.key_id if outcome is not None else None,
                cost)
