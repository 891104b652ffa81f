"""Why a request gets its plan: every rule in evaluation order, matched or not and why, then the
plan with the rule that decided each part. Pure, like evaluation; used by ``explain`` (CLI),
``!/route-explain`` and ``POST /v2/admin/explain``, which differ only in where the facts come from.

It walks all rules (not the model index evaluation uses), so the rules a request never touches are
listed too, with the comparison that rules them out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import ir
from .evaluate import Facts, Plan, RuleSet, _getter, compile_condition, evaluate
from .printer import print_chain, print_condition, print_fact, print_limit, print_link, print_post, print_scalar
from .registry import STRATEGIES


@dataclass(frozen=True, slots=True)
class RuleVerdict:
    name: str
    origin: str  # "session" or file:line
    matched: bool
    reason: str


@dataclass(slots=True)
class Explanation:
    facts: Facts
    # The header names some rule reads: only those are shown (a request's other headers, such as
    # its Authorization, are none of the explanation's business).
    header_names: frozenset[str] = frozenset()
    rules: list[RuleVerdict] = field(default_factory=list)
    plan: Plan | None = None
    route_rule: str | None = None
    limits: list[tuple[str, str]] = field(default_factory=list)  # (limit text, rule)
    post: list[tuple[str, str]] = field(default_factory=list)  # (processor text, rule)
    overrides: list[tuple[str, str, str]] = field(default_factory=list)  # (key, value text, rule)
    on: list[tuple[str, str, str]] = field(default_factory=list)  # (class, route text, rule)
    strategies: list[tuple[str, str]] = field(default_factory=list)  # (group text, how it picks)

    def as_json(self) -> dict[str, Any]:
        f = self.facts
        plan = self.plan
        return {
            "request": facts_json(f, self.header_names),
            "rules": [{"name": r.name, "origin": r.origin, "matched": r.matched, "reason": r.reason} for r in self.rules],
            "plan": {
                "route": print_chain(ir.Chain(plan.chain)) if plan is not None else None,
                "route_rule": self.route_rule,
                "strategies": [{"group": g, "picks_by": how} for g, how in self.strategies],
                "on": [{"error_class": c, "route": r, "rule": rule} for c, r, rule in self.on],
                "limits": [{"limit": text, "rule": rule} for text, rule in self.limits],
                "post": [{"processor": text, "rule": rule} for text, rule in self.post],
                "set": [{"key": k, "value": v, "rule": rule} for k, v, rule in self.overrides],
            },
        }

    def text(self) -> str:
        f = self.facts
        lines = ["request: " + " ".join(f"{k}={_show(v)}" for k, v in facts_json(f, self.header_names).items())]
        lines.append("rules, in evaluation order:")
        if not self.rules:
            lines.append("  (none)")
        for i, r in enumerate(self.rules, 1):
            lines.append(f"  {i}. {r.name} [{r.origin}]: {'matched' if r.matched else 'not matched'}: {r.reason}")
        data = self.as_json()["plan"]
        lines.append("plan:")
        decided = f"rule {self.route_rule}" if self.route_rule else "no rule: the default route"
        lines.append(f"  route: {data['route']}  ({decided})")
        for group, how in self.strategies:
            lines.append(f"    {group}: picks by {how}; the others stay fallbacks in that order")
        lines.append("  on:" + ("" if self.on else " (none)"))
        lines += [f"    {c} -> {r}  (rule {rule})" for c, r, rule in self.on]
        lines.append("  limits:" + ("" if self.limits else " (none)"))
        lines += [f"    {text}  (rule {rule})" for text, rule in self.limits]
        lines.append("  post:" + ("" if self.post else " (none)"))
        lines += [f"    {text}  (rule {rule})" for text, rule in self.post]
        lines.append("  set:" + ("" if self.overrides else " (none)"))
        lines += [f"    {k}={v}  (rule {rule})" for k, v, rule in self.overrides]
        return "\n".join(lines)


def facts_json(f: Facts, header_names: frozenset[str] = frozenset()) -> dict[str, Any]:
    return {"model": f.model, "frontend": f.frontend, "backend": f.backend, "caller": f.caller, "tokens": f.tokens,
            "stream": f.stream, "tools": f.tools, "context_window": f.context_window, "time": f.time,
            "weekday": f.weekday,
            "headers": {name: f.headers.get(name) for name in sorted(header_names)}}


def header_names(cond: ir.Condition | None) -> frozenset[str]:
    """The (lower-case) header names ``cond`` reads."""
    if cond is None or isinstance(cond, ir.Const):
        return frozenset()
    if isinstance(cond, (ir.And, ir.Or)):
        return frozenset().union(*map(header_names, cond.items))
    if isinstance(cond, ir.Not):
        return header_names(cond.item)
    return frozenset((cond.fact.arg.lower(),)) if cond.fact.name == "header" and cond.fact.arg else frozenset()


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {v}" for k, v in value.items()) + "}"
    return str(value)


def explain(facts: Facts, rules: RuleSet, *, session_rules: RuleSet | None = None,
            default_backend: str = "echo") -> Explanation:
    """The explanation of ``facts`` under the file ``rules`` and a session's rules."""
    session_rules = session_rules or RuleSet(())
    out = Explanation(facts, frozenset().union(*(header_names(r.when) for r in (*session_rules.rules, *rules.rules))))
    matched: list[ir.Rule] = []
    for origin, ruleset in (("session", session_rules), ("file", rules)):
        for rule in ruleset.rules:
            ok, reason = why(rule.when, facts)
            where = "session" if origin == "session" else _origin(rule)
            out.rules.append(RuleVerdict(rule.name, where, ok, reason))
            if ok:
                matched.append(rule)
    plan = evaluate(facts, rules, session_rules=session_rules, default_backend=default_backend)
    out.plan = plan
    out.route_rule = plan.route_rule
    for link in plan.chain:
        if isinstance(link, ir.Group) and link.strategy:
            out.strategies.append((print_link(link), STRATEGIES[link.strategy]))
    for error_class, links, rule in plan.on:
        out.on.append((error_class, print_chain(ir.Chain(links)), rule))
    post_seen: set[str] = set()
    set_seen: set[str] = set()
    for rule in matched:
        out.limits += [(print_limit(limit), rule.name) for limit in rule.limits]
        for p in rule.post:
            if p.name not in post_seen:
                post_seen.add(p.name)
                out.post.append((print_post(p), rule.name))
        for key, value in rule.overrides:
            if key not in set_seen:
                set_seen.add(key)
                out.overrides.append((key, print_scalar(value), rule.name))
    return out


def _origin(rule: ir.Rule) -> str:
    span = rule.span
    return f"{span.file}:{span.line}" if span is not None else "file"


def why(cond: ir.Condition | None, facts: Facts) -> tuple[bool, str]:
    """Whether ``cond`` holds for ``facts``, and the comparison that decided it with what it saw."""
    if cond is None:
        return True, "no condition (always)"
    if isinstance(cond, ir.Const):
        return cond.value, f"when: {'true' if cond.value else 'false'}"
    if isinstance(cond, ir.And):
        for item in cond.items:
            ok, reason = why(item, facts)
            if not ok:
                return False, reason
        return True, "all of: " + "; ".join(why(item, facts)[1] for item in cond.items)
    if isinstance(cond, ir.Or):
        reasons = []
        for item in cond.items:
            ok, reason = why(item, facts)
            if ok:
                return True, reason
            reasons.append(reason)
        return False, "none of: " + "; ".join(reasons)
    if isinstance(cond, ir.Not):
        ok, reason = why(cond.item, facts)
        return not ok, f"{print_condition(cond)} is {'false' if ok else 'true'} (because {reason})"
    ok = compile_condition(cond)(facts)
    if isinstance(cond, ir.Truthy):
        return ok, f"{print_fact(cond.fact)} is {_seen(_getter(cond.fact)(facts))}"
    seen = [f"{print_fact(cond.fact)} is {_seen(_getter(cond.fact)(facts))}"]
    if isinstance(cond, ir.Compare) and isinstance(cond.value, ir.FactValue):
        seen.append(f"{print_fact(cond.value.fact)} is {_seen(_getter(cond.value.fact)(facts))}")
    return ok, f"{print_condition(cond)} is {'true' if ok else 'false'} ({', '.join(seen)})"


def _seen(value: Any) -> str:
    if value is None:
        return "missing"
    if isinstance(value, str):
        return print_scalar(value)
    return _show(value)
