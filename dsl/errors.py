"""One root error for the rules language, so callers catch a single type.

Every error knows where it happened (file, line, column, 1-based) and renders like a compiler
message: ``file:line:col: error: message`` then the source line with a caret under the column.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Location:
    """A position in a source text. ``text`` is the whole source, kept for the caret excerpt."""

    file: str = "<input>"
    line: int = 1
    column: int = 1
    text: str = ""

    def excerpt(self) -> str:
        lines = self.text.splitlines()
        if not 1 <= self.line <= len(lines):
            return ""
        source = lines[self.line - 1].expandtabs(1)
        caret = " " * (max(self.column, 1) - 1) + "^"
        return f"    {source}\n    {caret}"


class RulesError(Exception):
    """Root of every error the language raises (syntax, semantic, schema)."""

    def __init__(self, message: str, location: Location | None = None, expected: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.location = location
        self.expected = expected

    def render(self) -> str:
        """Compiler-style text: position, message, what was expected, caret excerpt."""
        head = "error: " + self.message
        if self.expected:
            head += f" (expected {self.expected})"
        if self.location is None:
            return head
        loc = self.location
        out = f"{loc.file}:{loc.line}:{loc.column}: {head}"
        excerpt = loc.excerpt()
        return out + ("\n" + excerpt if excerpt else "")

    def __str__(self) -> str:
        return self.render()


class RulesSyntaxError(RulesError):
    """The text does not follow the grammar."""


class RulesSemanticError(RulesError):
    """The text parses but means something impossible (unknown backend, bad argument, ...)."""


class SchemaError(RulesError):
    """A YAML file does not match its JSON Schema."""


class RulesErrors(RulesError):
    """Several errors at once (``check`` reports them all, not just the first)."""

    def __init__(self, errors: list[RulesError]) -> None:
        super().__init__(f"{len(errors)} error(s)")
        self.errors = errors

    def render(self) -> str:
        return "\n".join(e.render() for e in self.errors)
