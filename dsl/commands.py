"""Finding ``!/commands`` in chat text and compiling them to session edits.

The prefix is found here, outside the grammar, so it can be configured; what follows it is parsed
by the grammar's ``command`` entry point. Text inside fenced (```` ``` ````/``~~~``) or inline
(`` `...` ``) code is never a command: agents paste shell history and docs that contain ``!/``.
"""

from __future__ import annotations

import re
from array import array
from dataclasses import dataclass, field
from typing import Iterable

from . import bounds, ir
from .compile import Context, compile_command
from .errors import Location, RulesError, RulesSemanticError
from .parser import parse

DEFAULT_PREFIX = "!/"
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*(?:-[A-Za-z0-9_]+)*")
# A fence opens a line: at the text's start, or after a newline. Both patterns begin with a literal
# or a fixed set, so the regex engine skips ahead quickly (a leading ``^`` with re.M would test every
# position of a megabyte line).
_FENCE_AT_START = re.compile(r"[ \t]{0,3}(`{3,}|~{3,})")
_FENCE_AFTER_NEWLINE = re.compile(r"\n[ \t]{0,3}(`{3,}|~{3,})")
_BACKTICKS = re.compile(r"`+")
# The most characters one regex call scans. A regex search holds the GIL until it returns, and a
# worker thread scanning a 10 MB message (``router/wire/offload.py``) then keeps the event loop
# from running for the whole scan: 150-380 ms for one fence or backtick search over 10 MB of
# lines, where no match stops it early. Searched window by window, the loop gets the GIL back
# between windows (every switch interval); 64 K characters take well under a millisecond.
WINDOW = 64 * 1024


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
    starts, ends = _code_spans(text)
    return list(zip(starts, ends))


def _code_spans(text: str) -> tuple[array[int], array[int]]:
    """:func:`code_ranges` as two arrays (starts, ends).

    Arrays, not lists of tuples: a megabyte of `` `a` `` pieces has hundreds of thousands of spans,
    and freeing that many objects at once holds the GIL (and so the event loop) for a long moment.
    """
    starts, ends = array("q"), array("q")
    cursor = 0
    m = _FENCE_AT_START.match(text) or _search(_FENCE_AFTER_NEWLINE, _FENCE_AFTER_NEWLINE, text, 0, _FENCE_REACH)
    while m is not None:
        fence = m.group(1)
        char = re.escape(fence[0])
        close = re.compile(rf"\n[ \t]{{0,3}}{char}{{{len(fence)},}}[ \t]*(?=\n|\Z)")
        close_head = re.compile(rf"\n[ \t]{{0,3}}{char}{{{len(fence)}}}")
        line_end = text.find("\n", m.end())
        end_match = _search(close_head, close, text, line_end, 4 + len(fence)) if line_end != -1 else None
        end = end_match.end() if end_match else len(text)
        line_start = m.start() + (text[m.start()] == "\n")
        _inline_code(text, cursor, line_start, starts, ends)
        starts.append(line_start)
        ends.append(end)
        cursor = end
        m = _search(_FENCE_AFTER_NEWLINE, _FENCE_AFTER_NEWLINE, text, end, _FENCE_REACH)
    _inline_code(text, cursor, len(text), starts, ends)
    return starts, ends


_FENCE_REACH = 7  # a fence after a newline is told from its first 7 characters: "\n", 3 blanks, 3 fence characters


def _search(head: re.Pattern[str], full: re.Pattern[str], text: str, pos: int, reach: int,
            end: int | None = None) -> re.Match[str] | None:
    """``full.search(text, pos, end)``, but no regex call scans more than :data:`WINDOW` characters.

    ``head`` finds where a match of ``full`` may start and must need at most ``reach``
    characters to do so (so windows overlap by ``reach``); ``full`` then decides at that place,
    without the window's end (a match may run past it). Linear: every window moves on by
    ``WINDOW - reach``, every candidate that ``full`` refuses by one character.
    """
    end = len(text) if end is None else end
    window = max(WINDOW, 2 * reach)  # room for a head however long (a fence of 100,000 backticks)
    while pos < end:
        stop = min(end, pos + window)
        candidate = head.search(text, pos, stop)
        if candidate is None:
            if stop == end:
                return None
            pos = max(pos + 1, stop - reach)
            continue
        found = full.match(text, candidate.start(), end)
        if found is not None:
            return found
        pos = candidate.start() + 1
    return None


def _inline_code(text: str, start: int, end: int, starts: array[int], ends: array[int]) -> None:
    """Append the inline code spans of ``text[start:end]``: a run of N backticks up to the next run
    of exactly N.

    Linear in the text: every backtick run is found once (by the regex engine, a :data:`WINDOW` of
    text per call), and for each run
    length a cursor walks forward over the runs of that length, never back.
    """
    run_starts, run_ends, run_lengths = array("q"), array("q"), array("q")
    by_length: dict[int, array[int]] = {}
    pos = start
    while pos < end:  # the backtick runs, found a WINDOW at a time
        stop = min(end, pos + WINDOW)
        if text.find("`", pos, stop) == -1:  # str.find: far faster than the regex on text without any
            pos = stop
            continue
        for m in _BACKTICKS.finditer(text, pos, stop):
            run_start, run_end = m.span()
            if run_end == stop and stop < end:  # the run may go on past the window: follow it
                run_end = pos = _BACKTICKS.match(text, run_start, end).end()  # type: ignore[union-attr]
            length = run_end - run_start
            same = by_length.get(length)
            if same is None:
                same = by_length[length] = array("q")
            same.append(len(run_starts))
            run_starts.append(run_start)
            run_ends.append(run_end)
            run_lengths.append(length)
        pos = max(pos, stop)
    cursors = dict.fromkeys(by_length, 0)
    count = len(run_starts)
    i = 0
    while i < count:
        length = run_lengths[i]
        same, c = by_length[length], cursors[length]
        while c < len(same) and same[c] <= i:
            c += 1
        cursors[length] = c
        if c == len(same):  # no closing run of this length: the backticks are literal
            i += 1
            continue
        closing = same[c]
        starts.append(run_starts[i])
        ends.append(run_ends[closing])
        i = closing + 1


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


def _candidates(prefix: str) -> re.Pattern[str]:
    """Where a command may start: the prefix at the start or after whitespace, then a name."""
    pattern = _CANDIDATES.get(prefix)
    if pattern is None:  # the prefix first, so the engine searches for it as a literal
        escaped = re.escape(prefix)
        pattern = _CANDIDATES[prefix] = re.compile(rf"{escaped}(?<!\S{escaped})(?=[A-Za-z])")
    return pattern


_CANDIDATES: dict[str, re.Pattern[str]] = {}


class TooManyCommands(Exception):
    """More than ``limit`` commands: ``at`` is where the first extra one starts."""

    def __init__(self, at: int) -> None:
        super().__init__(at)
        self.at = at


def find_commands(text: str, prefix: str = DEFAULT_PREFIX, limit: int | None = None) -> list[tuple[int, int]]:
    """(start, end) of every command in ``text``, prefix included, outside code.

    Linear in the text: candidates are found by one regex, code spans are computed once, and a
    candidate inside code moves the search past that whole span. With ``limit``, finding one more
    command than that raises :class:`TooManyCommands` without scanning further.
    """
    if prefix not in text:
        return []
    candidates = _candidates(prefix)
    reach = len(prefix) + 1  # a candidate is the prefix and the letter after it
    if _search(candidates, candidates, text, 0, reach) is None:
        return []
    code_starts, code_ends = _code_spans(text)
    code_index = 0
    found: list[tuple[int, int]] = []
    pos = 0
    while (m := _search(candidates, candidates, text, pos, reach)) is not None:
        at = m.start()
        while code_index < len(code_ends) and code_ends[code_index] <= at:
            code_index += 1
        if code_index < len(code_ends) and code_starts[code_index] <= at:
            pos = code_ends[code_index]  # inside code: nothing before the span's end is a command
            continue
        if limit is not None and len(found) == limit:
            raise TooManyCommands(at)
        end = _command_end(text, at + len(prefix))
        found.append((at, end))
        pos = end
    return found


class _Lines:
    """(line, column) of increasing offsets, counting each newline of the text once."""

    def __init__(self, text: str) -> None:
        self.text, self.offset, self.line, self.line_start = text, 0, 1, 0

    def at(self, offset: int) -> tuple[int, int]:
        newlines = self.text.count("\n", self.offset, offset)
        if newlines:
            self.line += newlines
            self.line_start = self.text.rfind("\n", self.offset, offset) + 1
        self.offset = offset
        return self.line, offset - self.line_start + 1


def parse_message(text: str, prefix: str = DEFAULT_PREFIX, known_backends: Iterable[str] | None = None,
                  file: str = "<message>") -> ParsedMessage:
    """All commands of a message, compiled; errors are collected so the caller can refuse them all.

    Linear in the message's length, and bounded (``dsl/bounds.py``): a message with too many
    commands is one error, and an overlong command is refused before it is parsed.
    """
    result = ParsedMessage()
    lines = _Lines(text)
    try:
        spans = find_commands(text, prefix, limit=bounds.MAX_COMMANDS_PER_MESSAGE)
    except TooManyCommands as exc:
        line, column = lines.at(exc.at)
        result.errors.append(RulesSemanticError(
            f"too many commands in one message (at most {bounds.MAX_COMMANDS_PER_MESSAGE}); send them in parts",
            Location(file, line, column, text)))
        result.text = text
        return result
    if not spans:
        result.text = text
        return result
    ctx = Context(text, file, known_backends)
    for start, end in spans:
        body_start = start + len(prefix)
        line, column = lines.at(body_start)
        try:
            if end - start > bounds.MAX_COMMAND_CHARS:
                raise RulesSemanticError(f"command is {end - start} characters long; the limit is "
                                         f"{bounds.MAX_COMMAND_CHARS}", Location(file, line, column, text))
            call = parse(text[body_start:end], "command", file=file, line=line, column=column, source=text)
            edits = compile_command(call, ctx)
        except RulesError as exc:
            result.errors.append(exc)
            continue
        result.commands.append(ir.CompiledCommand(call.name, text[start:end], edits,
                                                  ir.Span(file, line, column - len(prefix))))
    result.text = _without(text, spans)
    return result


def strip_commands(text: str, prefix: str = DEFAULT_PREFIX) -> tuple[str, bool]:
    """``text`` without its commands, and whether it had any; nothing is parsed.

    For the earlier turns of a conversation: their commands ran when they were sent, and only need
    to be kept from the provider. A message with more commands than one may hold was refused when
    it was sent, so it is left as text. Linear, like :func:`find_commands`.
    """
    try:
        spans = find_commands(text, prefix, limit=bounds.MAX_COMMANDS_PER_MESSAGE)
    except TooManyCommands:  # it could never have run as commands: it is text
        return text, False
    return (_without(text, spans), True) if spans else (text, False)


def _without(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` with the ``spans`` cut out, and the blanks that separated them from their neighbours."""
    kept: list[str] = []
    cursor = 0
    for start, end in spans:
        before = text[cursor:start]
        after = text[end:end + 1]
        kept.append(before.rstrip(" \t") if (not after or after.isspace()) else before)
        cursor = end
    rest = text[cursor:]
    kept.append(rest.lstrip(" \t") if kept and kept[-1].endswith(("\n", "")) and not kept[-1] else rest)
    return "".join(kept).strip()
