"""Finding ``!/commands`` in chat text and compiling them to session edits.

The prefix is found here, outside the grammar, so it can be configured; what follows it is parsed
by the grammar's ``command`` entry point. Text inside fenced (```` ``` ````/``~~~``) or inline
(`` `...` ``) code is never a command: agents paste shell history and docs that contain ``!/``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable

from . import ir
from .compile import Context, compile_command
from .errors import RulesError
from .parser import parse

DEFAULT_PREFIX = "!/"
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*(?:-[A-Za-z0-9_]+)*")
_FENCE = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})", re.M)


@dataclass(slots=True)
class ParsedMessage:
    commands: list[ir.CompiledCommand] = field(default_factory=list)
    errors: list[RulesError] = field(default_factory=list)
    text: str = ""  # the message with commands removed

    @property
    def only_commands(self) -> bool:
        return bool(self.commands or self.errors) and not self.text.strip()


def code_ranges(text: str) -> list[tuple[int, int]]:
    """Half-open ranges of ``text`` that are fenced code blocks or inline code spans."""
    ranges: list[tuple[int, int]] = []
    pos = 0
    while True:
        m = _FENCE.search(text, pos)
        if m is None:
            break
        fence = m.group(1)
        close = re.compile(rf"^[ \t]{{0,3}}{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", re.M)
        line_end = text.find("\n", m.end())
        end_match = close.search(text, line_end + 1) if line_end != -1 else None
        end = end_match.end() if end_match else len(text)
        ranges.append((m.start(), end))
        pos = end
    out: list[tuple[int, int]] = []
    cursor = 0
    for start, end in ranges + [(len(text), len(text))]:
        out.extend(_inline_code(text, cursor, start))
        if start < end:
            out.append((start, end))
        cursor = end
    return out


def _inline_code(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Inline code spans: a run of N backticks up to the next run of exactly N."""
    out = []
    i = start
    while i < end:
        j = text.find("`", i, end)
        if j == -1:
            break
        k = j
        while k < end and text[k] == "`":
            k += 1
        run = text[j:k]
        m = re.compile(rf"(?<!`){run}(?!`)").search(text, k, end)
        if m is None:
            i = k
            continue
        out.append((j, m.end()))
        i = m.end()
    return out


def _command_end(text: str, start: int) -> int:
    """End of the command whose name starts at ``start``: the name, then a balanced (...) if any."""
    m = _NAME.match(text, start)
    assert m is not None
    i = m.end()
    if i >= len(text) or text[i] != "(":
        return i
    depth, quote = 0, ""
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        elif ch == "\n" and depth:
            return i  # a command does not run over lines; the parser reports the missing ')'
        i += 1
    return len(text)


def _position(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, column


def find_commands(text: str, prefix: str = DEFAULT_PREFIX) -> list[tuple[int, int]]:
    """(start, end) of every command in ``text``, prefix included, outside code."""
    if prefix not in text:
        return []
    code = code_ranges(text)
    found = []
    pos = 0
    while (at := text.find(prefix, pos)) != -1:
        pos = at + len(prefix)
        if at > 0 and not text[at - 1].isspace():
            continue
        if any(s <= at < e for s, e in code):
            continue
        if not _NAME.match(text, pos):
            continue
        end = _command_end(text, pos)
        found.append((at, end))
        pos = end
    return found


def parse_message(text: str, prefix: str = DEFAULT_PREFIX, known_backends: Iterable[str] | None = None,
                  file: str = "<message>") -> ParsedMessage:
    """All commands of a message, compiled; errors are collected so the caller can refuse them all."""
    result = ParsedMessage()
    spans = find_commands(text, prefix)
    if not spans:
        result.text = text
        return result
    ctx = Context(text, file, known_backends)
    kept: list[str] = []
    cursor = 0
    for start, end in spans:
        before = text[cursor:start]
        after = text[end:end + 1]
        # Drop the blanks that separated the command from its neighbours, nothing else.
        kept.append(before.rstrip(" \t") if (not after or after.isspace()) else before)
        cursor = end
        body_start = start + len(prefix)
        line, column = _position(text, body_start)
        source = text[start:end]
        try:
            call = parse(text[body_start:end], "command", file=file, line=line, column=column, source=text)
            edits = compile_command(call, ctx)
        except RulesError as exc:
            result.errors.append(exc)
            continue
        result.commands.append(ir.CompiledCommand(call.name, source, edits, ir.Span(file, line, column - len(prefix))))
    rest = text[cursor:]
    kept.append(rest.lstrip(" \t") if kept and kept[-1].endswith(("\n", "")) and not kept[-1] else rest)
    result.text = "".join(kept).strip()
    return result
