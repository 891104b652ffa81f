"""Raw IR → checked IR: names and arguments validated against the registry.

The parser gives shapes; this module gives meaning. Every error names the command or call, the
argument and what was expected, at the argument's position.
"""

from __future__ import annotations

import re
from typing import Iterable

from . import ir
from .errors import Location, RulesSemanticError
from .registry import (
    BUDGET_DEFAULTS, BUDGET_WINDOWS, COMMANDS, ERROR_CLASSES, FACTS, LIMIT_SCOPES, LIMITS, POST_PROCESSORS,
    REQUEST_OVERRIDES, SESSION_FACT_FIELDS, SESSION_SETTINGS, STRATEGIES, WEEKDAYS, Param,
)

_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smh])$")


def parse_duration(value: object) -> int | None:
    """Seconds from ``600``, ``"90s"``, ``"10m"``, ``"2h"``; None when it is not a duration."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str) and (m := _DURATION.match(value)):
        return int(float(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[m.group(2)])
    return None


class Context:
    """Where the IR came from, to turn spans into located errors with a caret excerpt."""

    def __init__(self, source: str = "", file: str = "<input>", known_backends: Iterable[str] | None = None) -> None:
        self.source = source
        self.file = file
        self.known_backends = frozenset(known_backends) if known_backends is not None else None

    def error(self, message: str, span: ir.Span | None, expected: str | None = None) -> RulesSemanticError:
        loc = Location(span.file, span.line, span.column, self.source) if span else Location(self.file, 1, 1, self.source)
        return RulesSemanticError(message, loc, expected)


def _did_you_mean(name: str, options: Iterable[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(options), n=1)
    return f" — did you mean {close[0]!r}?" if close else ""


# ---- values ------------------------------------------------------------------------------------


def _chain_as_word(value: object) -> str | None:
    """A bare word parses as a one-target chain; give the word back."""
    if isinstance(value, ir.Chain) and len(value.links) == 1 and isinstance(value.links[0], ir.Target):
        return str(value.links[0])
    return None


def coerce(value: object, param: Param, what: str, span: ir.Span | None, ctx: Context) -> ir.Scalar | ir.Chain | ir.Target:
    """Check ``value`` against ``param``'s type; return the typed value or raise a located error."""
    def fail() -> RulesSemanticError:
        return ctx.error(f"{what}: {_show(value)} is not valid", span, param.describe())

    t = param.type
    if t == "bool":
        if isinstance(value, bool):
            return value
        raise fail()
    if t in ("int", "number"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail()
        if t == "int" and not float(value).is_integer():
            raise fail()
        if param.minimum is not None and value < param.minimum or param.maximum is not None and value > param.maximum:
            raise fail()
        return int(value) if t == "int" else value
    if t == "duration":
        seconds = parse_duration(value if not isinstance(value, ir.Chain) else _chain_as_word(value))
        if seconds is None or param.minimum is not None and seconds < param.minimum:
            raise fail()
        return seconds
    if t == "chain":
        if isinstance(value, ir.Chain):
            return value
        raise fail()
    if t == "target":
        if isinstance(value, ir.Chain) and len(value.links) == 1 and isinstance(value.links[0], ir.Target):
            return value.links[0]
        if isinstance(value, str) and value:
            backend, sep, model = value.partition(":")
            return ir.Target(backend, model, span) if sep else ir.Target(value, None, span)
        raise fail()
    if t == "enum":
        word = _chain_as_word(value) if not isinstance(value, str) else value
        if word in param.choices:
            return word
        raise fail()
    if t == "name":
        word = _chain_as_word(value) if not isinstance(value, str) else value
        if word:
            return word
        raise fail()
    if t == "string":
        if isinstance(value, str):
            return value
        word = _chain_as_word(value)
        if word is not None:
            return word
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise fail()
    return value  # "any"


def _show(value: object) -> str:
    if isinstance(value, ir.Chain):
        from .printer import print_chain

        return repr(print_chain(value))
    return repr(value)


# ---- chains ------------------------------------------------------------------------------------


def check_chain(chain: ir.Chain, ctx: Context) -> ir.Chain:
    """Unknown backends and malformed weights are errors; the chain comes back unchanged."""
    for link in chain.links:
        if isinstance(link, ir.Group) and link.strategy is not None:
            _check_strategy(link, ctx)
        elif isinstance(link, ir.Group):
            weights = [m.weight for m in link.members]
            if any(w is not None for w in weights):
                if any(w is None for w in weights):
                    raise ctx.error("weights: give every member of the group a weight, or none", link.span)
                if abs(sum(weights) - 100.0) > 1e-6:  # type: ignore[arg-type]
                    raise ctx.error(f"weights add up to {sum(weights):g}%", link.span, "weights that add up to 100%")  # type: ignore[arg-type]
        for target in (link.targets() if isinstance(link, ir.Group) else (link,)):
            known = ctx.known_backends
            if known is not None and target.backend not in known:
                raise ctx.error(
                    f"unknown backend {target.backend!r}{_did_you_mean(target.backend, known)}",
                    target.span, "one of " + ", ".join(sorted(known)) if known else "a configured backend",
                )
    return chain


def _check_strategy(group: ir.Group, ctx: Context) -> None:
    name = group.strategy or ""
    if name not in STRATEGIES:
        raise ctx.error(f"unknown group strategy {name!r}{_did_you_mean(name, STRATEGIES)}", group.span,
                        "one of " + ", ".join(f"{s}(a | b)" for s in STRATEGIES) + ", or (a | b) for an equal share")
    if any(m.weight is not None for m in group.members):
        raise ctx.error(f"{name}(...) picks by what it observes; weights do not apply", group.span,
                        f"{name}(a:m | b:m) or (70% a:m | 30% b:m)")
    if len(group.members) < 2:
        raise ctx.error(f"{name}(...) needs at least two members to choose from", group.span,
                        f"{name}(a:m | b:m)")


# ---- conditions --------------------------------------------------------------------------------


def check_condition(cond: ir.Condition, ctx: Context) -> ir.Condition:
    """Facts exist, comparisons make sense for the fact's type, patterns compile."""
    if isinstance(cond, (ir.And, ir.Or)):
        for item in cond.items:
            check_condition(item, ctx)
    elif isinstance(cond, ir.Not):
        check_condition(cond.item, ctx)
    elif isinstance(cond, ir.Const):
        pass
    else:
        ftype = _fact_type(cond.fact, ctx)
        if isinstance(cond, ir.Truthy):
            pass
        elif isinstance(cond, (ir.Glob, ir.Regex)):
            if ftype != "string":
                raise ctx.error(f"{_fact_name(cond.fact)} is a {ftype}; pattern matching needs a string fact", cond.span)
            if isinstance(cond, ir.Regex):
                try:
                    re.compile(cond.pattern)
                except re.error as exc:
                    raise ctx.error(f"bad regular expression {cond.pattern!r}: {exc}", cond.span) from None
        elif isinstance(cond, ir.Compare) and isinstance(cond.value, ir.FactValue):
            other = cond.value.fact
            if other.name.partition(".")[0] not in FACTS:  # most often a string written without quotes
                raise ctx.error(f"unexpected {other.name!r} in condition: it is not a fact", other.span,
                                f'a quoted string like "{other.name}", a number, or a number fact')
            other_type = _fact_type(other, ctx)
            if ftype != "number" or other_type != "number":
                raise ctx.error(f"{_fact_name(cond.fact)} compared with {_fact_name(other)}: only number facts "
                                f"compare with each other", cond.span, "facts like tokens and context_window")
        elif isinstance(cond, ir.Compare):
            _check_value(cond.fact, ftype, cond.value, cond.span, ctx)
            if ftype in ("string", "bool", "weekday") and cond.op not in ("==", "!="):
                raise ctx.error(f"{_fact_name(cond.fact)} is a {ftype}; {cond.op} does not apply", cond.span, "== or !=")
        elif isinstance(cond, ir.In):
            for value in cond.values:
                _check_value(cond.fact, ftype, value, cond.span, ctx)
    return cond


def _fact_name(fact: ir.Fact) -> str:
    return f'{fact.name}("{fact.arg}")' if fact.arg is not None else fact.name


def _fact_type(fact: ir.Fact, ctx: Context) -> str:
    base, _, sub = fact.name.partition(".")
    spec = FACTS.get(base)
    if spec is None:
        raise ctx.error(f"unknown fact {fact.name!r}{_did_you_mean(fact.name, FACTS)}", fact.span,
                        "one of " + ", ".join(sorted(FACTS)))
    if spec.takes_arg and fact.arg is None:
        raise ctx.error(f"{base} needs an argument", fact.span, f'{base}("name")')
    if not spec.takes_arg and fact.arg is not None:
        raise ctx.error(f"{base} takes no argument", fact.span)
    if base == "session":
        if sub not in SESSION_FACT_FIELDS:
            raise ctx.error(f"unknown session field {sub!r}", fact.span,
                            "one of " + ", ".join(f"session.{f}" for f in SESSION_FACT_FIELDS))
    elif sub:
        raise ctx.error(f"{base} has no field {sub!r}", fact.span)
    return spec.type


def _check_value(fact: ir.Fact, ftype: str, value: ir.Scalar, span: ir.Span | None, ctx: Context) -> None:
    ok = {
        "string": isinstance(value, str),
        "number": isinstance(value, (int, float)) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "time": isinstance(value, str) and bool(_TIME.match(value)),
        "weekday": isinstance(value, str) and value in WEEKDAYS,
    }[ftype]
    if not ok:
        expected = {"string": "a quoted string", "number": "a number", "bool": "true or false",
                    "time": 'a time "HH:MM"', "weekday": "one of " + ", ".join(f'"{d}"' for d in WEEKDAYS)}[ftype]
        raise ctx.error(f"{_fact_name(fact)} compared with {value!r}", span, expected)


# ---- calls: limits, post-processors, overrides -------------------------------------------------


def compile_limits(calls: Iterable[ir.Call], ctx: Context) -> tuple[ir.Limit, ...]:
    out = []
    for call in calls:
        if call.name not in LIMITS:
            raise ctx.error(f"unknown limit {call.name!r}{_did_you_mean(call.name, LIMITS)}", call.span,
                            "one of " + ", ".join(LIMITS))
        budget = call.name == "budget"
        amount: int | float | None = None
        per = BUDGET_DEFAULTS["per"] if budget else "backend"
        window: str | None = BUDGET_DEFAULTS["window"] if budget else None
        signature = (f"{call.name}(amount, per=backend|key|session|caller, window=hour|day|month)" if budget
                     else f"{call.name}(amount, per=backend|key|session|caller)")
        amount_param = Param("amount", "number", minimum=0) if budget else Param("amount", "int", minimum=1)
        for arg in call.args:
            if arg.name is None and amount is None:
                amount = coerce(arg.value, amount_param, f"{call.name}: amount", arg.span or call.span, ctx)  # type: ignore[assignment]
            elif arg.name == "per":
                per = coerce(arg.value, Param("per", "enum", choices=LIMIT_SCOPES), f"{call.name}: per", arg.span, ctx)  # type: ignore[assignment]
            elif arg.name == "window" and budget:
                window = coerce(arg.value, Param("window", "enum", choices=BUDGET_WINDOWS), f"{call.name}: window",
                                arg.span, ctx)  # type: ignore[assignment]
            else:
                raise ctx.error(f"{call.name}: unexpected argument {arg.name or _show(arg.value)}", arg.span or call.span,
                                signature)
        if amount is None:
            raise ctx.error(f"{call.name} needs an amount", call.span, f"{call.name}(20)" if budget else f"{call.name}(60)")
        out.append(ir.Limit(call.name, amount, per, call.span, window))  # type: ignore[arg-type]
    return tuple(out)


def compile_on(entries: Iterable[tuple[str, ir.Chain, ir.Span | None]], ctx: Context) -> tuple[tuple[str, ir.Chain], ...]:
    """A rule's ``on:`` map: known error classes, each to a checked chain, in the order written."""
    out: list[tuple[str, ir.Chain]] = []
    for error_class, chain, span in entries:
        if error_class not in ERROR_CLASSES:
            raise ctx.error(f"on: unknown error class {error_class!r}{_did_you_mean(str(error_class), ERROR_CLASSES)}",
                            span, "one of " + ", ".join(ERROR_CLASSES))
        out.append((error_class, check_chain(chain, ctx)))
    return tuple(out)


def compile_post(calls: Iterable[ir.Call], ctx: Context) -> tuple[ir.PostProcessor, ...]:
    out = []
    seen: set[str] = set()
    for call in calls:
        spec = POST_PROCESSORS.get(call.name)
        if spec is None:
            raise ctx.error(f"unknown post-processor {call.name!r}{_did_you_mean(call.name, POST_PROCESSORS)}",
                            call.span, "one of " + ", ".join(POST_PROCESSORS))
        if call.name in seen:
            raise ctx.error(f"post-processor {call.name!r} listed twice", call.span)
        seen.add(call.name)
        params = []
        for arg in call.args:
            param = spec.param(arg.name) if arg.name else None
            if param is None:
                raise ctx.error(f"{call.name}: unknown argument {arg.name or _show(arg.value)}", arg.span or call.span,
                                "one of " + ", ".join(f"{p.name}=" for p in spec.params))
            params.append((param.name, coerce(arg.value, param, f"{call.name}: {param.name}", arg.span, ctx)))
        out.append(ir.PostProcessor(call.name, tuple(params), call.span))  # type: ignore[arg-type]
    return tuple(out)


def compile_overrides(args: Iterable[ir.Arg], ctx: Context) -> tuple[tuple[str, ir.Scalar], ...]:
    out: dict[str, ir.Scalar] = {}
    for arg in args:
        param = REQUEST_OVERRIDES.get(arg.name or "")
        if param is None:
            raise ctx.error(f"set: cannot override {arg.name or _show(arg.value)!s}", arg.span,
                            "one of " + ", ".join(f"{k}=" for k in REQUEST_OVERRIDES))
        out[param.name] = coerce(arg.value, param, f"set: {param.name}", arg.span, ctx)  # type: ignore[assignment]
    return tuple(out.items())


# ---- commands ----------------------------------------------------------------------------------


def compile_command(call: ir.Call, ctx: Context) -> tuple[ir.SessionEdit, ...]:
    """A parsed ``!/command`` → the session edits it stands for."""
    spec = COMMANDS.get(call.name)
    if spec is None:
        raise ctx.error(f"unknown command {call.name!r}{_did_you_mean(call.name, COMMANDS)}", call.span,
                        "one of " + ", ".join(COMMANDS))
    name = call.name
    if spec.keyword_args:  # set(k=v, ...)
        if not call.args:
            raise ctx.error(f"{name} needs at least one key=value", call.span, spec.signature())
        return tuple(edit for arg in call.args for edit in _setting(arg, ctx, name))
    if spec.variadic:  # unset(k, ...)
        if not call.args:
            raise ctx.error(f"{name} needs at least one setting name", call.span, spec.signature())
        edits = []
        for arg in call.args:
            key = _chain_as_word(arg.value) if arg.name is None else None
            if key not in SESSION_SETTINGS:
                raise ctx.error(f"{name}: unknown setting {key or arg.name or _show(arg.value)}", arg.span or call.span,
                                "one of " + ", ".join(SESSION_SETTINGS))
            edits.append(ir.UnsetField(key))
        return tuple(edits)
    values = _bind(call, spec.params, ctx)
    if name in ("hello", "help", "pwd", "route-list", "route-explain"):
        command = values.get("command")  # help(command): the one query that takes an argument
        return (ir.Query(name, str(command) if command else None),)
    if name == "backend":
        _check_backend(values["name"], call, ctx)  # type: ignore[arg-type]
        return (ir.SetField("backend", values["name"]),)  # type: ignore[arg-type]
    if name == "model":
        raw = next((a.value for a in call.args if a.name is None or a.name == "name"), None)
        target = values["name"]
        return _model_edits(target, isinstance(raw, str), "model", call.span, ctx,  # type: ignore[arg-type]
                            f'model("{target}")')
    if name == "oneoff":
        target = values["target"]  # type: ignore[assignment]
        if target.model is None:
            raise ctx.error("oneoff needs backend:model", call.span, "a target like anthropic:claude-3")
        _check_backend(target.backend, call, ctx)
        return (ir.OneOff(ir.Target(target.backend, target.model)),)
    if name == "interactive":
        return (ir.SetField("interactive", values.get("enabled", True)),)  # type: ignore[arg-type]
    if name == "temperature":
        return (ir.SetField("temperature", values["value"]),)  # type: ignore[arg-type]
    if name == "route-clear":
        return (ir.RouteEdit("clear", values["model"]),)  # type: ignore[arg-type]
    chain: ir.Chain = values["target"]  # type: ignore[assignment]
    check_chain(chain, ctx)
    return (ir.RouteEdit("append" if name == "route-append" else "prepend", values["model"], _strip(chain)),)  # type: ignore[arg-type]


def _strip(chain: ir.Chain) -> ir.Chain:
    return ir.Chain(chain.links)


def _model_edits(target: ir.Target, quoted: bool, what: str, span: ir.Span | None, ctx: Context,
                 quoted_form: str) -> tuple[ir.SessionEdit, ...]:
    """``model(backend:model)`` (and ``set(model=backend:model)``) sets both, like a target
    anywhere in the language (``oneoff``, routes): the backend must be configured, or it is an
    error naming it, as for ``oneoff``. A quoted name is a model name as written, colons and all
    (``model("llama3:8b")``); ``quoted_form`` is that spelling, for the error's hint."""
    if quoted or target.model is None:
        return (ir.SetField("model", target.backend if target.model is None else f"{target.backend}:{target.model}"),)
    known = ctx.known_backends
    if known is not None and target.backend not in known:
        raise ctx.error(f"{what}: unknown backend {target.backend!r}{_did_you_mean(target.backend, known)}",
                        span, "one of " + ", ".join(sorted(known))
                        + f"; for a model name with a colon, quote it: {quoted_form}")
    return (ir.SetField("backend", target.backend), ir.SetField("model", target.model))


def _check_backend(name: str, call: ir.Call, ctx: Context) -> None:
    known = ctx.known_backends
    if known is not None and name not in known:
        raise ctx.error(f"{call.name}: unknown backend {name!r}{_did_you_mean(name, known)}", call.span,
                        "one of " + ", ".join(sorted(known)))


def _bind(call: ir.Call, params: tuple[Param, ...], ctx: Context) -> dict[str, object]:
    """Match positional/keyword arguments to parameters, coercing each."""
    spec = COMMANDS[call.name]
    bound: dict[str, object] = {}
    positional = [a for a in call.args if a.name is None]
    if len(positional) > len(params):
        extra = positional[len(params)]
        raise ctx.error(f"{call.name}: too many arguments", extra.span or call.span, spec.signature())
    for param, arg in zip(params, positional):
        bound[param.name] = coerce(arg.value, param, f"{call.name}: {param.name}", arg.span or call.span, ctx)
    for arg in call.args:
        if arg.name is None:
            continue
        param = next((p for p in params if p.name == arg.name), None)
        if param is None:
            raise ctx.error(f"{call.name}: unknown argument {arg.name!r}", arg.span, spec.signature())
        if param.name in bound:
            raise ctx.error(f"{call.name}: {param.name} given twice", arg.span, spec.signature())
        bound[param.name] = coerce(arg.value, param, f"{call.name}: {param.name}", arg.span, ctx)
    for param in params:
        if param.required and param.name not in bound:
            raise ctx.error(f"{call.name}: missing argument {param.name!r} ({param.describe()})", call.span, spec.signature())
    return bound


def _setting(arg: ir.Arg, ctx: Context, command: str) -> tuple[ir.SessionEdit, ...]:
    if arg.name is None:
        raise ctx.error(f"{command}: expected key=value, got {_show(arg.value)}", arg.span, "key=value")
    param = SESSION_SETTINGS.get(arg.name)
    if param is None:
        raise ctx.error(f"{command}: unknown setting {arg.name!r}{_did_you_mean(arg.name, SESSION_SETTINGS)}", arg.span,
                        "one of " + ", ".join(SESSION_SETTINGS))
    value = coerce(arg.value, param, f"{command}: {arg.name}", arg.span, ctx)
    if isinstance(value, ir.Target):
        if param.name == "model":  # set(model=backend:model) means what model(backend:model) means
            return _model_edits(value, isinstance(arg.value, str), f"{command}: model", arg.span, ctx,
                                f'{command}(model="{value}")')
        value = str(value)
    if param.name == "backend":
        known = ctx.known_backends
        if known is not None and value not in known:
            raise ctx.error(f"{command}: unknown backend {value!r}{_did_you_mean(str(value), known)}", arg.span,
                            "one of " + ", ".join(sorted(known)))
    return (ir.SetField(param.name, value),)  # type: ignore[arg-type]
