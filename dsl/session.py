"""A session's command edits as rules: the same :class:`ir.Rule` objects a routes.d file gives.

Session state stores route edits as canonical text (``{"model": ..., "route": ...}``) so it survives
restarts in the file repository and stays readable; this module turns that state back into rules.
Order inside a session (first wins for the route): the one-off target, then the per-model routes,
then the session's backend.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Iterable, Mapping

from . import bounds, ir
from .errors import RulesSemanticError
from .evaluate import RuleSet
from .parser import parse
from .printer import print_chain


def route_rule(model: str, chain: ir.Chain) -> ir.Rule:
    """What ``!/route-append(model, chain)`` means: ``when: model == "<model>"`` → ``route: chain``."""
    return ir.Rule(name=f"session:{model}", when=ir.Compare(ir.Fact("model"), "==", model), route=chain)


def apply_route_edit(routes: list[dict[str, str]], edit: ir.RouteEdit) -> list[dict[str, str]]:
    """A new list of stored routes with ``edit`` applied (the input is not modified).

    Refused with :class:`RulesSemanticError` when the result would exceed ``dsl/bounds.py``: a
    session's routes are turned back into rules on every request, so they stay small.
    """
    current = {r["model"]: r["route"] for r in routes}
    if edit.op == "clear":
        current.pop(edit.model, None)
    else:
        assert edit.chain is not None
        existing = _chain(current[edit.model]).links if edit.model in current else ()
        links = existing + edit.chain.links if edit.op == "append" else edit.chain.links + existing
        if len(links) > bounds.MAX_CHAIN_LINKS:
            raise RulesSemanticError(f"route for {edit.model} would have {len(links)} targets; a session route "
                                     f"has at most {bounds.MAX_CHAIN_LINKS}")
        if edit.model not in current and len(current) >= bounds.MAX_SESSION_ROUTES:
            raise RulesSemanticError(f"this session already has routes for {len(current)} models, the most it "
                                     f"may have; clear one first")
        current[edit.model] = print_chain(ir.Chain(links))
    return [{"model": m, "route": r} for m, r in current.items()]


@lru_cache(maxsize=4096)
def _chain(text: str) -> ir.Chain:
    return parse(text, "chain")


def session_rules(routes: Iterable[Mapping[str, Any]], backend: str | None = None, model: str | None = None,
                  oneoff: str | None = None) -> list[ir.Rule]:
    """The session's rules in evaluation order. ``model`` only matters together with ``backend``."""
    rules: list[ir.Rule] = []
    if oneoff:
        target_backend, _, target_model = oneoff.partition(":")
        rules.append(ir.Rule("session:oneoff", route=ir.Chain((ir.Target(target_backend, target_model or None),))))
    for stored in routes:
        rules.append(route_rule(stored["model"], _chain(stored["route"])))
    if backend:
        rules.append(ir.Rule("session:backend", route=ir.Chain((ir.Target(backend, model or None),))))
    return rules


_NOTHING: tuple[tuple[tuple[str, str], ...], None, None, None] = ((), None, None, None)


@lru_cache(maxsize=4096)
def _compiled(key: tuple[tuple[tuple[str, str], ...], str | None, str | None, str | None]) -> RuleSet:
    routes, backend, model, oneoff = key
    return RuleSet(session_rules([{"model": m, "route": r} for m, r in routes], backend, model, oneoff))


def session_ruleset(routes: Iterable[Mapping[str, Any]], backend: str | None = None, model: str | None = None,
                    oneoff: str | None = None) -> RuleSet:
    """Compiled session rules, cached by content: most requests of a session reuse one RuleSet."""
    if not routes and backend is None and model is None and oneoff is None:
        return _compiled(_NOTHING)  # a session that changed nothing: most requests
    key = (tuple((r["model"], r["route"]) for r in routes), backend, model, oneoff)
    return _compiled(key)
