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
