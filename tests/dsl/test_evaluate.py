"""Evaluation semantics, table-driven; the model index agrees with a plain linear scan."""

from __future__ import annotations

import importlib
from datetime import datetime

import pytest
from hypothesis import given, settings, strategies as st

from dsl import Facts, RuleSet, evaluate, ir, load_rules_text, parse_message
from dsl.evaluate import compile_condition, facts_read, literal_models
from dsl.parser import parse
from dsl.session import apply_route_edit, route_rule, session_ruleset

BACKENDS = ("openai", "anthropic", "gemini", "azure", "echo", "openrouter")

RULES = """
rules:
  - name: gpt4
    when: model ~ "gpt-4*" and header("x-team") != "free"
    route: openai:gpt-4o -> anthropic:claude-3-5-sonnet
    limits: rpm(60)
    post: tool_call_repair, loop_detection(min_repetitions=4)
  - name: long-context
    when: tokens > 100k
    route: gemini:gemini-1.5-pro
    set: temperature=0.3
  - name: office-hours-limit
    when: weekday in ["mon", "tue", "wed", "thu", "fri"] and time >= "09:00" and time < "17:00"
    limits: tpm(200k, per=caller)
  - name: exact
    when: model == "claude-3"
    route: anthropic
    post: loop_detection(min_repetitions=9)
  - name: streams-cold
    when: stream
    set: temperature=0.1
  - name: urgent
    priority: 5
    when: header("x-priority") == "high"
    route: (50% openai | 50% azure)
"""


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    loaded = load_rules_text(RULES, "rules.yaml", BACKENDS)
    loaded.raise_for_errors()
    return RuleSet(loaded.rules)


MONDAY_10 = datetime(2026, 11, 23, 10, 0)
SUNDAY_10 = datetime(2026, 11, 29, 10, 0)

CASES = [
    # (description, facts kwargs, expected chain, expected rule names, expected post names, expected overrides)
    ("glob match routes the chain", dict(model="gpt-4-turbo"), "openai:gpt-4o -> anthropic:claude-3-5-sonnet",
     ["gpt4", "office-hours-limit"], ["tool_call_repair", "loop_detection"], {}),
    ("header excludes the rule", dict(model="gpt-4", headers={"x-team": "free"}), "echo:gpt-4",
     ["office-hours-limit"], [], {}),
    ("tokens with k suffix", dict(model="x", tokens=150_000), "gemini:gemini-1.5-pro",
     ["long-context", "office-hours-limit"], [], {"temperature": 0.3}),
    ("first route wins, others still contribute", dict(model="gpt-4", tokens=150_000, stream=True),
     "openai:gpt-4o -> anthropic:claude-3-5-sonnet", ["gpt4", "long-context", "office-hours-limit", "streams-cold"],
     ["tool_call_repair", "loop_detection"], {"temperature": 0.3}),
    ("target keeps the requested model", dict(model="claude-3"), "anthropic:claude-3",
     ["office-hours-limit", "exact"], ["loop_detection"], {}),
    ("priority puts urgent first", dict(model="claude-3", headers={"x-priority": "high"}),
     "(50% openai:claude-3 | 50% azure:claude-3)", ["urgent", "office-hours-limit", "exact"], ["loop_detection"], {}),
    ("client backend prefix is the default", dict(model="whatever", backend="openrouter"), "openrouter:whatever",
     ["office-hours-limit"], [], {}),
]


@pytest.mark.parametrize(("what", "kwargs", "chain", "names", "post", "overrides"), CASES, ids=[c[0] for c in CASES])
def test_plan(rules: RuleSet, what: str, kwargs: dict, chain: str, names: list, post: list, overrides: dict) -> None:
    from dsl.printer import print_chain

    plan = evaluate(Facts.build(now=MONDAY_10, **kwargs), rules, default_backend="echo")
    assert print_chain(ir.Chain(plan.chain)) == chain
    assert list(plan.rules) == names
    assert [p.name for p in plan.post] == post
    assert dict(plan.overrides) == overrides


def test_limits_add_up_and_time_facts_apply(rules: RuleSet) -> None:
    weekday = evaluate(Facts.build("gpt-4", now=MONDAY_10), rules)
    sunday = evaluate(Facts.build("gpt-4", now=SUNDAY_10), rules)
    assert [(lim.kind, lim.amount, lim.per) for lim in weekday.limits] == [("rpm", 60, "backend"), ("tpm", 200_000, "caller")]
    assert [(lim.kind, lim.amount) for lim in sunday.limits] == [("rpm", 60)]


def test_first_rule_wins_per_post_processor(rules: RuleSet) -> None:
    plan = evaluate(Facts.build("claude-3", now=MONDAY_10), rules)
    assert plan.post[0].param("min_repetitions") == 9


def test_session_rules_win_over_file_rules(rules: RuleSet) -> None:
    parsed = parse_message("!/route-append(gpt-4, anthropic:claude-3) !/route-append(gpt-4, gemini:gemini-1.5-pro)",
                           known_backends=BACKENDS)
    routes: list = []
    for command in parsed.commands:
        for edit in command.edits:
            routes = apply_route_edit(routes, edit)
    session = session_ruleset(routes)
    plan = evaluate(Facts.build("gpt-4", now=SUNDAY_10), rules, session_rules=session)
    assert [str(t) for t in plan.targets()] == ["anthropic:claude-3", "gemini:gemini-1.5-pro"]
    assert plan.route_rule == "session:gpt-4"
    # File limits and post-processors still apply under a session route.
    assert [lim.kind for lim in plan.limits] == ["rpm"] and plan.post
    prepended = apply_route_edit(routes, parse_message("!/route-prepend(gpt-4, openai:gpt-4o)", known_backends=BACKENDS)
                                 .commands[0].edits[0])
    assert prepended[0]["route"] == "openai:gpt-4o -> anthropic:claude-3 -> gemini:gemini-1.5-pro"
    cleared = apply_route_edit(prepended, ir.RouteEdit("clear", "gpt-4"))
    assert cleared == [] and routes  # edits never mutate the stored list


def test_command_and_yaml_rule_compile_to_the_same_ir() -> None:
    edit = parse_message("!/route-append(gpt-4, anthropic:claude-3)", known_backends=BACKENDS).commands[0].edits[0]
    from_command = route_rule(edit.model, edit.chain)
    from_yaml = load_rules_text('rules:\n  - name: "session:gpt-4"\n    when: model == "gpt-4"\n    route: anthropic:claude-3\n',
                                "r.yaml", BACKENDS).rules[0]
    assert from_command == from_yaml


def test_oneoff_and_backend_order() -> None:
    rs = session_ruleset([{"model": "m", "route": "anthropic:c"}], backend="openai", oneoff="gemini:g")
    assert [str(t) for t in evaluate(Facts.build("m"), RuleSet(()), session_rules=rs).targets()] == ["gemini:g"]
    rs = session_ruleset([{"model": "m", "route": "anthropic:c"}], backend="openai")
    assert [str(t) for t in evaluate(Facts.build("m"), RuleSet(()), session_rules=rs).targets()] == ["anthropic:c"]
    assert [str(t) for t in evaluate(Facts.build("other"), RuleSet(()), session_rules=rs).targets()] == ["openai:other"]


@pytest.mark.parametrize(("cond", "keys"), [
    ('model == "a"', {"a"}),
    ('model in ["a", "b"] and stream', {"a", "b"}),
    ('model == "a" or model in ["b"]', {"a", "b"}),
    ('model == "a" or stream', None),
    ('model ~ "a*"', None),
    ('not model == "a"', None),
    ('model not in ["a"]', None),
])
def test_literal_model_index(cond: str, keys: set | None) -> None:
    found = literal_models(parse(cond, "condition"))
    assert (set(found) if found is not None else None) == keys


MODELS = ["a", "b", "c", "d"]
cond_texts = st.sampled_from([
    'model == "a"', 'model == "b"', 'model in ["a", "c"]', 'model ~ "[ab]"', 'stream', 'not stream',
    'model == "a" and stream', 'model == "d" or tools', 'tokens > 10', 'true',
])


@settings(max_examples=150)
@given(st.lists(st.tuples(st.one_of(st.none(), cond_texts), st.sampled_from(["openai:x", "anthropic", None])),
                min_size=1, max_size=12),
       st.sampled_from(MODELS), st.booleans(), st.booleans(), st.integers(0, 20))
def test_index_agrees_with_linear_scan(specs: list, model: str, stream: bool, tools: bool, tokens: int) -> None:
    rules = []
    for i, (cond, route) in enumerate(specs):
        rules.append(ir.Rule(f"r{i}", when=parse(cond, "condition") if cond else None,
                             route=parse(route, "chain") if route else None,
                             limits=(ir.Limit("rpm", i + 1),)))
    facts = Facts.build(model, stream=stream, tools=tools, tokens=tokens)
    plan = evaluate(facts, RuleSet(rules))
    matched = [r for r in rules if r.when is None or compile_condition(r.when)(facts)]
    assert list(plan.rules) == [r.name for r in matched]
    first = next((r for r in matched if r.route is not None), None)
    assert plan.route_rule == (first.name if first else None)
    assert [lim.amount for lim in plan.limits] == [r.limits[0].amount for r in matched]


def test_missing_header_and_session_fields_are_false_not_errors() -> None:
    for text, expected in [('header("x") == "y"', False), ('header("x") != "y"', True), ('session.project', False),
                           ('tokens > 5 or caller == "k"', False), ('time < "23:59"', True)]:
        assert compile_condition(parse(text, "condition"))(Facts.build("m", now=datetime(2026, 1, 1, 12, 0))) is expected


def test_group_order_is_not_decided_by_evaluation() -> None:
    rs = RuleSet([ir.Rule("g", route=parse("(50% openai:a | 50% azure:b)", "chain"))])
    plans = {evaluate(Facts.build("m"), rs) for _ in range(5)}
    assert len(plans) == 1  # pure: the weighted pick happens in dispatch, with its own RNG


fact_sets = st.fixed_dictionaries({
    "model": st.sampled_from(["gpt-4", "gpt-4-turbo", "claude-3", "x"]), "tokens": st.sampled_from([0, 150_000]),
    "stream": st.booleans(), "backend": st.sampled_from([None, "openrouter"]),
    "headers": st.sampled_from([{}, {"x-team": "free"}, {"x-priority": "high"}]),
    "now": st.sampled_from([MONDAY_10, SUNDAY_10]),
})


@settings(max_examples=100)
@given(st.lists(fact_sets, min_size=1, max_size=20), st.sampled_from(["echo", "openai"]))
def test_kept_plans_equal_fresh_ones(sequence: list, default_backend: str) -> None:
    """Plans are kept per rule set: a request never gets one made for different facts."""
    loaded = load_rules_text(RULES, "rules.yaml", BACKENDS)
    kept = RuleSet(loaded.rules)
    for kwargs in sequence:
        facts = Facts.build(**kwargs)
        assert evaluate(facts, kept, default_backend=default_backend) == \
            evaluate(facts, RuleSet(loaded.rules), default_backend=default_backend)
    for kwargs in sequence:  # and the same plan object once made
        facts = Facts.build(**kwargs)
        assert evaluate(facts, kept, default_backend=default_backend) is evaluate(facts, kept, default_backend=default_backend)


def test_kept_plans_tell_session_rule_sets_apart(rules: RuleSet) -> None:
    one = session_ruleset([{"model": "gpt-4", "route": "anthropic:claude-3"}])
    two = session_ruleset([{"model": "gpt-4", "route": "gemini:gemini-1.5-pro"}])
    facts = Facts.build("gpt-4", now=SUNDAY_10)
    assert [str(t) for t in evaluate(facts, rules, session_rules=one).targets()] == ["anthropic:claude-3"]
    assert [str(t) for t in evaluate(facts, rules, session_rules=two).targets()] == ["gemini:gemini-1.5-pro"]
    assert [str(t) for t in evaluate(facts, rules).targets()] == ["openai:gpt-4o", "anthropic:claude-3-5-sonnet"]


def test_kept_plans_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    evaluation = importlib.import_module("dsl.evaluate")  # (the package exports a function of that name)
    monkeypatch.setattr(evaluation, "PLAN_MEMO_SIZE", 8)
    rs = RuleSet([ir.Rule("any", limits=(ir.Limit("rpm", 1),))])
    for i in range(50):  # model names come from clients
        plan = evaluate(Facts.build(f"model-{i}"), rs, default_backend="echo")
        assert [str(t) for t in plan.targets()] == [f"echo:model-{i}"]
        assert len(rs._plans) <= 8


ATOMS = ['model == "a"', 'model ~ "a*"', "tokens > 10", "tokens <= 3", "stream", "tools", 'caller == "k"',
         'frontend == "anthropic"', 'backend == "b"', 'header("x-team") == "blue"', 'header("x-team")',
         'session.project == "p"', "session.id", 'time >= "12:00"', 'weekday in ["sat", "sun"]', "true", "false"]
conditions = st.recursive(
    st.sampled_from(ATOMS),
    lambda inner: st.one_of(st.builds(lambda a, b: f"({a}) and ({b})", inner, inner),
                            st.builds(lambda a, b: f"({a}) or ({b})", inner, inner),
                            st.builds(lambda a: f"not ({a})", inner)),
    max_leaves=6)
full_facts = st.builds(
    lambda model, tokens, stream, tools, caller, frontend, backend, team, project, clock: Facts(
        model, frontend, backend, caller, tokens, stream, tools, {"x-team": team} if team else {},
        {"project": project, "id": "s-1" if project else None}, *clock),
    st.sampled_from(["a", "ab", "b"]), st.integers(0, 20), st.booleans(), st.booleans(),
    st.sampled_from([None, "k", "j"]), st.sampled_from(["openai", "anthropic"]), st.sampled_from([None, "b", "c"]),
    st.sampled_from([None, "blue", "red"]), st.sampled_from([None, "p", "q"]),
    st.sampled_from([("09:00", "mon"), ("13:00", "sat"), ("23:59", "sun")]))


@settings(max_examples=300)
@given(conditions, full_facts)
def test_facts_a_condition_does_not_read_cannot_change_it(text: str, facts: Facts) -> None:
    """The pipeline leaves facts outside ``RuleSet.reads`` at their defaults: that must never
    change what a condition decides."""
    import dataclasses

    cond = parse(text, "condition")
    reads = facts_read(cond)
    blank = Facts(facts.model)  # every other fact at its default
    kept = {f.name: getattr(facts, f.name) for f in dataclasses.fields(Facts)
            if f.name in reads or (f.name == "headers" and "header" in reads) or f.name == "model"}
    assert compile_condition(cond)(facts) == compile_condition(cond)(dataclasses.replace(blank, **kept))


# ---- what a target adds to the plan (limits and set govern the target actually called) -----------

GOVERNING = """
rules:
  - name: gpt4-budget
    when: model ~ "gpt-4*"
    limits: rpm(2, per=caller)
    set: max_tokens=100
  - name: to-up
    when: backend == "up"
    limits: rpm(5)
    set: max_tokens=50, temperature=0.2
  - name: big
    when: tokens > 1k
    set: max_tokens=300, top_p=0.5
  - name: alias
    when: model == "alias"
    route: up:gpt-4
"""


@pytest.fixture(scope="module")
def governing() -> RuleSet:
    loaded = load_rules_text(GOVERNING, "rules.yaml", ("up", "echo"))
    loaded.raise_for_errors()
    return RuleSet(loaded.rules)


def test_only_rules_with_limits_or_set_are_evaluated_per_target(governing: RuleSet) -> None:
    from dsl.evaluate import target_terms

    assert governing.governs and governing.governing_reads == {"model", "backend", "tokens"}
    assert not RuleSet(load_rules_text('rules:\n  - name: r\n    route: up\n', "r.yaml", ("up",)).rules).governs
    facts = Facts.build("zzz")
    plan = evaluate(facts, governing)
    nothing = RuleSet(())
    assert target_terms(facts, ir.Target("up", "gpt-4"), nothing, plan) is None


def test_a_target_brings_the_rules_it_matches(governing: RuleSet) -> None:
    from dsl.evaluate import target_terms

    facts = Facts.build("zzz")
    plan = evaluate(facts, governing)
    assert plan.limits == () and plan.overrides == ()
    terms = target_terms(facts, ir.Target("up", "gpt-4"), governing, plan)
    assert terms is not None and terms.rules == ("gpt4-budget", "to-up")
    assert terms.limits == (ir.Limit("rpm", 2, "caller"), ir.Limit("rpm", 5, "backend"))
    # first rule wins per setting, over the rules matched through the request or the target
    assert dict(terms.overrides) == {"max_tokens": 100, "temperature": 0.2}
    assert target_terms(facts, ir.Target("echo", "small"), governing, plan) is None


def test_a_rule_matched_by_the_request_is_not_counted_again(governing: RuleSet) -> None:
    from dsl.evaluate import target_terms

    facts = Facts.build("alias")
    plan = evaluate(facts, governing)
    assert plan.governing == () and plan.targets() == (ir.Target("up", "gpt-4"),)
    facts = Facts.build("gpt-4", tokens=2000)
    plan = evaluate(facts, governing)
    assert plan.limits == (ir.Limit("rpm", 2, "caller"),) and dict(plan.overrides) == {"max_tokens": 100, "top_p": 0.5}
    terms = target_terms(facts, ir.Target("up", "gpt-4"), governing, plan)
    assert terms is not None and terms.rules == ("to-up",) and terms.limits == (ir.Limit("rpm", 5, "backend"),)
    # an earlier rule's value stays; the new key is added
    assert dict(terms.overrides) == {"max_tokens": 100, "top_p": 0.5, "temperature": 0.2}


def test_settings_equal_to_the_plans_are_not_repeated(governing: RuleSet) -> None:
    from dsl.evaluate import target_terms

    rules = RuleSet(load_rules_text('rules:\n  - name: r\n    when: model == "m" or backend == "up"\n'
                                    '    limits: rpm(1)\n    set: max_tokens=9\n', "r.yaml", ("up",)).rules)
    facts = Facts.build("x")
    terms = target_terms(facts, ir.Target("up", "y"), rules, evaluate(facts, rules))
    assert terms is not None and terms.overrides == (("max_tokens", 9),)
    facts = Facts.build("m")
    assert target_terms(facts, ir.Target("up", "m"), rules, evaluate(facts, rules)) is None


def test_the_same_facts_skip_the_second_evaluation(governing: RuleSet, monkeypatch: pytest.MonkeyPatch) -> None:
    """A target with the request's own model (and backend, or rules that read no backend) cannot
    match other rules: no second evaluation is made."""
    module = importlib.import_module("dsl.evaluate")

    calls = []
    monkeypatch.setattr(module, "replace", lambda *a, **k: calls.append(k) or pytest.fail("evaluated"))
    facts = Facts.build("gpt-4", backend="up")
    assert module.target_terms(facts, ir.Target("up", "gpt-4"), governing, evaluate(facts, governing)) is None
    by_model = RuleSet(load_rules_text('rules:\n  - name: r\n    when: model == "m"\n    limits: rpm(1)\n',
                                       "r.yaml", ("up",)).rules)
    facts = Facts.build("m")
    assert module.target_terms(facts, ir.Target("up", "m"), by_model, evaluate(facts, by_model)) is None
    assert calls == []


def test_terms_memo_is_bounded(governing: RuleSet, monkeypatch: pytest.MonkeyPatch) -> None:
    module = importlib.import_module("dsl.evaluate")
    monkeypatch.setattr(module, "PLAN_MEMO_SIZE", 8)
    rules = RuleSet(load_rules_text('rules:\n  - name: r\n    when: tokens > 5\n    limits: rpm(1)\n',
                                    "r.yaml", ("up",)).rules)
    for i in range(50):
        facts = Facts.build(f"m{i}", tokens=i % 10)
        module.target_terms(facts, ir.Target("up", f"t{i}"), rules, evaluate(facts, rules))
    assert len(rules._terms) <= 8
