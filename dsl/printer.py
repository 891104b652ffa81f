"""IR → canonical text. ``parse(print(x)) == x`` for every node (a tested property).

Used by ``!/route-list``, ``check --print``, and to store session routes as text.
"""

from __future__ import annotations

import json
import re

import yaml

from . import ir
from .registry import BUDGET_DEFAULTS

_PLAIN_MODEL = re.compile(r"^[A-Za-z0-9_.\/@+](?:[A-Za-z0-9_.\/@+]|-(?!>))*(?::[A-Za-z0-9_.\/@+](?:[A-Za-z0-9_.\/@+]|-(?!>))*)*\Z")
_NUMBER_LIKE = re.compile(r"^-?\d+(\.\d+)?[kM]?\Z")
_KEYWORDS = {"true", "false", "and", "or", "not", "in"}


def print_string(value: str) -> str:
    """Double-quoted with JSON escapes, which the grammar's string rule reads back."""
    return json.dumps(value, ensure_ascii=False)


def print_number(value: int | float) -> str:
    if isinstance(value, int) and value != 0:
        if value % 1_000_000 == 0:
            return f"{value // 1_000_000}M"
        if value % 1_000 == 0:
            return f"{value // 1_000}k"
    return repr(value)


def print_scalar(value: ir.Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return print_number(value)
    return print_string(value)


def _is_word(text: str) -> bool:
    return bool(_PLAIN_MODEL.match(text)) and ":" not in text and not _NUMBER_LIKE.match(text) and text not in _KEYWORDS


def print_target(target: ir.Target) -> str:
    if target.model is None:
        return target.backend
    segments = target.model.split(":")
    plain = bool(_PLAIN_MODEL.match(target.model)) and all(s and s not in _KEYWORDS for s in segments)
    return f"{target.backend}:{target.model if plain else print_string(target.model)}"


def print_link(link: ir.Link) -> str:
    if isinstance(link, ir.Group):
        members = []
        for m in link.members:
            weight = "" if m.weight is None else f"{int(m.weight) if m.weight.is_integer() else m.weight!r}% "
            members.append(weight + print_target(m.target))
        return (link.strategy or "") + "(" + " | ".join(members) + ")"
    return print_target(link)


def print_chain(chain: ir.Chain) -> str:
    return " -> ".join(print_link(link) for link in chain.links)


def print_fact(fact: ir.Fact) -> str:
    return f"{fact.name}({print_string(fact.arg)})" if fact.arg is not None else fact.name


_PRECEDENCE = {ir.Or: 1, ir.And: 2, ir.Not: 3}


def print_condition(cond: ir.Condition, parent: int = 0) -> str:
    level = _PRECEDENCE.get(type(cond), 4)
    if isinstance(cond, ir.Or):
        text = " or ".join(print_condition(c, level) for c in cond.items)
    elif isinstance(cond, ir.And):
        text = " and ".join(print_condition(c, level) for c in cond.items)
    elif isinstance(cond, ir.Not):
        text = "not " + print_condition(cond.item, level)
    elif isinstance(cond, ir.Compare) and isinstance(cond.value, ir.FactValue):
        scaled = "" if cond.value.factor == 1 else f" * {print_number(cond.value.factor)}"
        text = f"{print_fact(cond.fact)} {cond.op} {print_fact(cond.value.fact)}{scaled}"
    elif isinstance(cond, ir.Compare):
        text = f"{print_fact(cond.fact)} {cond.op} {print_scalar(cond.value)}"
    elif isinstance(cond, ir.In):
        values = ", ".join(print_scalar(v) for v in cond.values)
        text = f"{print_fact(cond.fact)} {'not in' if cond.negated else 'in'} [{values}]"
    elif isinstance(cond, ir.Glob):
        text = f"{print_fact(cond.fact)} ~ {print_string(cond.pattern)}"
    elif isinstance(cond, ir.Regex):
        text = f"{print_fact(cond.fact)} =~ {print_string(cond.pattern)}"
    elif isinstance(cond, ir.Truthy):
        text = print_fact(cond.fact)
    elif isinstance(cond, ir.Const):
        text = "true" if cond.value else "false"
    else:  # pragma: no cover - exhaustive
        raise TypeError(cond)
    # Nested same-level and/or need parentheses to keep their grouping on re-parse.
    needs = level < parent or (level == parent and level in (1, 2))
    return f"({text})" if needs else text


def print_value(value: ir.Scalar | ir.Chain | ir.Target, bare_words: bool = True) -> str:
    if isinstance(value, ir.Chain):
        return print_chain(value)
    if isinstance(value, ir.Target):
        return print_target(value)
    if bare_words and isinstance(value, str) and _is_word(value):
        return value
    return print_scalar(value)


def print_call(name: str, params: tuple[tuple[str | None, object], ...]) -> str:
    if not params:
        return name
    args = ", ".join((f"{k}={print_value(v)}" if k else print_value(v)) for k, v in params)  # type: ignore[arg-type]
    return f"{name}({args})"


def print_limit(limit: ir.Limit) -> str:
    params: tuple[tuple[str | None, object], ...] = ((None, limit.amount),)
    if limit.kind == "budget":
        if limit.per != BUDGET_DEFAULTS["per"]:
            params += (("per", limit.per),)
        if limit.window != BUDGET_DEFAULTS["window"]:
            params += (("window", limit.window),)
    elif limit.per != "backend":
        params += (("per", limit.per),)
    return print_call(limit.kind, params)


def print_post(post: ir.PostProcessor) -> str:
    return print_call(post.name, post.params)  # type: ignore[arg-type]


def print_overrides(overrides: tuple[tuple[str, ir.Scalar], ...]) -> str:
    return ", ".join(f"{k}={print_scalar(v)}" for k, v in overrides)


def rule_fields(rule: ir.Rule) -> dict[str, object]:
    """A rule as the dict a routes.d file would hold (only non-default fields)."""
    out: dict[str, object] = {"name": rule.name}
    if rule.description:
        out["description"] = rule.description
    if rule.priority:
        out["priority"] = rule.priority
    if rule.when is not None:
        out["when"] = print_condition(rule.when)
    if rule.route is not None:
        out["route"] = print_chain(rule.route)
    if rule.limits:
        out["limits"] = ", ".join(print_limit(lim) for lim in rule.limits)
    if rule.post:
        out["post"] = ", ".join(print_post(p) for p in rule.post)
    if rule.overrides:
        out["set"] = print_overrides(rule.overrides)
    if rule.on:
        out["on"] = {error_class: print_chain(chain) for error_class, chain in rule.on}
    return out


def print_rule(rule: ir.Rule) -> str:
    """YAML text of one rule, as a list item of a ``rules:`` file."""
    lines = []
    for i, (key, value) in enumerate(rule_fields(rule).items()):
        if isinstance(value, dict):  # on: one error class a line
            lines.append(f"    {key}:")
            lines.extend(f"      {k}: {_yaml_string(str(v))}" for k, v in value.items())
            continue
        text = value if isinstance(value, int) else _yaml_string(str(value))
        lines.append(("  - " if i == 0 else "    ") + f"{key}: {text}")
    return "\n".join(lines)


def print_rules(rules: list[ir.Rule] | tuple[ir.Rule, ...]) -> str:
    return "rules:\n" + "\n".join(print_rule(r) for r in rules) + "\n"


def _yaml_string(text: str) -> str:
    """Plain YAML when safe, else single-quoted (YAML single quotes only escape '). Safe means
    YAML reads the plain text back as that string: ``no``, ``on``, ``null`` or ``1e3`` are not."""
    if re.match(r"^[A-Za-z0-9_(][^#:]*$", text) and not text.endswith(" ") and ": " not in text \
            and '"' not in text[:1] and yaml.safe_load(text) == text:
        return text
    return "'" + text.replace("'", "''") + "'"
