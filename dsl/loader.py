"""routes.d/*.yaml → checked :class:`ir.Rule` objects, with every problem reported at once.

Files load in lexical order; within the result, rules are ordered by ``priority`` (higher first),
then file order, then position in the file. Problems that make a rule meaningless (syntax, unknown
names, duplicate rule names) are errors; rules that can never take effect (shadowed by an earlier
catch-all) are warnings, so ``check`` shows them without blocking a reload.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from . import ir
from .compile import Context, check_chain, check_condition, compile_limits, compile_on, compile_overrides, compile_post
from .errors import Location, RulesError, RulesErrors, RulesSemanticError
from .parser import parse
from .source import YamlDocument, parse_yaml, schema_errors


@dataclass(slots=True)
class Diagnostic:
    """A warning: same rendering as an error, but does not fail the load."""

    message: str
    location: Location

    def render(self) -> str:
        return f"{self.location.file}:{self.location.line}:{self.location.column}: warning: {self.message}"


@dataclass(slots=True)
class LoadedRules:
    rules: list[ir.Rule] = field(default_factory=list)  # evaluation order
    errors: list[RulesError] = field(default_factory=list)
    warnings: list[Diagnostic] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def raise_for_errors(self) -> None:
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise RulesErrors(self.errors)


def _parse_field(doc: YamlDocument, path: tuple[Any, ...], start: str) -> Any:
    loc, exact = doc.string_origin(path)
    value = doc.value
    for key in path:
        value = value[key]
    return parse(str(value), start, file=doc.file, line=loc.line, column=loc.column, exact=exact, source=doc.text)  # type: ignore[arg-type]


def _parse_calls(doc: YamlDocument, path: tuple[Any, ...], raw: Any) -> tuple[ir.Call, ...]:
    if isinstance(raw, list):
        calls: list[ir.Call] = []
        for i in range(len(raw)):
            calls.extend(_parse_field(doc, path + (i,), "calls"))
        return tuple(calls)
    return _parse_field(doc, path, "calls")


def rules_from_document(doc: YamlDocument, known_backends: Iterable[str] | None, errors: list[RulesError],
                        skip: Mapping[int, frozenset[Any]] | None = None) -> list[ir.Rule]:
    """Compile the rules of one validated file; each rule's errors are collected, not raised.
    ``skip``: for each rule that failed the schema, the fields the schema refused. Such a rule is
    not kept, but its other fields are still compiled for their errors; and every field of a rule
    is compiled even when an earlier one failed, so ``check`` shows all of a rule's errors at once."""
    ctx = Context(doc.text, doc.file, known_backends)
    skip = skip or {}
    rules: list[ir.Rule] = []
    for i, raw in enumerate((doc.value or {}).get("rules") or []):
        base = ("rules", i)
        refused = skip.get(i, frozenset())
        failed = i in skip

        def compiled(name: str, build: Callable[[], Any], default: Any) -> Any:
            nonlocal failed
            if name not in raw or name in refused:
                return default
            try:
                return build()
            except RulesError as exc:
                errors.append(exc)
                failed = True
                return default

        when = raw.get("when")
        condition = ir.Const(when) if isinstance(when, bool) else compiled(
            "when", lambda: check_condition(_parse_field(doc, base + ("when",), "condition"), ctx), None)
        route = compiled("route", lambda: check_chain(_parse_field(doc, base + ("route",), "chain"), ctx), None)
        limits = compiled("limits", lambda: compile_limits(_parse_calls(doc, base + ("limits",), raw["limits"]), ctx), ())
        post = compiled("post", lambda: compile_post(_parse_calls(doc, base + ("post",), raw["post"]), ctx), ())
        overrides = compiled("set", lambda: compile_overrides(_parse_field(doc, base + ("set",), "arglist"), ctx), ())
        on = compiled("on", lambda: compile_on(_on_entries(doc, base, raw["on"]), ctx), ())
        if failed:
            continue
        name_loc = doc.location(base + ("name",))
        rules.append(ir.Rule(
            name=raw["name"], when=condition, route=route, limits=limits, post=post, overrides=overrides,
            priority=int(raw.get("priority", 0)), description=raw.get("description", ""),
            span=ir.Span(doc.file, name_loc.line, name_loc.column), on=on,
        ))
    return rules


def _on_entries(doc: YamlDocument, base: tuple[Any, ...], raw: dict[str, Any]) -> list[tuple[str, ir.Chain, ir.Span]]:
    """``on: {class: chain}`` parsed, each with the position of its key for errors."""
    entries = []
    for error_class in raw:
        line, column = doc.key_marks.get(base + ("on", error_class), (1, 1))
        chain = _parse_field(doc, base + ("on", error_class), "chain")
        entries.append((str(error_class), chain, ir.Span(doc.file, line, column)))
    return entries


def load_rules_text(text: str, file: str = "<rules>", known_backends: Iterable[str] | None = None) -> LoadedRules:
    """Compile one rule file given as text (tests, ``check`` on a single file)."""
    return load_rules_sources([(file, text)], known_backends)


def load_rules_dir(path: str, known_backends: Iterable[str] | None = None) -> LoadedRules:
    """Compile every ``*.yaml``/``*.yml`` file of ``path`` in lexical order. A missing dir is empty."""
    if not os.path.isdir(path):
        return LoadedRules()
    names = sorted(n for n in os.listdir(path) if n.endswith((".yaml", ".yml")) and not n.startswith("."))
    sources = []
    for name in names:
        file = os.path.join(path, name)
        with open(file, encoding="utf-8") as fh:
            sources.append((file, fh.read()))
    return load_rules_sources(sources, known_backends)


def load_rules_sources(sources: list[tuple[str, str]], known_backends: Iterable[str] | None = None) -> LoadedRules:
    result = LoadedRules(files=[f for f, _ in sources])
    known = list(known_backends) if known_backends is not None else None
    ordered: list[ir.Rule] = []
    names: list[tuple[str, ir.Span]] = []  # every rule's name, also of rules with errors
    texts: dict[str, str] = {}
    for file, text in sources:
        texts[file] = text
        try:
            doc = parse_yaml(text, file)
        except RulesErrors as exc:
            result.errors.extend(exc.errors)
            continue
        except RulesError as exc:
            result.errors.append(exc)
            continue
        problems = schema_errors(doc, "rules")
        result.errors.extend(error for _path, error in problems)
        # A rule that breaks the schema is not kept, but its fields the schema accepted are still
        # compiled (as are the other rules): schema and compile errors come out in one run. When the file's shape itself is wrong, nothing is compiled.
        if any(len(path) < 2 or path[0] != "rules" or not isinstance(path[1], int) for path, _ in problems):
            continue
        names.extend(_rule_names(doc))
        refused: dict[int, frozenset[Any]] = {}
        for path, _ in problems:
            refused[path[1]] = refused.get(path[1], frozenset()) | frozenset(path[2:3])
        ordered.extend(rules_from_document(doc, known, result.errors, refused))
    _check_duplicates(names, texts, result)
    # Stable sort: priority first, then load order (lexical file order, position in file).
    result.rules = sorted(ordered, key=lambda r: -r.priority)
    result.warnings.extend(find_unreachable(result.rules, texts))
    return result


def _location(span: ir.Span | None, texts: dict[str, str]) -> Location:
    if span is None:
        return Location()
    return Location(span.file, span.line, span.column, texts.get(span.file, ""))


def _rule_names(doc: YamlDocument) -> list[tuple[str, ir.Span]]:
    """(name, where) of every rule of a file that has a name, whatever else is wrong with it."""
    out = []
    for i, raw in enumerate((doc.value or {}).get("rules") or []):
        if isinstance(raw, dict) and isinstance(raw.get("name"), str):
            loc = doc.location(("rules", i, "name"))
            out.append((raw["name"], ir.Span(doc.file, loc.line, loc.column)))
    return out


def _check_duplicates(names: list[tuple[str, ir.Span]], texts: dict[str, str], result: LoadedRules) -> None:
    first: dict[str, ir.Span] = {}
    for name, span in names:
        if name in first:
            prev = first[name]
            result.errors.append(RulesSemanticError(f"duplicate rule name {name!r} (first defined at {prev.file}:{prev.line})",
                                                    _location(span, texts)))
        else:
            first[name] = span


def _is_catch_all(cond: ir.Condition | None) -> bool:
    return cond is None or (isinstance(cond, ir.Const) and cond.value)


def find_unreachable(rules: list[ir.Rule], texts: dict[str, str] | None = None) -> list[Diagnostic]:
    """Rules all of whose actions an earlier catch-all already decides.

    Limits always add up, so a rule with limits is never unreachable. A rule with
    ``when: false`` is reported too: it can never match.
    """
    texts = texts or {}
    out: list[Diagnostic] = []
    route_by: str | None = None
    post_by: dict[str, str] = {}
    set_by: dict[str, str] = {}
    on_by: dict[str, str] = {}
    for rule in rules:
        if isinstance(rule.when, ir.Const) and not rule.when.value:
            out.append(Diagnostic(f"rule {rule.name!r} can never match (when: false)", _location(rule.span, texts)))
            continue
        shadowers: set[str] = set()
        shadowed = not rule.limits
        if rule.route is not None:
            shadowed = shadowed and route_by is not None
            if route_by:
                shadowers.add(route_by)
        for p in rule.post:
            shadowed = shadowed and p.name in post_by
            shadowers.add(post_by.get(p.name, ""))
        for key, _ in rule.overrides:
            shadowed = shadowed and key in set_by
            shadowers.add(set_by.get(key, ""))
        for error_class, _ in rule.on:
            shadowed = shadowed and error_class in on_by
            shadowers.add(on_by.get(error_class, ""))
        if shadowed and shadowers - {""}:
            names = ", ".join(sorted(shadowers - {""}))
            out.append(Diagnostic(f"rule {rule.name!r} is unreachable: the catch-all rule {names} comes first "
                                  f"(raise this rule's priority or give the catch-all a condition)",
                                  _location(rule.span, texts)))
        if _is_catch_all(rule.when):
            if rule.route is not None and route_by is None:
                route_by = repr(rule.name)
            for p in rule.post:
                post_by.setdefault(p.name, repr(rule.name))
            for key, _ in rule.overrides:
                set_by.setdefault(key, repr(rule.name))
            for error_class, _ in rule.on:
                on_by.setdefault(error_class, repr(rule.name))
    return out
