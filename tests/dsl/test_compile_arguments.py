"""How a command's arguments bind: positional and keyword, each error named, and the backends a
command may name. Tables of command → session edits, or command → the error it is refused with."""

from __future__ import annotations

import pytest

from dsl import ir
from dsl.compile import Context, compile_command, compile_limits, compile_overrides, compile_post, parse_duration
from dsl.errors import RulesSemanticError
from dsl.parser import parse

BACKENDS = ("openai", "anthropic", "echo")


def run(text: str, backends: tuple[str, ...] | None = BACKENDS) -> tuple[ir.SessionEdit, ...]:
    return compile_command(parse(text, "command"), Context(text, known_backends=backends))


def refusal(text: str, backends: tuple[str, ...] | None = BACKENDS) -> str:
    with pytest.raises(RulesSemanticError) as caught:
        run(text, backends)
    return str(caught.value)


ACCEPTED = [
    # keyword arguments bind like positional ones
    ("backend(name=openai)", (ir.SetField("backend", "openai"),)),
    ("backend(openai)", (ir.SetField("backend", "openai"),)),
    ("temperature(value=0.5)", (ir.SetField("temperature", 0.5),)),
    ("temperature(0)", (ir.SetField("temperature", 0),)),
    ("temperature(2)", (ir.SetField("temperature", 2),)),
    ("interactive", (ir.SetField("interactive", True),)),
    ("interactive(enabled=false)", (ir.SetField("interactive", False),)),
    ("interactive(false)", (ir.SetField("interactive", False),)),
    ("route-clear(model=gpt-4)", (ir.RouteEdit("clear", "gpt-4"),)),
    ("route-append(gpt-4, target=anthropic:claude-3)",
     (ir.RouteEdit("append", "gpt-4", ir.Chain((ir.Target("anthropic", "claude-3"),))),)),
    ("route-prepend(model=gpt-4, target=openai)",
     (ir.RouteEdit("prepend", "gpt-4", ir.Chain((ir.Target("openai", None),))),)),
    ("help(command=set)", (ir.Query("help", "set"),)),
    ("help", (ir.Query("help", None),)),
    ("pwd", (ir.Query("pwd", None),)),
    ("hello", (ir.Query("hello", None),)),
    ("route-list", (ir.Query("route-list", None),)),
    ("route-explain", (ir.Query("route-explain", None),)),
    # a target parameter given a plain string is split at its first colon
    ('oneoff("anthropic:claude-3:beta")', (ir.OneOff(ir.Target("anthropic", "claude-3:beta")),)),
    ('model("openai:gpt-4o")', (ir.SetField("model", "openai:gpt-4o"),)),  # quoted: a model name as written
    ('model("gpt-4o")', (ir.SetField("model", "gpt-4o"),)),
    ("model(openai:gpt-4o)", (ir.SetField("backend", "openai"), ir.SetField("model", "gpt-4o"))),
    ('model("llama3:8b")', (ir.SetField("model", "llama3:8b"),)),
    ('model(name="llama3:8b")', (ir.SetField("model", "llama3:8b"),)),  # quoted by keyword too
    ("model(name=openai:gpt-4o)", (ir.SetField("backend", "openai"), ir.SetField("model", "gpt-4o"))),
    ("set(model=openai:gpt-4o, backend=echo)",
     (ir.SetField("backend", "openai"), ir.SetField("model", "gpt-4o"), ir.SetField("backend", "echo"))),
    ('set(model="gpt-4o")', (ir.SetField("model", "gpt-4o"),)),
    ("unset(project, backend)", (ir.UnsetField("project"), ir.UnsetField("backend"))),
]


@pytest.mark.parametrize(("text", "edits"), ACCEPTED, ids=[t for t, _ in ACCEPTED])
def test_accepted_commands(text: str, edits: tuple) -> None:
    assert run(text) == edits


def test_without_a_list_of_backends_any_backend_is_accepted() -> None:
    assert run("backend(mine)", None) == (ir.SetField("backend", "mine"),)
    assert run("set(backend=mine)", None) == (ir.SetField("backend", "mine"),)
    assert run("model(mine:m)", None) == (ir.SetField("backend", "mine"), ir.SetField("model", "m"))
    assert run("oneoff(mine:m)", None) == (ir.OneOff(ir.Target("mine", "m")),)


REFUSED = [
    # (command, words the error must contain)
    ("backend(colour=openai)", ["backend: unknown argument 'colour'", "expected backend(name)"]),
    ("backend(openai, name=anthropic)", ["backend: name given twice"]),
    ("temperature(0.5, value=0.7)", ["temperature: value given twice"]),
    ("temperature(value=0.5, value=0.7)", ["temperature: value given twice"]),
    ("backend(openai, anthropic)", ["backend: too many arguments"]),
    ("backend", ["backend: missing argument 'name'"]),
    ("route-append(gpt-4)", ["route-append: missing argument 'target'"]),
    ("temperature(2.1)", ["temperature: value: 2.1 is not valid"]),
    ("temperature(-0.1)", ["temperature: value: -0.1 is not valid"]),
    ("temperature(true)", ["temperature: value: True is not valid"]),
    ("temperature(value=3)", ["temperature: value: 3 is not valid"]),  # a keyword argument's value, named
    ("interactive(1)", ["interactive: enabled: 1 is not valid"]),
    # unknown backends, wherever a command names one
    ("set(backend=nope)", ["set: unknown backend 'nope'", "one of anthropic, echo, openai"]),
    ("set(backend=opnai)", ["did you mean 'openai'"]),
    ("backend(nope)", ["backend: unknown backend 'nope'"]),
    ("oneoff(nope:m)", ["oneoff: unknown backend 'nope'"]),
    ("oneoff(openai)", ["oneoff needs backend:model"]),
    ("model(llama3:8b)", ["model: unknown backend 'llama3'", 'quote it: model("llama3:8b")']),
    ("set(model=llama3:8b)", ["set: model: unknown backend 'llama3'"]),
    ('oneoff("")', ["oneoff: target: '' is not valid"]),
    ("route-append(gpt-4, nope:m)", ["unknown backend 'nope'"]),
    # set / unset
    ("set", ["set needs at least one key=value"]),
    ("set(openai)", ["set: expected key=value"]),
    ("set(colour=red)", ["set: unknown setting 'colour'"]),
    ("set(max_tokens=0)", ["set: max_tokens: 0 is not valid"]),
    ("set(top_p=1.5)", ["set: top_p: 1.5 is not valid"]),
    ("unset", ["unset needs at least one setting name"]),
    ("unset(colour)", ["unset: unknown setting colour"]),
    ("unset(project=x)", ["unset: unknown setting project"]),
    ("unset(42)", ["unset: unknown setting 42"]),
    ("frobnicate", ["unknown command 'frobnicate'"]),
]


@pytest.mark.parametrize(("text", "words"), REFUSED, ids=[t for t, _ in REFUSED])
def test_refused_commands(text: str, words: list[str]) -> None:
    message = refusal(text)
    for word in words:
        assert word in message


def located(text: str) -> RulesSemanticError:
    """The error for ``text`` written at line 3, column 5 of a message."""
    source = "first line\nsecond line\n    " + text
    with pytest.raises(RulesSemanticError) as caught:
        compile_command(parse(text, "command", line=3, column=5, source=source),
                        Context(source, known_backends=BACKENDS))
    return caught.value


LOCATED = [
    # (command, column of the error (the command starts at 5), what the error says is expected)
    ("frobnicate", 5, "one of hello, help"),
    ("set", 5, "set(key=value, ...)"),
    ("unset", 5, "unset(key, ...)"),
    ("unset(colour)", 11, "one of project, project_dir"),
    ("unset(project, colour)", 20, "one of project, project_dir"),
    ("backend(nope)", 5, "one of anthropic, echo, openai"),
    ("backend(colour=openai)", 13, "backend(name)"),
    ("backend(openai, name=anthropic)", 21, "backend(name)"),
    ("backend", 5, "backend(name)"),
    ("temperature(value=3)", 17, "a number between 0 and 2"),
    ("set(openai)", 9, "key=value"),
    ("set(top_p=1.5)", 9, "a number between 0 and 1"),
    ("set(backend=nope)", 9, "one of anthropic, echo, openai"),
    ("oneoff(nope:m)", 5, "one of anthropic, echo, openai"),
    ("oneoff(openai)", 5, "a target like anthropic:claude-3"),
    ("model(nope:m)", 5, "one of anthropic, echo, openai; for a model name with a colon, quote it"),
    ("set(model=nope:m)", 9, "quote it: set(model=\"nope:m\")"),
]


@pytest.mark.parametrize(("text", "column", "expected"), LOCATED, ids=[t for t, _, _ in LOCATED])
def test_errors_point_at_the_command_or_argument_and_say_what_is_expected(text: str, column: int, expected: str) -> None:
    error = located(text)
    assert (error.location.line, error.location.column) == (3, column)
    assert expected in (error.expected or "")


def test_the_error_points_at_the_offending_argument() -> None:
    text = "temperature(0.5, value=0.7)"
    with pytest.raises(RulesSemanticError) as caught:
        run(text)
    assert caught.value.location.column == text.index("value=") + 1


LIMITS = [
    ("rpm(60)", (ir.Limit("rpm", 60, "backend"),)),
    ("rpm(1)", (ir.Limit("rpm", 1, "backend"),)),
    ("tpm(200k, per=caller)", (ir.Limit("tpm", 200_000, "caller"),)),
    ("rpm(5, per=session), tpm(10)", (ir.Limit("rpm", 5, "session"), ir.Limit("tpm", 10, "backend"))),
]


@pytest.mark.parametrize(("text", "limits"), LIMITS, ids=[t for t, _ in LIMITS])
def test_limits(text: str, limits: tuple) -> None:
    assert compile_limits(parse(text, "calls"), Context(text)) == limits


@pytest.mark.parametrize(("text", "words"), [
    ("rpm(0)", "rpm: amount: 0 is not valid"),
    ("rpm", "rpm needs an amount"),
    ("rpm(per=key)", "rpm needs an amount"),
    ("rpm(5, 6)", "rpm: unexpected argument 6"),
    ("rpm(5, every=key)", "rpm: unexpected argument every"),
    ("rpm(5, per=planet)", "rpm: per: 'planet' is not valid"),
    ("rps(5)", "unknown limit 'rps'"),
])
def test_refused_limits(text: str, words: str) -> None:
    with pytest.raises(RulesSemanticError) as caught:
        compile_limits(parse(text, "calls"), Context(text))
    assert words in str(caught.value)


def test_post_processors_and_overrides() -> None:
    text = "loop_detection(min_repetitions=4), tool_call_repair"
    post = compile_post(parse(text, "calls"), Context(text))
    assert [(p.name, p.params) for p in post] == [("loop_detection", (("min_repetitions", 4),)), ("tool_call_repair", ())]
    for bad, words in [("tool_call_repair, tool_call_repair", "listed twice"),
                       ("loop_detection(4)", "loop_detection: unknown argument 4"),
                       ("nope", "unknown post-processor 'nope'")]:
        with pytest.raises(RulesSemanticError) as caught:
            compile_post(parse(bad, "calls"), Context(bad))
        assert words in str(caught.value)
    assert compile_overrides(parse("temperature=0.3, max_tokens=100", "arglist"), Context()) == (
        ("temperature", 0.3), ("max_tokens", 100))
    with pytest.raises(RulesSemanticError, match="set: cannot override project"):
        compile_overrides(parse("project=x", "arglist"), Context())
    with pytest.raises(RulesSemanticError, match="set: cannot override 0.3"):
        compile_overrides(parse("0.3", "arglist"), Context())


@pytest.mark.parametrize(("condition", "words"), [
    ('header("x-team") == 3', 'header("x-team") compared with 3'),
    ('header("x-team") < "a"', 'header("x-team") is a string; < does not apply'),
    ('model < "a"', "model is a string; < does not apply"),
    ('tokens ~ "1*"', "tokens is a number; pattern matching needs a string fact"),
    ('model =~ "("', "bad regular expression"),
    ('session.colour', "unknown session field 'colour'"),
    ('model.x == "a"', "model has no field 'x'"),
    ('header == "a"', "header needs an argument"),
    ('model("x") == "a"', "model takes no argument"),
    ('modle == "a"', "did you mean 'model'"),
    ('time > "25:00"', 'a time "HH:MM"'),
    ('weekday == "monday"', '"mon"'),
    ('weekday < "tue"', "weekday is a weekday; < does not apply"),
    ('stream < true', "stream is a bool; < does not apply"),
    ('stream == "yes"', "(expected true or false)"),
    ('model == 3', "(expected a quoted string)"),
    ('stream and (tools or tokens ~ "1*")', "tokens is a number; pattern matching"),
    ('not (tools and model == 3)', "model compared with 3"),
    # a fact on the right-hand side: only number facts compare with each other
    ('tokens > model', "tokens compared with model: only number facts compare with each other"),
    ('tokens > session.project', "tokens compared with session.project: only number facts"),
    ('tokens > header', "header needs an argument"),
    ('tokens > colour', "unexpected 'colour' in condition: it is not a fact"),
    # in: every listed value must suit the fact
    ('model in ["a", 3]', "model compared with 3"),
    ('weekday in ["mon", "monday"]', "weekday compared with 'monday'"),
])
def test_refused_conditions(condition: str, words: str) -> None:
    from dsl.compile import check_condition

    source = "rules:\n  - name: r\n    when: " + condition
    with pytest.raises(RulesSemanticError) as caught:
        check_condition(parse(condition, "condition", line=3, column=11, source=source), Context(source))
    assert words in str(caught.value)
    assert caught.value.location.line == 3 and caught.value.location.column >= 11  # where it is, not line 1


@pytest.mark.parametrize(("chain", "backends", "words"), [
    ("(60% up:a | 41% up:b)", ("up",), "weights add up to 101%"),
    ("(60% up:a | 39.5% up:b)", ("up",), "weights add up to 99.5%"),
    ("(50% up:a | up:b)", ("up",), "give every member of the group a weight, or none"),
    ("x:m", (), "(expected a configured backend)"),
    ("up:a -> x:m", ("up",), "(expected one of up)"),
])
def test_refused_chains(chain: str, backends: tuple[str, ...], words: str) -> None:
    from dsl.compile import check_chain

    with pytest.raises(RulesSemanticError) as caught:
        check_chain(parse(chain, "chain"), Context(chain, known_backends=backends))
    assert words in str(caught.value)


def test_accepted_chain_weights() -> None:
    from dsl.compile import check_chain

    for chain in ("(60% up:a | 40% up:b)", "(33.5% up:a | 66.5% up:b)", "(up:a | up:b)"):
        parsed = parse(chain, "chain")
        assert check_chain(parsed, Context(chain, known_backends=("up",))) is parsed


@pytest.mark.parametrize(("value", "seconds"), [
    (600, 600), (1.9, 1), ("90s", 90), ("10m", 600), ("2h", 7200), ("1.5m", 90), ("0s", 0),
    (True, None), ("10", None), ("10d", None), ("m", None), (None, None),
])
def test_durations(value: object, seconds: int | None) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(("text", "field", "value", "kind"), [
    ("set(max_tokens=100.0)", "max_tokens", 100, int),   # a whole number given as a float is an int
    ("set(max_tokens=100)", "max_tokens", 100, int),
    ("set(temperature=1)", "temperature", 1, int),       # a number stays as written
    ("set(temperature=0.5)", "temperature", 0.5, float),
    ("set(project=42)", "project", "42", str),          # a number where a string is wanted: its text
    ("set(project=demo)", "project", "demo", str),      # a bare word
    ('set(project="a b")', "project", "a b", str),
])
def test_setting_values_are_coerced_to_the_settings_type(text: str, field: str, value: object, kind: type) -> None:
    [edit] = run(text)
    assert edit == ir.SetField(field, value) and type(edit.value) is kind


@pytest.mark.parametrize(("text", "words"), [
    ("set(max_tokens=2.5)", "set: max_tokens: 2.5 is not valid"),
    ("set(project=true)", "set: project: True is not valid"),
    ("set(interactive=1)", "set: interactive: 1 is not valid"),
    ("set(max_tokens=up:a -> up:b)", "set: max_tokens: 'up:a -> up:b' is not valid"),
])
def test_setting_values_of_the_wrong_type_are_refused(text: str, words: str) -> None:
    assert words in refusal(text)


FIELD_ERRORS = [
    # (field, start symbol, text, compiler, words, column of the error (the field's text starts at 11))
    ("limits", "calls", "rps(5)", compile_limits, "unknown limit 'rps'", 11),
    ("limits", "calls", "rpm(5), rpm(0)", compile_limits, "rpm: amount: 0 is not valid (expected", 19),  # the call
    ("limits", "calls", "rpm(5, every=key)", compile_limits, "rpm: unexpected argument every", 18),
    ("limits", "calls", "rpm(5, per=planet)", compile_limits, "rpm: per: 'planet' is not valid", 18),
    ("limits", "calls", "rpm(per=key)", compile_limits, "rpm needs an amount (expected rpm(60))", 11),
    ("limits", "calls", "rpm(5), budget(20, window=week)", compile_limits, "budget: window: 'week' is not valid", 30),
    ("post", "calls", "tool_call_repair, tool_call_repair", compile_post, "listed twice", 29),
    ("post", "calls", "loop_detection(colour=1)", compile_post, "unknown argument colour", 26),
    ("post", "calls", "loop_detection(min_repetitions=0)", compile_post, "loop_detection: min_repetitions: 0", 26),
    ("set", "arglist", "temperature=0.1, project=x", compile_overrides, "set: cannot override project", 28),
    ("set", "arglist", "top_p=2", compile_overrides, "set: top_p: 2 is not valid", 11),
]


@pytest.mark.parametrize(("field", "start", "text", "compiler", "words", "column"), FIELD_ERRORS,
                         ids=[f"{f[0]}:{f[2]}" for f in FIELD_ERRORS])
def test_errors_in_rule_fields_point_at_the_call_or_argument(field: str, start: str, text: str, compiler,
                                                            words: str, column: int) -> None:
    prefix = f"    {field}: "
    source = "rules:\n  - name: r\n" + prefix.ljust(10) + text
    with pytest.raises(RulesSemanticError) as caught:
        compiler(parse(text, start, line=3, column=11, source=source), Context(source))
    assert words in str(caught.value)
    assert (caught.value.location.line, caught.value.location.column) == (3, column)


def test_compiled_calls_keep_their_position() -> None:
    text = "loop_detection(min_repetitions=4), tool_call_repair"
    post = compile_post(parse(text, "calls", line=3, column=11), Context(text))
    assert [(p.span.line, p.span.column) for p in post] == [(3, 11), (3, 46)]
    limits = compile_limits(parse("rpm(5), tpm(10)", "calls", line=2, column=3), Context())
    assert [(lim.span.line, lim.span.column) for lim in limits] == [(2, 3), (2, 11)]


@pytest.mark.parametrize(("text", "params"), [
    ("cache(ttl=1)", (("ttl", 1),)),          # the minimum, in seconds
    ('cache(ttl="1s")', (("ttl", 1),)),
    ("cache(ttl=10m)", (("ttl", 600),)),
    ('cache(ttl="1.5m")', (("ttl", 90),)),
])
def test_duration_arguments(text: str, params: tuple) -> None:
    [post] = compile_post(parse(text, "calls"), Context(text))
    assert post.params == params


@pytest.mark.parametrize(("text", "words"), [
    ("cache(ttl=0)", "cache: ttl: 0 is not valid (expected a duration in seconds, or like 90s, 10m, 2h >= 1)"),
    ('cache(ttl="0s")', "cache: ttl: '0s' is not valid"),
    ('cache(ttl="soon")', "cache: ttl: 'soon' is not valid"),
    ("cache(ttl=true)", "cache: ttl: True is not valid"),
])
def test_refused_duration_arguments(text: str, words: str) -> None:
    with pytest.raises(RulesSemanticError) as caught:
        compile_post(parse(text, "calls"), Context(text))
    assert words in str(caught.value)


@pytest.mark.parametrize(("text", "words"), [
    ("route-append(gpt-4, 5)", "route-append: target: 5 is not valid (expected a route like backend:model"),
    ('route-append(gpt-4, "openai:gpt-4o")', "route-append: target: 'openai:gpt-4o' is not valid"),
])
def test_a_route_must_be_a_chain(text: str, words: str) -> None:
    assert words in refusal(text)


def test_rules_built_in_code_are_refused_at_input_line_1() -> None:
    """Calls built without a source (no spans): the error names <input>, line 1, and quotes no text."""
    with pytest.raises(RulesSemanticError) as caught:
        compile_limits((ir.Call("rpm", ()),), Context())
    first, excerpt, *_ = str(caught.value).split("\n")
    assert first == "<input>:1:1: error: rpm needs an amount (expected rpm(60))"
    assert excerpt.strip() == ""


@pytest.mark.parametrize(("text", "edits"), [
    ('backend("openai")', (ir.SetField("backend", "openai"),)),   # a name may be quoted
    ('route-clear(model="gpt-4")', (ir.RouteEdit("clear", "gpt-4"),)),
])
def test_quoted_names(text: str, edits: tuple) -> None:
    assert run(text) == edits


def test_quoted_enum_values() -> None:
    text = 'rpm(5, per="session"), budget(2, window="month")'
    assert [(lim.per, lim.window) for lim in compile_limits(parse(text, "calls"), Context(text))] == [
        ("session", None), ("caller", "month")]
