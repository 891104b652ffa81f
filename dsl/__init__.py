"""The rules language: one Lark grammar for ``!/`` commands and routes.d rules, one IR.

Public entry points: :func:`parse_message` (chat commands), :func:`load_rules_dir` (rule files),
:class:`RuleSet` + :func:`evaluate` (per-request plan), and the printer.
"""

from .commands import DEFAULT_PREFIX, ParsedMessage, parse_message
from .errors import Location, RulesError, RulesErrors, RulesSemanticError, RulesSyntaxError, SchemaError
from .evaluate import Facts, Plan, RuleSet, evaluate
from .loader import LoadedRules, load_rules_dir, load_rules_text

__all__ = [
    "DEFAULT_PREFIX", "ParsedMessage", "parse_message", "Location", "RulesError", "RulesErrors",
    "RulesSemanticError", "RulesSyntaxError", "SchemaError", "Facts", "Plan", "RuleSet", "evaluate",
    "LoadedRules", "load_rules_dir", "load_rules_text",
]
