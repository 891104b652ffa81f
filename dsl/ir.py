"""The intermediate representation both surface syntaxes compile to.

Frozen dataclasses, hashable and comparable. Every node may carry a :class:`Span` (where it came
from) that takes no part in equality, so ``!/route-append(gpt-4, anthropic:claude-3)`` and the YAML
rule ``when: model == "gpt-4"`` / ``route: anthropic:claude-3`` give equal ``Rule`` objects.
No Lark type leaves ``dsl/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Union


@dataclass(frozen=True, slots=True)
class Span:
    """1-based position of a node in its source (file or chat message)."""

    file: str = "<input>"
    line: int = 1
    column: int = 1


def _span() -> Span | None:
    return field(default=None, compare=False, repr=False, hash=False)  # type: ignore[return-value]


# ---- values ------------------------------------------------------------------------------------

Scalar = Union[str, int, float, bool]


# ---- targets and chains ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """``backend:model``; ``model`` None means "the model the client asked for"."""

    backend: str
    model: str | None = None
    span: Span | None = _span()

    def resolve(self, requested_model: str) -> "Target":
        return self if self.model is not None else Target(self.backend, requested_model, self.span)

    def __str__(self) -> str:
        return self.backend if self.model is None else f"{self.backend}:{self.model}"


@dataclass(frozen=True, slots=True)
class Member:
    """A target inside a load-balanced group; ``weight`` in percent, None = equal share."""

    target: Target
    weight: float | None = None


@dataclass(frozen=True, slots=True)
class Group:
    """``(70% a:m | 30% b:m)``: one member is picked per request, the rest become fallbacks.

    ``strategy`` names how the member is picked when it is not by weight or chance:
    ``fastest(a | b)``, ``least_busy(a | b)``, ``cheapest(a | b)`` (``dsl.registry.STRATEGIES``);
    None is today's equal or weighted group.
    """

    members: tuple[Member, ...]
    span: Span | None = _span()
    strategy: str | None = None

    def targets(self) -> tuple[Target, ...]:
        return tuple(m.target for m in self.members)


Link = Union[Target, Group]


@dataclass(frozen=True, slots=True)
class Chain:
    """A failover chain: try each link in order."""

    links: tuple[Link, ...]
    span: Span | None = _span()

    def targets(self) -> tuple[Target, ...]:
        out: list[Target] = []
        for link in self.links:
            out.extend(link.targets() if isinstance(link, Group) else (link,))
        return tuple(out)


# ---- conditions --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fact:
    """A request fact: ``model``, ``session.project``, ``header("x-team")`` (arg = header name)."""

    name: str
    arg: str | None = None
    span: Span | None = _span()


CompareOp = Literal["==", "!=", "<", "<=", ">", ">="]


@dataclass(frozen=True, slots=True)
class FactValue:
    """The right side of ``tokens > context_window * 0.8``: another fact's value, times ``factor``."""

    fact: Fact
    factor: int | float = 1


@dataclass(frozen=True, slots=True)
class Compare:
    fact: Fact
    op: CompareOp
    value: Union[Scalar, FactValue]
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class In:
    fact: Fact
    values: tuple[Scalar, ...]
    negated: bool = False
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class Glob:
    """Shell-style match (``*``, ``?``, ``[...]``) of the whole value."""

    fact: Fact
    pattern: str
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class Regex:
    """Python regular expression, searched anywhere in the value."""

    fact: Fact
    pattern: str
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class Truthy:
    """A bare fact: ``stream``, ``tools``, ``session.project`` (set and non-empty)."""

    fact: Fact
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class Const:
    value: bool
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class And:
    items: tuple["Condition", ...]
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple["Condition", ...]
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class Not:
    item: "Condition"
    span: Span | None = _span()


Condition = Union[Compare, In, Glob, Regex, Truthy, Const, And, Or, Not]


# ---- calls, actions and rules ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Arg:
    """One argument of a call or command; ``name`` None for a positional one."""

    name: str | None
    value: Union[Scalar, Chain]
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class Call:
    """``name`` or ``name(args)``: a command, a limit or a post-processor before checking."""

    name: str
    args: tuple[Arg, ...] = ()
    span: Span | None = _span()


LimitKind = Literal["rpm", "tpm", "concurrency", "budget"]
LimitScope = Literal["backend", "key", "session", "caller"]
BudgetWindow = Literal["hour", "day", "month"]


@dataclass(frozen=True, slots=True)
class Limit:
    """``rpm(60)``, ``tpm(200k, per=caller)``, ``concurrency(8, per=session)``,
    ``budget(20, per=caller, window=day)`` (an amount of money in the currency of ``prices``;
    ``window`` is set for budgets only)."""

    kind: LimitKind
    amount: int | float
    per: LimitScope = "backend"
    span: Span | None = _span()
    window: BudgetWindow | None = None


@dataclass(frozen=True, slots=True)
class PostProcessor:
    """A response post-processor by registry name, with its checked parameters."""

    name: str
    params: tuple[tuple[str, Scalar], ...] = ()
    span: Span | None = _span()

    def param(self, key: str, default: Scalar | None = None) -> Scalar | None:
        return dict(self.params).get(key, default)


@dataclass(frozen=True, slots=True)
class Rule:
    """``when`` (None = always) → route / limits / post-processors / request overrides.

    ``order`` is assigned by the loader (file order) and, with ``priority``, fixes evaluation
    order; it takes no part in equality.
    """

    name: str
    when: Condition | None = None
    route: Chain | None = None
    limits: tuple[Limit, ...] = ()
    post: tuple[PostProcessor, ...] = ()
    overrides: tuple[tuple[str, Scalar], ...] = ()
    priority: int = 0
    description: str = field(default="", compare=False)
    span: Span | None = _span()
    # ``on:``: error class (``dsl.registry.ERROR_CLASSES``) -> the chain tried when the route
    # fails with that class before the first byte.
    on: tuple[tuple[str, Chain], ...] = ()


# ---- commands compiled to session edits --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SetField:
    """``!/set(k=v)``, ``!/backend(x)``, ``!/model(x)``, ``!/temperature(x)``, ``!/interactive(b)``."""

    field: str
    value: Scalar


@dataclass(frozen=True, slots=True)
class UnsetField:
    field: str


@dataclass(frozen=True, slots=True)
class OneOff:
    """``!/oneoff(backend:model)``: the next request goes there, once."""

    target: Target


@dataclass(frozen=True, slots=True)
class RouteEdit:
    """``!/route-append|prepend(model, chain)`` and ``!/route-clear(model)``."""

    op: Literal["append", "prepend", "clear"]
    model: str
    chain: Chain | None = None


@dataclass(frozen=True, slots=True)
class Query:
    """Commands that only report: ``hello``, ``help``, ``pwd``, ``route-list``.

    ``argument`` is the optional argument of a query that takes one (``help(command)``: the command
    to explain), kept apart from ``name`` so a consumer dispatches on the name alone.
    """

    name: str
    argument: str | None = None


SessionEdit = Union[SetField, UnsetField, OneOff, RouteEdit, Query]


@dataclass(frozen=True, slots=True)
class CompiledCommand:
    """A command found in a message: its source text, span and the edits it compiles to."""

    name: str
    source: str
    edits: tuple[SessionEdit, ...]
    span: Span | None = _span()
