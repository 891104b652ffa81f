"""Text → raw IR with one Lark LALR parser; Lark errors → located :class:`RulesSyntaxError`.

The parser only knows shapes (calls, chains, conditions). What names and arguments mean is
checked afterwards against the registry (``dsl/compile.py``), so there is one place that knows the
vocabulary and both commands and rule files get the same messages.
"""

from __future__ import annotations

import ast
from contextvars import ContextVar
from functools import cache
from importlib import resources
from typing import Any, Literal

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from . import ir
from .errors import Location, RulesError, RulesSyntaxError

StartSymbol = Literal["command", "calls", "arglist", "chain", "condition"]

_NUMBER_SUFFIX = {"k": 1_000, "M": 1_000_000}

# Terminal names → words a person understands, for "expected ..." hints.
_FRIENDLY = {
    "WORD": "a name",
    "TARGET": "a target backend:model",
    "STRING": "a quoted string",
    "NUMBER": "a number",
    "PERCENT": "a weight like 70%",
    "TRUE": "true",
    "FALSE": "false",
    "OP": "a comparison (==, !=, <, <=, >, >=)",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "COMMA": "','",
    "COLON": "':'",
    "EQUAL": "'='",
    "VBAR": "'|'",
    "ARROW": "'->'",
    "STAR": "'*'",
    "MATCH": "'=~'",
    "TILDE": "'~'",
    "AND": "and",
    "OR": "or",
    "NOT": "not",
    "IN": "in",
    "$END": "end of input",
}


def parse_number(text: str) -> int | float:
    """``200k`` → 200000, ``1.5M`` → 1500000, ``0.7`` → 0.7."""
    scale = _NUMBER_SUFFIX.get(text[-1], 1)
    digits = text[:-1] if scale != 1 else text
    value = float(digits) * scale if "." in digits else int(digits) * scale
    if isinstance(value, float) and value.is_integer() and scale != 1:
        return int(value)
    return value


def unquote(token: str) -> str:
    """Decode a quoted string: backslash escapes as in Python (``\\"``, ``\\n``, ``\\u00e9``)."""
    body = token[1:-1]
    if "\\" not in body:
        return body
    quote = token[0]
    try:
        return ast.literal_eval(quote + body + quote)
    except (SyntaxError, ValueError) as exc:
        raise ValueError(f"bad escape in string {token}: {exc}") from None


class _Spans:
    """Turns a Lark position into a :class:`ir.Span` in the caller's coordinates."""

    def __init__(self, file: str, line: int, column: int, exact: bool) -> None:
        self.file, self.line, self.column, self.exact = file, line, column, exact

    def at(self, line: int, column: int) -> ir.Span:
        if not self.exact:
            return ir.Span(self.file, self.line, self.column)
        if line == 1:
            return ir.Span(self.file, self.line, self.column + column - 1)
        return ir.Span(self.file, self.line + line - 1, column)


_SPANS: ContextVar[_Spans] = ContextVar("dsl_parse_spans")
"""The running parse's coordinates. The Lark parser and its transformer are built once and shared;
a context variable keeps parses re-entrant: a reload parses rule files in a worker thread while
commands are parsed on the event loop (and large messages in other threads)."""


@v_args(inline=True)
class _ToIR(Transformer):
    """Builds raw IR nodes; positions come from the running parse's :data:`_SPANS`."""

    def _at(self, token: Any) -> ir.Span | None:
        line = getattr(token, "line", None)
        return _SPANS.get().at(line, token.column) if line is not None else None

    # values
    def string(self, tok: Token) -> str:
        return unquote(tok)

    def number(self, tok: Token) -> int | float:
        return parse_number(str(tok))

    def true(self, _tok: Token) -> bool:
        return True

    def false(self, _tok: Token) -> bool:
        return False

    # calls
    def kwarg(self, name: Token, value: Any) -> ir.Arg:
        return ir.Arg(str(name), value, self._at(name))

    def posarg(self, value: Any) -> ir.Arg:
        return ir.Arg(None, value, getattr(value, "span", None))

    def arglist(self, *args: ir.Arg) -> tuple[ir.Arg, ...]:
        return tuple(args)

    def command(self, name: Token, args: tuple[ir.Arg, ...] | None = None) -> ir.Call:
        return ir.Call(str(name), args or (), self._at(name))

    def calls(self, *calls: ir.Call) -> tuple[ir.Call, ...]:
        return calls

    # chains
    def model(self, *segments: Token) -> str:
        return ":".join(str(s) for s in segments)

    def quoted_model(self, tok: Token) -> str:
        return unquote(tok)

    def target_token(self, tok: Token) -> ir.Target:
        backend, _, model = str(tok).partition(":")
        return ir.Target(backend, model, self._at(tok))

    def target(self, backend: Token, model: str | None = None) -> ir.Target:
        return ir.Target(str(backend), model, self._at(backend))

    def member(self, weight: Token | None, target: ir.Target) -> ir.Member:
        return ir.Member(target, float(str(weight)[:-1]) if weight is not None else None)

    def group(self, *members: ir.Member) -> ir.Group:
        return ir.Group(tuple(members), members[0].target.span)

    def strategy_group(self, name: Token, *members: ir.Member) -> ir.Group:
        return ir.Group(tuple(members), self._at(name), str(name))

    def chain(self, *links: Any) -> ir.Chain:
        links = tuple(link for link in links if not isinstance(link, Token))
        return ir.Chain(links, links[0].span)

    # conditions
    def fact(self, name: Token, arg: Token | None = None) -> ir.Fact:
        return ir.Fact(str(name), unquote(arg) if arg is not None else None, self._at(name))

    def compare(self, fact: ir.Fact, op: Token, value: ir.Scalar) -> ir.Compare:
        return ir.Compare(fact, str(op), value, fact.span)  # type: ignore[arg-type]

    def compare_fact(self, fact: ir.Fact, op: Token, other: ir.Fact, factor: Token | None) -> ir.Compare:
        scale = parse_number(str(factor)) if factor is not None else 1
        return ir.Compare(fact, str(op), ir.FactValue(other, scale), fact.span)  # type: ignore[arg-type]

    def list(self, *values: ir.Scalar) -> tuple[ir.Scalar, ...]:
        return tuple(v for v in values if v is not None)

    def in_(self, fact: ir.Fact, values: tuple[ir.Scalar, ...]) -> ir.In:
        return ir.In(fact, values, False, fact.span)

    def not_in(self, fact: ir.Fact, values: tuple[ir.Scalar, ...]) -> ir.In:
        return ir.In(fact, values, True, fact.span)

    def glob(self, fact: ir.Fact, pattern: Token) -> ir.Glob:
        return ir.Glob(fact, unquote(pattern), fact.span)

    def regex(self, fact: ir.Fact, _op: Token, pattern: Token) -> ir.Regex:
        return ir.Regex(fact, unquote(pattern), fact.span)

    def const_true(self, tok: Token) -> ir.Const:
        return ir.Const(True, self._at(tok))

    def const_false(self, tok: Token) -> ir.Const:
        return ir.Const(False, self._at(tok))

    def truthy(self, fact: ir.Fact) -> ir.Truthy:
        return ir.Truthy(fact, fact.span)

    def and_(self, left: ir.Condition, right: ir.Condition) -> ir.And:
        items = (left.items if isinstance(left, ir.And) else (left,)) + (right,)
        return ir.And(items, getattr(left, "span", None))

    def or_(self, left: ir.Condition, right: ir.Condition) -> ir.Or:
        items = (left.items if isinstance(left, ir.Or) else (left,)) + (right,)
        return ir.Or(items, getattr(left, "span", None))

    def not_(self, item: ir.Condition) -> ir.Not:
        return ir.Not(item, getattr(item, "span", None))


@cache
def _parser() -> Lark:
    grammar = resources.files("dsl").joinpath("grammar.lark").read_text("utf-8")
    transformer = _ToIR()
    return Lark(
        grammar,
        parser="lalr",
        lexer="contextual",
        start=["command", "calls", "arglist", "chain", "condition"],
        transformer=transformer,
        maybe_placeholders=True,
        cache=False,
    )


def _expected(names: set[str] | frozenset[str]) -> str:
    words = sorted({_FRIENDLY.get(n, n.strip('"').lower()) for n in names})
    if len(words) > 6:
        words = words[:6] + ["..."]
    return ", ".join(words) if words else ""


def _syntax_error(exc: UnexpectedInput, text: str, file: str, spans: _Spans, what: str) -> RulesSyntaxError:
    line, column = getattr(exc, "line", 1), getattr(exc, "column", 1)
    at_end = isinstance(exc, UnexpectedEOF) or (isinstance(exc, UnexpectedToken) and exc.token.type == "$END")
    if at_end or line in (None, -1) or column in (None, -1):
        lines = text.splitlines() or [""]
        line, column = len(lines), len(lines[-1]) + 1
    span = spans.at(line, column)
    full_text = text if spans.exact and spans.line == 1 and spans.column == 1 else ""
    location = Location(span.file, span.line, span.column, full_text or _pad(text, spans, span))
    if isinstance(exc, UnexpectedCharacters):
        char = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else ""
        if char in "\"'":
            return RulesSyntaxError(f"unterminated string in {what}", location, f"a closing {char}")
        if char == "=" and what == "condition":
            return RulesSyntaxError(f"unexpected '=' in {what}", location, "'==' to compare")
        return RulesSyntaxError(f"unexpected character {char!r} in {what}", location, _expected(exc.allowed or set()))
    if isinstance(exc, UnexpectedToken):
        token = exc.token
        if token.type == "EQUAL" and what == "condition":
            return RulesSyntaxError(f"unexpected '=' in {what}", location, "'==' to compare")
        shown = "end of input" if token.type == "$END" else repr(str(token))
        return RulesSyntaxError(f"unexpected {shown} in {what}", location, _expected(exc.expected))
    return RulesSyntaxError(f"incomplete {what}", location, _expected(getattr(exc, "expected", set()) or set()))


def _pad(text: str, spans: _Spans, span: ir.Span) -> str:
    """Source text for the caret excerpt when we only have the fragment, not the whole file."""
    lines = text.splitlines() or [""]
    prefix = "\n" * (spans.line - 1)
    first = " " * (spans.column - 1) + lines[0]
    return prefix + "\n".join([first, *lines[1:]])


def parse(
    text: str,
    start: StartSymbol,
    *,
    file: str = "<input>",
    line: int = 1,
    column: int = 1,
    exact: bool = True,
    source: str | None = None,
) -> Any:
    """Parse ``text`` from ``start``; positions are reported relative to (file, line, column).

    ``source`` is the whole file text, used for caret excerpts when ``text`` is a fragment of it.
    """
    lark = _parser()
    spans = _Spans(file, line, column, exact)
    token = _SPANS.set(spans)
    try:
        return lark.parse(text, start=start)
    except UnexpectedInput as exc:
        err = _syntax_error(exc, text, file, spans, _WHAT[start])
        if source is not None and err.location is not None:
            loc = err.location
            err.location = Location(loc.file, loc.line, loc.column, source)
        raise err from None
    except VisitError as exc:  # a transformer callback refused a value (bad escape)
        orig = exc.orig_exc
        if isinstance(orig, RulesError):
            raise orig from None
        span = spans.at(1, 1)
        raise RulesSyntaxError(str(orig), Location(span.file, span.line, span.column, source or text)) from None
    finally:
        _SPANS.reset(token)


_WHAT = {
    "command": "command",
    "calls": "list of calls",
    "arglist": "assignments",
    "chain": "route",
    "condition": "condition",
}
