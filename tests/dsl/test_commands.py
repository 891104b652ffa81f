"""Finding commands in chat text: the linear scanner against the plain definition, its cost, and
the bounds a message cannot exceed (issue "hold against hostile input")."""

from __future__ import annotations

import re
import threading
import time

import pytest
from hypothesis import given, settings, strategies as st

from unittest import mock

from dsl import bounds, commands, parse_message
from dsl.commands import _command_end, code_ranges, find_commands, strip_commands
from dsl.errors import Location
from dsl.parser import parse

# ---- the plain definition (quadratic; what the scanner must keep meaning) ---------------------

_FENCE = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})", re.M)
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*(?:-[A-Za-z0-9_]+)*")


def plain_code_ranges(text: str) -> list[tuple[int, int]]:
    """Fenced blocks (a fence line to the next fence line of the same character, at least as long),
    then in the text between them, inline spans: a run of N backticks to the next run of exactly N."""
    fences, pos = [], 0
    while (m := _FENCE.search(text, pos)) is not None:
        fence = m.group(1)
        close = re.compile(rf"^[ \t]{{0,3}}{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", re.M)
        line_end = text.find("\n", m.end())
        end_match = close.search(text, line_end + 1) if line_end != -1 else None
        end = end_match.end() if end_match else len(text)
        fences.append((m.start(), end))
        pos = end
    out, cursor = [], 0
    for start, end in fences + [(len(text), len(text))]:
        i = cursor
        while (j := text.find("`", i, start)) != -1:
            k = j
            while k < start and text[k] == "`":
                k += 1
            m = re.compile(rf"(?<!`){text[j:k]}(?!`)").search(text, k, start)
            if m is None:
                i = k
                continue
            out.append((j, m.end()))
            i = m.end()
        if start < end:
            out.append((start, end))
        cursor = end
    return out


def plain_find_commands(text: str, prefix: str = "!/") -> list[int]:
    """Start of every command: the prefix after whitespace (or at the start), a name, outside code."""
    code = plain_code_ranges(text)
    found, pos = [], 0
    while (at := text.find(prefix, pos)) != -1:
        pos = at + len(prefix)
        if (at > 0 and not text[at - 1].isspace()) or any(s <= at < e for s, e in code):
            continue
        if _NAME.match(text, pos):
            found.append(at)
            pos = _command_end(text, pos)
    return found


PIECES = ["`", "``", "```", "````", "~~~", "\n", " ", "\t", "a", "x", "!/", "!/a", "!/b(x)", "!/hello", "(", ")",
          '"', "    ", "!/set(p=\"`\")"]
texts = st.lists(st.sampled_from(PIECES), max_size=40).map("".join)


@settings(max_examples=600, deadline=None)
@given(texts)
def test_code_ranges_are_the_plain_definition(text: str) -> None:
    assert code_ranges(text) == plain_code_ranges(text)


@settings(max_examples=600, deadline=None)
@given(texts)
def test_commands_are_found_where_the_plain_definition_finds_them(text: str) -> None:
    assert [start for start, _ in find_commands(text)] == plain_find_commands(text)


@settings(max_examples=600, deadline=None)
@given(texts, st.integers(1, 12))
def test_scanning_window_by_window_changes_nothing(text: str, window: int) -> None:
    """The scanner's regex calls look at ``WINDOW`` characters at a time (64 K: the event loop gets
    the GIL back between them); with windows of a few characters every fence, backtick run and
    candidate straddles a window's edge somewhere, and the answers are still the plain ones."""
    with mock.patch.object(commands, "WINDOW", window):
        assert code_ranges(text) == plain_code_ranges(text)
        assert [start for start, _ in find_commands(text)] == plain_find_commands(text)


def test_no_regex_call_of_the_scanner_looks_at_more_than_a_window() -> None:
    """A 10 MB line without backticks, fences or commands held the GIL 350 ms in one backtick
    search, 10 MB of short lines 150 ms in one fence search (a worker thread's regex call keeps
    the event loop waiting until it returns)."""
    spans: list[int] = []
    real = re.Pattern

    class Watched:
        def __init__(self, pattern: re.Pattern[str]) -> None:
            self.pattern = pattern

        def __getattr__(self, name: str):  # search / match / finditer, recording what they may scan
            method = getattr(self.pattern, name)

            def call(text: str, pos: int = 0, endpos: int = 1 << 62):
                if name != "match":  # a match stops where its pattern does: it scans no further
                    spans.append(min(endpos, len(text)) - pos)
                return method(text, pos, endpos)
            return call

    text = ("hello world\n" * 200_000) + "`a` " + "x" * 1_000_000 + "\n```\ncode !/x\n```\n" + "y " * 200_000 + " !/hello"
    compile_ = re.compile
    with mock.patch.object(commands, "_BACKTICKS", Watched(commands._BACKTICKS)), \
            mock.patch.object(commands, "_FENCE_AFTER_NEWLINE", Watched(commands._FENCE_AFTER_NEWLINE)), \
            mock.patch.object(commands.re, "compile", lambda *a: Watched(compile_(*a))), \
            mock.patch.dict(commands._CANDIDATES, clear=True):
        found = find_commands(text)
    assert [text[s:e] for s, e in found] == ["!/hello"]
    assert spans and max(spans) <= commands.WINDOW, max(spans)
    assert isinstance(commands._BACKTICKS, real)


# ---- cost ------------------------------------------------------------------------------------


def _cpu(text: str) -> float:
    """CPU time of this thread for one parse: other processes on the machine do not count."""
    best = float("inf")
    for _ in range(3):
        started = time.thread_time()
        parse_message(text, known_backends=("echo",))
        best = min(best, time.thread_time() - started)
    return best


@settings(max_examples=12, deadline=None)
@given(st.lists(st.sampled_from(PIECES), min_size=1, max_size=6).map("".join).filter(lambda p: p.strip()))
def test_the_cost_of_parsing_a_message_is_at_most_linear_in_its_length(piece: str) -> None:
    """Eight times the text costs at most ~8 times as much (3x slack for noise); the scanner this
    replaced took 8.7 s for 84 KB of `a` pieces and commands, 64 times more for 8 times the text."""
    small = piece * (16_000 // len(piece))
    large = piece * (128_000 // len(piece))
    assert _cpu(large) <= 24 * max(_cpu(small), 0.002)


@pytest.mark.parametrize("piece", ["`a` !/a ", "`a` ", " ".join("`" * n for n in range(1, 40)) + " !/x "])
def test_adversarial_bodies_of_the_issue_parse_in_linear_time(piece: str) -> None:
    small, large = piece * (20_000 // len(piece)), piece * (160_000 // len(piece))
    assert _cpu(large) <= 24 * max(_cpu(small), 0.002)


# ---- bounds ----------------------------------------------------------------------------------


def test_more_commands_than_the_bound_is_one_error_and_nothing_runs() -> None:
    text = " ".join(["!/backend(echo)"] * (bounds.MAX_COMMANDS_PER_MESSAGE + 1))
    parsed = parse_message(text, known_backends=("echo",))
    assert parsed.commands == []
    assert len(parsed.errors) == 1
    assert f"at most {bounds.MAX_COMMANDS_PER_MESSAGE}" in parsed.errors[0].message
    assert parsed.errors[0].location is not None and parsed.errors[0].location.column == 1 + 16 * bounds.MAX_COMMANDS_PER_MESSAGE


def test_exactly_the_bound_of_commands_runs() -> None:
    text = " ".join(["!/backend(echo)"] * bounds.MAX_COMMANDS_PER_MESSAGE)
    parsed = parse_message(text, known_backends=("echo",))
    assert len(parsed.commands) == bounds.MAX_COMMANDS_PER_MESSAGE and not parsed.errors


def test_an_overlong_command_is_refused_before_it_is_parsed() -> None:
    long_value = "p" * bounds.MAX_COMMAND_CHARS
    parsed = parse_message(f'!/set(project="{long_value}") hi')
    assert not parsed.commands
    assert "characters long" in parsed.errors[0].message
    fits = parse_message(f'!/set(project="{"p" * 100}") hi')
    assert len(fits.commands) == 1 and not fits.errors


def test_earlier_turns_are_stripped_without_parsing_and_too_many_commands_stay_text() -> None:
    assert strip_commands("hi !/nonsense(((") == ("hi", True)
    assert strip_commands("`!/hello` only code") == ("`!/hello` only code", False)
    flood = " ".join(["!/hello"] * (bounds.MAX_COMMANDS_PER_MESSAGE + 1))
    assert strip_commands(flood) == (flood, False)


def test_the_caret_excerpt_of_a_long_line_is_a_window_around_the_column() -> None:
    text = "x" * 100_000 + "^here" + "y" * 100_000
    excerpt = Location("<message>", 1, 100_001, text).excerpt()
    line, caret = excerpt.split("\n")
    assert len(line) < 200 and line.strip().startswith("...") and line.endswith("...")
    assert line[caret.index("^")] == "^"
    many_lines = "a\n" * 50_000 + "bad line\n"
    assert "bad line" in Location("<message>", 50_001, 1, many_lines).excerpt()
    assert Location("<message>", 50_003, 1, many_lines).excerpt() == ""


def test_parses_in_parallel_threads_keep_their_own_positions() -> None:
    """The parser is shared; each parse reports positions in its own coordinates."""
    errors: list[str] = []

    def work(line: int) -> None:
        for _ in range(200):
            chain = parse("openai:gpt-4o -> echo:x", "chain", file=f"f{line}", line=line, column=5)
            if {t.span.line for t in chain.targets()} != {line} or {t.span.file for t in chain.targets()} != {f"f{line}"}:
                errors.append(f"line {line}: {[t.span for t in chain.targets()]}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
