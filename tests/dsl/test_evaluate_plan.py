"""The plan's accessors, what a rule set reads, rules that never match, rules keyed by model that
govern a target, and the bounds of the kept terms: exact expectations (issue 19's survivors)."""

from __future__ import annotations

import importlib

import pytest

from dsl import Facts, RuleSet, evaluate, ir, load_rules_text
from dsl.evaluate import Plan, TargetRules, target_terms
from dsl.parser import parse

evaluation = importlib.import_module("dsl.evaluate")  # (the package exports a function of that name)


def ruleset(text: str, backends: tuple[str, ...] = ("up", "echo")) -> RuleSet:
    loaded = load_rules_text(text, "r.yaml", backends)
    loaded.raise_for_errors()
    return RuleSet(loaded.rules)


def test_plan_accessors() -> None:
    plan = Plan(chain=(ir.Target("a", "m"), ir.Target("b", "n")), overrides=(("temperature", 0.3), ("max_tokens", 9)))
    assert plan.targets() == (ir.Target("a", "m"), ir.Target("b", "n"))
    assert plan.override("temperature") == 0.3 and plan.override("max_tokens") == 9
    assert plan.override("top_p") is None
    assert Plan(chain=()).targets() == ()


@pytest.mark.parametrize(("when", "matches"), [(ir.Const(False), False), (ir.Const(True), True), (None, True)])
def test_rules_built_in_code_with_constant_conditions(when: ir.Condition | None, matches: bool) -> None:
    plan = evaluate(Facts.build("m"), RuleSet([ir.Rule("r", when=when, limits=(ir.Limit("rpm", 1),))]))
    assert plan.rules == (("r",) if matches else ())


@pytest.mark.parametrize(("conditions", "reads"), [
    ([], set()),
    (["true"], set()),
    (['model == "a"', None], {"model"}),
    (['header("x-team") == "red"', "tokens > 5"], {"header", "tokens"}),
    (['session.project == "p" and not stream', 'weekday == "mon" or time < "09:00"'],
     {"session", "stream", "weekday", "time"}),
    (["tokens > context_window * 0.8"], {"tokens", "context_window"}),
])
def test_a_rule_set_reads_the_facts_of_all_its_conditions(conditions: list, reads: set) -> None:
    rules = [ir.Rule(f"r{i}", when=parse(c, "condition") if c else None) for i, c in enumerate(conditions)]
    assert RuleSet(rules).reads == reads


@pytest.mark.parametrize("condition", ["false", "not true", "false and stream", "false or false"])
def test_a_rule_whose_condition_is_false_never_matches(condition: str) -> None:
    rs = RuleSet([ir.Rule("never", when=parse(condition, "condition"), route=parse("up:x", "chain"),
                          limits=(ir.Limit("rpm", 1),)),
                  ir.Rule("always", when=parse("true", "condition"), limits=(ir.Limit("rpm", 2),))])
    for model in ("x", "m"):
        plan = evaluate(Facts.build(model, stream=True), rs, default_backend="echo")
        assert plan.rules == ("always",) and plan.route_rule is None
        assert plan.targets() == (ir.Target("echo", model),) and plan.limits == (ir.Limit("rpm", 2),)


def test_a_rule_keyed_by_model_governs_the_target_of_that_model() -> None:
    rules = ruleset('rules:\n  - name: big-budget\n    when: model == "big"\n    limits: rpm(3)\n    set: max_tokens=7\n'
                    '  - name: other\n    when: model == "other"\n    limits: rpm(4)\n')
    facts = Facts.build("small")
    plan = evaluate(facts, rules)
    assert plan.limits == ()
    terms = target_terms(facts, ir.Target("up", "big"), rules, plan)
    assert terms is not None and terms.rules == ("big-budget",) and terms.limits == (ir.Limit("rpm", 3),)
    assert terms.overrides == (("max_tokens", 7),)
    assert TargetRules(facts, plan, rules).terms(ir.Target("up", "big")) == terms
    assert TargetRules(facts, plan, rules).terms(ir.Target("up", "tiny")) is None


def test_settings_the_plan_already_has_are_not_repeated_for_a_target() -> None:
    rules = ruleset('rules:\n  - name: r1\n    when: model == "x"\n    set: max_tokens=9\n'
                    '  - name: r2\n    when: backend == "up"\n    limits: rpm(1)\n')
    facts = Facts.build("x")
    plan = evaluate(facts, rules)
    assert dict(plan.overrides) == {"max_tokens": 9}
    terms = target_terms(facts, ir.Target("up", "y"), rules, plan)
    assert terms is not None and terms.rules == ("r2",) and terms.limits == (ir.Limit("rpm", 1),)
    assert terms.overrides == ()  # the same settings as the plan's: nothing to change for this call


def test_kept_terms_never_exceed_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evaluation, "PLAN_MEMO_SIZE", 8)
    text = "rules:\n" + "".join(f'  - name: r{i}\n    when: model == "t{i}"\n    limits: rpm({i + 1})\n'
                                for i in range(20))
    rules = ruleset(text)
    facts = Facts.build("x")
    plan = evaluate(facts, rules)
    for i in range(20):  # each target matches a different rule: a different key each time
        terms = target_terms(facts, ir.Target("up", f"t{i}"), rules, plan)
        assert terms is not None and terms.limits == (ir.Limit("rpm", i + 1),)
        assert len(rules._terms) <= 8


def test_kept_plans_never_exceed_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evaluation, "PLAN_MEMO_SIZE", 8)
    rs = RuleSet([ir.Rule("any", limits=(ir.Limit("rpm", 1),))])
    for i in range(20):
        evaluate(Facts.build(f"model-{i}"), rs)
        assert len(rs._plans) <= 8


def test_without_a_default_backend_the_fallback_is_echo() -> None:
    assert evaluate(Facts.build("m"), RuleSet(())).targets() == (ir.Target("echo", "m"),)
    assert evaluate(Facts.build("m", backend="up"), RuleSet(())).targets() == (ir.Target("up", "m"),)


def test_the_plan_lists_only_file_rules_as_governing() -> None:
    session = RuleSet([ir.Rule("s0", limits=(ir.Limit("rpm", 9),)), ir.Rule("s1", route=parse("up:x", "chain"))])
    files = RuleSet([ir.Rule("f0", when=parse("stream", "condition"), limits=(ir.Limit("rpm", 1),)),
                     ir.Rule("f1", limits=(ir.Limit("rpm", 2),))])
    plan = evaluate(Facts.build("m"), files, session_rules=session)
    assert plan.rules == ("s0", "s1", "f1")
    assert plan.governing == (1,)  # f1's position among the file rules; s0 is no file rule
    assert plan.limits == (ir.Limit("rpm", 9), ir.Limit("rpm", 2))


BUDGETS_AND_ON = """
rules:
  - name: spend
    when: model == "m"
    limits: rpm(5), budget(20, per=caller, window=day), tpm(1k)
    on:
      rate_limit: up
      timeout: echo:fast
  - name: later
    when: model == "m"
    on:
      rate_limit: echo:slow
      context_window: up:big -> echo
  - name: to-up
    when: backend == "up"
    limits: budget(3), rpm(2)
"""


def test_budgets_are_kept_apart_from_the_rate_limits() -> None:
    rules = ruleset(BUDGETS_AND_ON)
    plan = evaluate(Facts.build("m"), rules)
    assert plan.limits == (ir.Limit("rpm", 5), ir.Limit("tpm", 1000))
    assert plan.budgets == ((ir.Limit("budget", 20, "caller", None, "day"), "spend"),)
    assert rules.budgeted is True


def test_each_error_class_falls_back_by_the_first_rule_that_names_it() -> None:
    plan = evaluate(Facts.build("m"), ruleset(BUDGETS_AND_ON))
    assert plan.on == (
        ("rate_limit", (ir.Target("up", "m"),), "spend"),  # a bare backend takes the requested model
        ("timeout", (ir.Target("echo", "fast"),), "spend"),
        ("context_window", (ir.Target("up", "big"), ir.Target("echo", "m")), "later"),
    )
    assert evaluate(Facts.build("x"), ruleset(BUDGETS_AND_ON)).on == ()


def test_a_target_brings_its_rules_budgets_apart_from_their_limits() -> None:
    rules = ruleset(BUDGETS_AND_ON)
    facts = Facts.build("x")
    plan = evaluate(facts, rules)
    assert plan.budgets == () and plan.limits == ()
    terms = target_terms(facts, ir.Target("up", "x"), rules, plan)
    assert terms is not None and terms.rules == ("to-up",)
    assert terms.limits == (ir.Limit("rpm", 2),)
    assert terms.budgets == ((ir.Limit("budget", 3, "caller", None, "day"), "to-up"),)


@pytest.mark.parametrize(("text", "budgeted"), [
    ('rules:\n  - name: r\n    limits: budget(1)\n', True),
    ('rules:\n  - name: r\n    when: stream\n    limits: rpm(1), budget(1)\n', True),
    ('rules:\n  - name: r\n    limits: rpm(1), tpm(5)\n', False),
    ('rules:\n  - name: r\n    route: up\n', False),
])
def test_a_rule_set_is_budgeted_when_a_rule_has_a_budget(text: str, budgeted: bool) -> None:
    assert ruleset(text).budgeted is budgeted


def test_a_group_route_keeps_its_strategy_and_takes_the_requested_model() -> None:
    rules = ruleset('rules:\n  - name: r\n    route: fastest(up | echo:e) -> up:z\n')
    plan = evaluate(Facts.build("m"), rules)
    group = plan.chain[0]
    assert isinstance(group, ir.Group) and group.strategy == "fastest"
    assert group == ir.Group((ir.Member(ir.Target("up", "m")), ir.Member(ir.Target("echo", "e"))), strategy="fastest")
    assert plan.chain[1:] == (ir.Target("up", "z"),)


def test_a_request_visits_only_the_rules_its_model_can_match() -> None:
    """Rules keyed by literal model names are looked up by the model: for another model they are
    not candidates at all (their conditions are not even run); unkeyed rules always are."""
    rules = ruleset('rules:\n  - name: a\n    when: model == "a" and stream\n    limits: rpm(1)\n'
                    '  - name: any\n    when: tokens > 5\n    limits: rpm(2)\n'
                    '  - name: ab\n    when: model in ["a", "b"]\n    limits: rpm(3)\n')
    assert [c.rule.name for c in rules.candidates("a")] == ["a", "any", "ab"]
    assert [c.rule.name for c in rules.candidates("b")] == ["any", "ab"]
    assert [c.rule.name for c in rules.candidates("c")] == ["any"]
