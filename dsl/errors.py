"""One root error for the rules language, so callers catch a single type.

Every error knows where it happened (file, line, column, 1-based) and renders like a compiler
message: ``file:line:col: error: message`` then the source line with a caret under the column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import islice


@dataclass(frozen=True, slots=True)
class Location:
    """A position in a source text. ``text`` is the whole source, kept for the caret excerpt."""

    file: str = "<input>"
    line: int = 1
    column: int = 1
    text: str = ""

    def excerpt(self) -> str:
        """The source line with a caret under the column; a long line is cut to a window around it.

        A chat message may be megabytes long: the line is found without splitting the text, and
        only the window is copied.
        """
        start = _line_start(self.text, self.line)
        if start is None:
            return ""
        end = self.text.find("\n", start)
        end = len(self.text) if end == -1 else end
        column = max(self.column, 1)
        first = max(0, column - 1 - _EXCERPT_WIDTH // 2) if end - start > _EXCERPT_WIDTH else 0
        shown = self.text[start + first:min(end, start + first + _EXCERPT_WIDTH)].rstrip("\r")
        lead = "..." if first else ""
        tail = "..." if start + first + _EXCERPT_WIDTH < end else ""
        caret = " " * (column - 1 - first + len(lead)) + "^"
        return f"    {lead}{shown.expandtabs(1)}{tail}\n    {caret}"


def _line_start(text: str, line: int) -> int | None:
    """Offset where 1-based ``line`` starts, or None when the text has fewer lines."""
    if line < 1 or (line > 1 and text.count("\n") < line - 1):
        return None
    if line == 1:
        return 0
    newline = next(islice(_NEWLINE.finditer(text), line - 2, None))
    return newline.end()


_NEWLINE = re.compile("\n")
_EXCERPT_WIDTH = 160


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
