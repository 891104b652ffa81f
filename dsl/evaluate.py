"""Rules → an evaluator that turns request facts into a :class:`Plan`. Pure and fast.

Compilation happens once per rule set: conditions become closures, and rules that can only match
literal model names (``model == "x"``, ``model in [...]``, or a conjunction containing one) are
indexed by those names. A request therefore touches only the rules for its model plus the rules
that are not keyed by model, already merged in evaluation order.

Semantics (documented in README "How rules combine"):
- rules are visited in order: session rules first, then file rules by priority, file, position;
- ``route``: the first matching rule with a route decides the chain;
- ``limits``: every matching rule's limits apply (they add up, they never replace each other);
- ``post`` and ``set``: for each processor name / setting key, the first matching rule wins;
- no matching route → the backend the client named, else the session's, else ``default_backend``,
  with the requested model;
- a file rule's ``limits`` and ``set`` also govern every target the request is sent to: they apply
  to a call when the rule matches the request's facts *or* the target's facts (the request's facts
  with ``model`` and ``backend`` replaced by the target's), so no route (a session's, a one-off, a
  file rule's) leads around them. :func:`target_terms` works out what a target adds to the plan.
"""

from __future__ import annotations

import fnmatch
import re
import time as _time
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Callable, Mapping, Sequence

from . import ir
from .registry import WEEKDAYS

Predicate = Callable[["Facts"], bool]


@dataclass(slots=True)
class Facts:
    """What rules may look at. :meth:`build` derives the time facts; the proxy's pipeline fills in
    only the facts its rules read (``RuleSet.reads``) and leaves the others at their defaults.

    Read only by convention: not ``frozen`` because a frozen dataclass sets each of its twelve
    fields through ``object.__setattr__``, and one Facts is built for every request."""

    model: str
    frontend: str = "openai"
    backend: str | None = None
    caller: str | None = None
    tokens: int = 0
    stream: bool = False
    tools: bool = False
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    session: Mapping[str, Any] = field(default_factory=dict)
    time: str = "00:00"
    weekday: str = "mon"
    context_window: int | None = None  # of the requested model, from the catalogue; None = unknown

    @classmethod
    def build(cls, model: str, *, now: datetime | None = None, **kwargs: Any) -> "Facts":
        if now is None:
            clock, weekday = clock_now()
        else:
            clock, weekday = now.strftime("%H:%M"), WEEKDAYS[now.weekday()]
        return cls(model=model, time=clock, weekday=weekday, **kwargs)


_clock_cache: tuple[int, str, str] = (-1, "00:00", "mon")


def clock_now() -> tuple[str, str]:
    """Local "HH:MM" and weekday, formatted once per second rather than once per request."""
    global _clock_cache
    second = int(_time.time())
    if _clock_cache[0] != second:
        now = datetime.fromtimestamp(second)
        _clock_cache = (second, now.strftime("%H:%M"), WEEKDAYS[now.weekday()])
    return _clock_cache[1], _clock_cache[2]


@dataclass(frozen=True, slots=True)
class Plan:
    """What dispatch does with one request."""

    chain: tuple[ir.Link, ...]
    limits: tuple[ir.Limit, ...] = ()
    post: tuple[ir.PostProcessor, ...] = ()
    overrides: tuple[tuple[str, ir.Scalar], ...] = ()
    rules: tuple[str, ...] = ()  # names of the rules that matched, in order
    route_rule: str | None = None  # the rule that chose the chain (None = default route)
    # Positions of the matched file rules that have limits or set (see ``target_terms``).
    governing: tuple[int, ...] = ()
    # ``on:``: error class -> (fallback chain, rule that set it); per class the first matching rule wins.
    on: tuple[tuple[str, tuple[ir.Link, ...], str], ...] = ()
    # ``budget(...)`` limits with the rule that added each (they are not in ``limits``: spending is
    # checked against recorded cost before dispatch, not by the rate limiter).
    budgets: tuple[tuple[ir.Limit, str], ...] = ()

    def targets(self) -> tuple[ir.Target, ...]:
        return ir.Chain(self.chain).targets() if self.chain else ()

    def override(self, key: str) -> ir.Scalar | None:
        return dict(self.overrides).get(key)


# ---- conditions → closures ---------------------------------------------------------------------


def _getter(fact: ir.Fact) -> Callable[[Facts], Any]:
    name, arg = fact.name, fact.arg
    if name == "header":
        key = (arg or "").lower()
        return lambda f: f.headers.get(key)
    if name.startswith("session."):
        key = name[len("session."):]
        return lambda f: f.session.get(key)
    attr = name
    return lambda f: getattr(f, attr)


def _ordered(op: str, get: Callable[[Facts], Any], value: Any) -> Predicate:
    import operator

    fn = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}[op]

    def check(f: Facts) -> bool:
        current = get(f)
        if current is None or isinstance(current, bool) != isinstance(value, bool):
            return False
        try:
            return fn(current, value)
        except TypeError:
            return False

    return check


def _against_fact(op: str, get: Callable[[Facts], Any], other: Callable[[Facts], Any], factor: float) -> Predicate:
    """``tokens > context_window * 0.8``: false when either fact is missing (an unknown model)."""
    import operator

    fn = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt,
          ">=": operator.ge}[op]

    def check(f: Facts) -> bool:
        left, right = get(f), other(f)
        if left is None or right is None:
            return False
        return fn(left, right * factor)

    return check


def compile_condition(cond: ir.Condition) -> Predicate:
    """A closure for ``cond``; short-circuits like Python's ``and``/``or``."""
    if isinstance(cond, ir.Const):
        value = cond.value
        return lambda f: value
    if isinstance(cond, ir.And):
        parts = tuple(compile_condition(c) for c in cond.items)
        return lambda f: all(p(f) for p in parts)
    if isinstance(cond, ir.Or):
        parts = tuple(compile_condition(c) for c in cond.items)
        return lambda f: any(p(f) for p in parts)
    if isinstance(cond, ir.Not):
        inner = compile_condition(cond.item)
        return lambda f: not inner(f)
    get = _getter(cond.fact)
    if isinstance(cond, ir.Truthy):
        return lambda f: bool(get(f))
    if isinstance(cond, ir.Compare) and isinstance(cond.value, ir.FactValue):
        return _against_fact(cond.op, get, _getter(cond.value.fact), cond.value.factor)
    if isinstance(cond, ir.Compare):
        value = cond.value
        if cond.op == "==":
            return lambda f: get(f) == value
        if cond.op == "!=":
            return lambda f: get(f) != value
        return _ordered(cond.op, get, value)
    if isinstance(cond, ir.In):
        values = frozenset(cond.values)
        if cond.negated:
            return lambda f: get(f) not in values
        return lambda f: get(f) in values
    if isinstance(cond, ir.Glob):
        match = re.compile(fnmatch.translate(cond.pattern)).match
        return lambda f: isinstance(v := get(f), str) and match(v) is not None
    if isinstance(cond, ir.Regex):
        search = re.compile(cond.pattern).search
        return lambda f: isinstance(v := get(f), str) and search(v) is not None
    raise TypeError(f"unknown condition node {cond!r}")  # pragma: no cover


def facts_read(cond: ir.Condition | None) -> frozenset[str]:
    """The facts ``cond`` looks at, by family: ``model``, ``tokens``, ``time``, ``header``,
    ``session`` (any ``session.x``), ... The request side skips working out facts no rule reads
    (the prompt's token estimate walks every message)."""
    if cond is None or isinstance(cond, ir.Const):
        return frozenset()
    if isinstance(cond, (ir.And, ir.Or)):
        return frozenset().union(*map(facts_read, cond.items))
    if isinstance(cond, ir.Not):
        return facts_read(cond.item)
    names = [cond.fact.name]
    if isinstance(cond, ir.Compare) and isinstance(cond.value, ir.FactValue):
        names.append(cond.value.fact.name)
    return frozenset("session" if name.startswith("session.") else name for name in names)


def literal_models(cond: ir.Condition | None) -> frozenset[str] | None:
    """The model names ``cond`` can only match, or None when it may match any model."""
    if cond is None:
        return None
    if isinstance(cond, ir.Compare) and cond.fact.name == "model" and cond.op == "==" and isinstance(cond.value, str):
        return frozenset((cond.value,))
    if isinstance(cond, ir.In) and cond.fact.name == "model" and not cond.negated:
        return frozenset(v for v in cond.values if isinstance(v, str))
    if isinstance(cond, ir.And):
        keyed = [k for k in map(literal_models, cond.items) if k is not None]
        return frozenset.intersection(*keyed) if keyed else None
    if isinstance(cond, ir.Or):
        keyed = [literal_models(c) for c in cond.items]
        return None if any(k is None for k in keyed) else frozenset().union(*keyed)  # type: ignore[arg-type]
    if isinstance(cond, ir.Const) and not cond.value:
        return frozenset()
    return None


# ---- the evaluator -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Compiled:
    order: int
    rule: ir.Rule
    predicate: Predicate | None  # None = always


class RuleSet:
    """Compiled rules. Immutable: a reload builds a new one and swaps it in atomically."""

    def __init__(self, rules: Sequence[ir.Rule]) -> None:
        self.rules = tuple(rules)
        # What the conditions look at (see ``facts_read``): facts outside it need not be worked out.
        self.reads: frozenset[str] = frozenset().union(*(facts_read(r.when) for r in self.rules))
        compiled = [
            _Compiled(i, r, None if r.when is None or r.when == ir.Const(True) else compile_condition(r.when))
            for i, r in enumerate(self.rules)
        ]
        self._by_model, self._unkeyed = _index(compiled)
        # The rules with limits or set, evaluated again for each target a request is sent to
        # (``target_terms``); most rule sets have none, and then that costs nothing.
        governing = [c for c in compiled if c.rule.limits or c.rule.overrides]
        self.governs = bool(governing)
        # Some governing rule has a ``budget(...)``: then each target's terms are checked against spend.
        self.budgeted = any(lim.kind == "budget" for c in governing for lim in c.rule.limits)
        self.governing_reads: frozenset[str] = frozenset().union(*(facts_read(c.rule.when) for c in governing))
        self._governing_by_model, self._governing_unkeyed = _index(governing)
        self._plans: dict[tuple[Any, ...], Plan] = {}  # see ``evaluate``
        self._terms: dict[tuple[Any, ...], Terms | None] = {}  # see ``target_terms``

    def __len__(self) -> int:
        return len(self.rules)

    def candidates(self, model: str) -> tuple[_Compiled, ...]:
        return self._by_model.get(model, self._unkeyed)

    def governing_candidates(self, model: str) -> tuple[_Compiled, ...]:
        return self._governing_by_model.get(model, self._governing_unkeyed)


def _index(compiled: Sequence[_Compiled]) -> tuple[dict[str, tuple[_Compiled, ...]], tuple[_Compiled, ...]]:
    """Rules by the literal model names they can only match, each merged in order with the rules
    not keyed by model (so a request does one dict lookup), and those unkeyed rules alone."""
    keyed: dict[str, list[_Compiled]] = {}
    unkeyed: list[_Compiled] = []
    for c in compiled:
        models = literal_models(c.rule.when)
        if models is None:
            unkeyed.append(c)
        else:
            for model in models:
                keyed.setdefault(model, []).append(c)
    by_model = {model: tuple(sorted(rules_for + unkeyed, key=lambda c: c.order)) for model, rules_for in keyed.items()}
    return by_model, tuple(unkeyed)


# Plans kept per file rule set (``RuleSet._plans``): a few per model in use; cleared when full.
# The same bound holds the per-target terms (``RuleSet._terms``). 1,024 covers hundreds of models
# in use; a client spraying model names only makes the memo refill (a plan is made in tens of µs),
# and the memory it holds stays small (the soak's unique model names filled a 4,096 memo for over
# an hour, growing the process all the while).
PLAN_MEMO_SIZE = 1024


EMPTY = RuleSet(())


def evaluate(facts: Facts, rules: RuleSet, *, session_rules: RuleSet = EMPTY, default_backend: str = "echo") -> Plan:
    """The plan for one request: session rules first, then file rules (see module docstring).

    Which rules match is decided per request; the Plan those rules make (with the model and the
    fallback backend) is the same every time, so it is built once and kept on the rule set.
    """
    model = facts.model
    fallback = facts.backend or default_backend
    hits: list[_Compiled] = []
    if session_rules.rules:
        for c in session_rules.candidates(model):
            if c.predicate is None or c.predicate(facts):
                hits.append(c)
    first_file_hit = len(hits)
    if rules.rules:
        for c in rules.candidates(model):
            if c.predicate is None or c.predicate(facts):
                hits.append(c)
    # Session rule sets are distinct objects (hashed by identity), and which of their rules match
    # depends on the model alone, so their orders cannot be confused with the file rules' own.
    key = (session_rules, model, fallback, *[c.order for c in hits])
    plans = rules._plans
    plan = plans.get(key)
    if plan is None:
        if len(plans) >= PLAN_MEMO_SIZE:  # models come from clients: keep the memo bounded
            plans.clear()
        plan = plans[key] = _make_plan(hits, model, fallback, first_file_hit)
    return plan


def _make_plan(hits: Sequence[_Compiled], model: str, fallback: str, first_file_hit: int) -> Plan:
    route: ir.Chain | None = None
    route_rule: str | None = None
    limits: list[ir.Limit] = []
    budgets: list[tuple[ir.Limit, str]] = []
    post: dict[str, ir.PostProcessor] = {}
    overrides: dict[str, ir.Scalar] = {}
    on: dict[str, tuple[tuple[ir.Link, ...], str]] = {}
    for c in hits:
        rule = c.rule
        if route is None and rule.route is not None:
            route, route_rule = rule.route, rule.name
        for limit in rule.limits:
            if limit.kind == "budget":
                budgets.append((limit, rule.name))
            else:
                limits.append(limit)
        for error_class, fallback in rule.on:
            if error_class not in on:
                on[error_class] = (tuple(_resolve(link, model) for link in fallback.links), rule.name)
        for p in rule.post:
            post.setdefault(p.name, p)
        for key, value in rule.overrides:
            overrides.setdefault(key, value)
    if route is None:
        chain: tuple[ir.Link, ...] = (ir.Target(fallback, model),)
    else:
        chain = tuple(_resolve(link, model) for link in route.links)
    governing = tuple(c.order for c in hits[first_file_hit:] if c.rule.limits or c.rule.overrides)
    return Plan(chain, tuple(limits), tuple(post.values()), tuple(overrides.items()),
                tuple(c.rule.name for c in hits), route_rule, governing,
                tuple((error_class, links, rule) for error_class, (links, rule) in on.items()), tuple(budgets))


# ---- what a target adds to the plan ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Terms:
    """What the file rules add for a call of one target, beyond the request's own :class:`Plan`."""

    limits: tuple[ir.Limit, ...] = ()  # of the rules that match only through the target (not budgets)
    # The operator's settings in effect for the call (first rule wins, over the rules that match
    # the request or the target); () when they are the plan's own.
    overrides: tuple[tuple[str, ir.Scalar], ...] = ()
    rules: tuple[str, ...] = ()  # names of the rules that match only through the target
    # Their ``budget(...)`` limits, each with the rule that set it (a refusal names the rule).
    budgets: tuple[tuple[ir.Limit, str], ...] = ()


def target_terms(facts: Facts, target: ir.Target, rules: RuleSet, plan: Plan) -> Terms | None:
    """The file rules' ``limits`` and ``set`` for calling ``target``, beyond ``plan``; None for nothing more.

    A rule governs a call when it matches the request's facts (it is then in the plan already) or
    the target's facts: the request's facts with ``model`` and ``backend`` replaced by the
    target's. So ``when: model ~ "gpt-4*"`` with ``limits: rpm(2, per=caller)`` limits every
    call of ``up:gpt-4``, whether a session route, a one-off or a file rule's route chose it.
    Each rule's limits count once per call, whichever way it matched.
    """
    if not rules.governs:
        return None
    model = target.model or facts.model
    if model == facts.model and (target.backend == facts.backend or "backend" not in rules.governing_reads):
        return None  # the target's facts give the same rules as the request's
    called = replace(facts, model=model, backend=target.backend)
    hits = tuple(c.order for c in rules.governing_candidates(model) if c.predicate is None or c.predicate(called))
    key = (plan.governing, hits)
    memo = rules._terms
    if key in memo:
        return memo[key]
    if len(memo) >= PLAN_MEMO_SIZE:
        memo.clear()
    terms = memo[key] = _make_terms(rules, plan, hits)
    return terms


def _make_terms(rules: RuleSet, plan: Plan, hits: tuple[int, ...]) -> Terms | None:
    matched = frozenset(plan.governing)
    extra = [rules.rules[order] for order in hits if order not in matched]
    if not extra:
        return None
    overrides: dict[str, ir.Scalar] = {}
    for order in sorted(matched.union(hits)):
        for key, value in rules.rules[order].overrides:
            overrides.setdefault(key, value)
    settings = tuple(overrides.items())
    return Terms(tuple(lim for rule in extra for lim in rule.limits if lim.kind != "budget"),
                 () if dict(settings) == dict(plan.overrides) else settings,
                 tuple(rule.name for rule in extra),
                 tuple((lim, rule.name) for rule in extra for lim in rule.limits if lim.kind == "budget"))


@dataclass(frozen=True, slots=True)
class TargetRules:
    """One request's facts and plan, for :func:`target_terms` of each target dispatch tries."""

    facts: Facts
    plan: Plan
    rules: RuleSet

    def terms(self, target: ir.Target) -> Terms | None:
        return target_terms(self.facts, target, self.rules, self.plan)


def _resolve(link: ir.Link, model: str) -> ir.Link:
    if isinstance(link, ir.Target):
        return link if link.model is not None else ir.Target(link.backend, model)
    return ir.Group(tuple(ir.Member(m.target.resolve(model), m.weight) for m in link.members), link.span, link.strategy)
