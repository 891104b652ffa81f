"""Stage 2: ``!/`` commands — cut out of the conversation, applied to the session, answered.

:func:`strip_commands` removes commands from the user messages (the provider sees a clean
conversation) and parses those of the latest one; :func:`apply_commands` applies them and words
the proxy's reply.

Edits are applied to a copy and swapped in only when every command of the message is valid, so a
bad command leaves the session exactly as it was. That includes a command whose values, or whose
result, are over the size limits of ``router/bounds.py``: what a session keeps lives as long as
the session (and in a file, with the file repository), so it is bounded like everything a client
sends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from dsl import ir
from dsl.commands import ParsedMessage, parse_message, strip_commands as strip_text
from dsl.errors import RulesError
from dsl.printer import print_chain, print_rules
from dsl.registry import COMMANDS, SESSION_SETTINGS, STRATEGIES
from dsl.session import apply_route_edit, session_rules

from ..wire import fastjson
from ..wire.canonical import Message, TextPart, is_client_injected
from ..bounds import MAX_AUDITED_COMMAND_CHARS, MAX_MODEL_CHARS, MAX_SESSION_BYTES, MAX_SETTING_CHARS, TooLong, clip, too_long
from ..sessions import Session

SESSION_ATTRS = ("backend", "model", "project", "project_dir", "temperature", "interactive")


@dataclass(slots=True)
class CommandContext:
    """What replies need to know about the deployment."""

    backends: Iterable[str]
    default_backend: str
    prefix: str
    file_rules: list[ir.Rule]
    guards: Callable[[Session], list[str]]  # active guard descriptions for the session
    explain: Callable[[Session], str] | None = None  # !/route-explain: this request under the session's rules


@dataclass(slots=True)
class CommandOutcome:
    session: Session  # the session to keep (a modified copy, or the original)
    lines: list[str] = field(default_factory=list)
    failed: bool = False
    changed: bool = False

    def text(self) -> str:
        return "\n".join(self.lines)


def _holds_prefix(messages: list[Message], prefix: str) -> bool:
    """Whether a user message's text holds ``prefix`` (loops, not a generator: every request asks)."""
    for message in messages:
        if message.role == "user":
            for part in message.parts:
                if isinstance(part, TextPart) and prefix in part.text:
                    return True
    return False


def strip_commands(messages: list[Message], prefix: str, known: Iterable[str]) -> tuple[list[Message], ParsedMessage] | None:
    """Remove commands from every user message: the messages to send on, and the latest user
    message's commands parsed; None (and nothing copied) when no user message holds the prefix.

    Earlier user turns that held only commands are dropped together with the proxy's reply
    that followed them, so the provider sees a clean conversation.
    """
    if not _holds_prefix(messages, prefix):
        return None  # no command anywhere: most requests
    latest_index = len(messages) - 1 if messages and messages[-1].role == "user" else -1
    latest = ParsedMessage()
    kept: list[Message] = []
    skip_next_assistant = False
    for index, message in enumerate(messages):
        if skip_next_assistant and message.role == "assistant":
            skip_next_assistant = False
            continue
        skip_next_assistant = False
        if message.role != "user" or not any(isinstance(p, TextPart) and prefix in p.text for p in message.parts):
            kept.append(message)
            continue
        # Only the latest message's commands run (and are parsed); earlier ones ran when they
        # were sent and are only cut out, so a long history costs a scan, not a parse per turn.
        had_commands = False
        parts = []
        for part in message.parts:
            if isinstance(part, TextPart) and prefix in part.text:
                if index == latest_index:
                    parsed = parse_message(part.text, prefix, known)
                    latest.commands += parsed.commands
                    latest.errors += parsed.errors
                    text = parsed.text
                else:
                    text, found = strip_text(part.text, prefix)
                    had_commands = had_commands or found
                if text:
                    parts.append(TextPart(text))
            else:
                parts.append(part)
        if index == latest_index:
            # What is left for the model decides whether the proxy answers by itself: the
            # person's remaining text; other parts (images, tool results) count as content.
            remaining = Message("user", parts)
            latest.text = "" if _only_reminders(parts) else (remaining.typed_text() or "[non-text content]")
            kept.append(remaining)
        elif parts and not _only_reminders(parts):
            kept.append(Message("user", parts))
        elif had_commands:
            skip_next_assistant = True
        else:
            kept.append(message)
    return kept, latest


def _only_reminders(parts: list[Any]) -> bool:
    """True when nothing but client-injected context (Claude Code, Gemini CLI) is left."""
    return all(isinstance(p, TextPart) and (not p.text.strip() or is_client_injected(p)) for p in parts)


ROUTING_COMMANDS = frozenset({"backend", "model", "oneoff", "route-append", "route-prepend", "route-clear"})


def routing_commands(parsed: ParsedMessage) -> list[str]:
    """The commands that change routing (security-relevant: who moved traffic where), clipped for the audit log."""
    return [clip(c.source, MAX_AUDITED_COMMAND_CHARS) for c in parsed.commands
            if c.name in ROUTING_COMMANDS
            or (c.name == "set" and any(getattr(e, "field", "") in ("backend", "model") for e in c.edits))]


def apply_commands(session: Session, parsed: ParsedMessage, ctx: CommandContext) -> CommandOutcome:
    if parsed.errors:
        lines = ["The proxy could not run your command; nothing was changed."]
        for err in parsed.errors:
            lines += ["```", err.render(), "```"]
        lines.append(f"Type {ctx.prefix}help for the list of commands.")
        return CommandOutcome(session, lines, failed=True)
    work = Session.from_json(session.to_json())
    outcome = CommandOutcome(work)
    for command in parsed.commands:
        try:
            for edit in command.edits:
                outcome.lines.append(_apply(work, edit, ctx, outcome))
            if outcome.changed:
                _check_size(work)
        except (TooLong, RulesError) as exc:  # over a bound: refuse the whole message, as for a syntax error
            reason = exc.message if isinstance(exc, RulesError) else str(exc)
            return CommandOutcome(session, [f"The proxy could not run {clip(command.source, 80)}: {reason}. "
                                            "Nothing was changed."], failed=True)
    return outcome


def _check_value(what: str, value: object, limit: int) -> None:
    if isinstance(value, str) and len(value) > limit:
        raise TooLong(too_long(what, len(value), limit))


def _check_size(s: Session) -> None:
    """What the session's commands store (everything but the proxy's own history), as JSON."""
    data = s.to_json()
    del data["history"]
    size = len(fastjson.dumps(data))
    if size > MAX_SESSION_BYTES:
        raise TooLong(too_long("the session's settings and routes", size, MAX_SESSION_BYTES, "bytes")
                      + " (!/route-clear or !/unset frees room)")


def _apply(s: Session, edit: ir.SessionEdit, ctx: CommandContext, outcome: CommandOutcome) -> str:
    if isinstance(edit, ir.Query):
        return _query(s, edit, ctx)
    outcome.changed = True
    if isinstance(edit, ir.SetField):
        _check_value(edit.field, edit.value, MAX_MODEL_CHARS if edit.field == "model" else MAX_SETTING_CHARS)
        if edit.field in SESSION_ATTRS:
            setattr(s, edit.field, edit.value)
        else:
            s.params[edit.field] = edit.value
        return f"{edit.field} set to {_show(edit.value)}"
    if isinstance(edit, ir.UnsetField):
        if edit.field in SESSION_ATTRS:
            setattr(s, edit.field, False if edit.field == "interactive" else None)
        else:
            s.params.pop(edit.field, None)
        return f"{edit.field} reset to its default"
    if isinstance(edit, ir.OneOff):
        _check_value("the model", edit.target.model, MAX_MODEL_CHARS)
        s.oneoff = str(edit.target)
        return f"the next request goes to {edit.target}"
    if isinstance(edit, ir.RouteEdit):
        _check_value("the model", edit.model, MAX_MODEL_CHARS)
        for target in edit.chain.targets() if edit.chain is not None else ():
            _check_value("a target's model", target.model, MAX_MODEL_CHARS)
        s.route_edits = apply_route_edit(s.route_edits, edit)
        if edit.op == "clear":
            return f"route for {edit.model} cleared"
        current = next(r["route"] for r in s.route_edits if r["model"] == edit.model)
        return f"route for {edit.model}: {current}"
    raise TypeError(edit)  # pragma: no cover


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _query(s: Session, query: ir.Query, ctx: CommandContext) -> str:
    name = query.name
    if name == "hello":
        return hello_text(s, ctx)
    if name == "help":
        return help_text(ctx.prefix, query.argument)
    if name == "pwd":
        return f"project directory: {s.project_dir}" if s.project_dir else "project directory: not set " \
            f"(use {ctx.prefix}set(project_dir=\"/path\"))"
    if name == "route-list":
        return route_list_text(s, ctx)
    if name == "route-explain":
        return ctx.explain(s) if ctx.explain is not None else "route-explain is not available here"
    raise ValueError(name)  # pragma: no cover


def hello_text(s: Session, ctx: CommandContext) -> str:
    lines = [
        "Welcome to llm-interactive-proxy.",
        f"session: {s.id}",
        f"backend: {s.backend or ctx.default_backend + ' (default)'}",
        f"model: {s.model or 'as requested by the client'}",
    ]
    if s.project:
        lines.append(f"project: {s.project}")
    if s.temperature is not None:
        lines.append(f"temperature: {s.temperature}")
    if s.oneoff:
        lines.append(f"one-off: next request goes to {s.oneoff}")
    for key, value in s.params.items():
        lines.append(f"{key}: {_show(value)}")
    lines.append(f"session routes: {len(s.route_edits)}, file rules: {len(ctx.file_rules)}")
    lines.append("active guards: " + (", ".join(ctx.guards(s)) or "none"))
    lines.append(f"backends: {', '.join(ctx.backends)}")
    lines.append(f"Type {ctx.prefix}help for commands.")
    return "\n".join(lines)


def help_text(prefix: str, command: str | None = None) -> str:
    """Generated from the registry the parser checks against, so it cannot drift."""
    if command:
        spec = COMMANDS.get(command)
        if spec is None:
            return f"unknown command {command!r}; type {prefix}help for the list"
        lines = [f"{prefix}{spec.signature()} — {spec.summary}", f"example: {spec.example}"]
        if spec.keyword_args or spec.variadic:
            lines.append("settings: " + ", ".join(f"{k} ({p.describe()})" for k, p in SESSION_SETTINGS.items()))
        for param in spec.params:
            lines.append(f"  {param.name}: {param.describe()}{'' if param.required else ' (optional)'}")
        if any(p.type == "chain" for p in spec.params):
            lines += route_groups_help()
        return "\n".join(lines)
    width = max(len(spec.signature()) for spec in COMMANDS.values()) + len(prefix)
    lines = ["Commands:"]
    lines += [f"  {(prefix + spec.signature()).ljust(width)}  {spec.summary}" for spec in COMMANDS.values()]
    lines += route_groups_help()
    lines.append(f"Type {prefix}help(command) for details.")
    return "\n".join(lines)


def route_groups_help() -> list[str]:
    """How a route picks among targets, from the registry (the same words in routes.d rules)."""
    width = max(len(name) for name in STRATEGIES) + len("(a | b)")
    lines = ["Route groups (one member per request, the others stay fallbacks):",
             f"  {'(a | b)'.ljust(width)}  an equal share",
             f"  {'(70% a | 30% b)'.ljust(width)}  by weight"]
    lines += [f"  {(name + '(a | b)').ljust(width)}  {summary}" for name, summary in STRATEGIES.items()]
    return lines


def route_list_text(s: Session, ctx: CommandContext) -> str:
    lines = []
    session_part = session_rules(s.route_edits, s.backend, None, s.oneoff)
    if session_part:
        lines.append("Session rules (first):")
        for rule in session_part:
            when = f"model == {rule.when.value!r}" if isinstance(rule.when, ir.Compare) else "always"
            lines.append(f"  {rule.name}: when {when} -> {print_chain(rule.route)}")  # type: ignore[arg-type]
    else:
        lines.append("Session rules: none")
    if ctx.file_rules:
        lines.append("File rules:")
        lines.append(print_rules(ctx.file_rules).rstrip())
    else:
        lines.append("File rules: none")
    return "\n".join(lines)
