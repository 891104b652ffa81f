"""The vocabulary of the language in one place: commands, facts, limits, post-processors, settings.

The compiler checks names and arguments against these tables, ``check`` reports against them and
``!/help`` is generated from them, so a new command or processor is one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ParamType = Literal["int", "number", "bool", "string", "name", "target", "chain", "enum", "duration", "any"]


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    type: ParamType
    required: bool = False
    default: object = None
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    help: str = ""

    def describe(self) -> str:
        """What a value of this parameter looks like, for error messages."""
        if self.type == "enum":
            return "one of " + ", ".join(self.choices)
        bounds = ""
        if self.minimum is not None and self.maximum is not None:
            bounds = f" between {self.minimum:g} and {self.maximum:g}"
        elif self.minimum is not None:
            bounds = f" >= {self.minimum:g}"
        return {
            "int": "an integer",
            "number": "a number",
            "bool": "true or false",
            "string": "a string",
            "name": "a name",
            "target": "a target backend:model",
            "chain": "a route like backend:model -> backend:model",
            "duration": "a duration in seconds, or like 90s, 10m, 2h",
            "any": "a value",
        }[self.type] + bounds


# ---- commands ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommandSpec:
    name: str
    params: tuple[Param, ...]
    summary: str
    example: str
    keyword_args: bool = False  # set(k=v, ...): any number of settings by name
    variadic: bool = False  # unset(a, b, ...)

    def signature(self) -> str:
        if self.keyword_args:
            return f"{self.name}(key=value, ...)"
        if self.variadic:
            return f"{self.name}(key, ...)"
        if not self.params:
            return self.name
        inner = ", ".join(p.name if p.required else f"[{p.name}]" for p in self.params)
        return f"{self.name}({inner})"


COMMANDS: dict[str, CommandSpec] = {
    spec.name: spec
    for spec in (
        CommandSpec("hello", (), "Welcome message, session state and active guards", "!/hello"),
        CommandSpec("help", (Param("command", "name"),), "List commands, or explain one", "!/help(route-append)"),
        CommandSpec("set", (), "Set session settings", "!/set(project=myproject)", keyword_args=True),
        CommandSpec("unset", (), "Reset session settings to their defaults", "!/unset(project)", variadic=True),
        CommandSpec("backend", (Param("name", "name", True),), "Use this backend for the session", "!/backend(openai)"),
        CommandSpec("model", (Param("name", "target", True),), "Use this model for the session", "!/model(gpt-4)"),
        CommandSpec(
            "oneoff", (Param("target", "target", True),), "Send only the next request to backend:model",
            "!/oneoff(anthropic:claude-3)",
        ),
        CommandSpec(
            "interactive", (Param("enabled", "bool", False, True),), "Report command results with replies",
            "!/interactive(true)",
        ),
        CommandSpec(
            "temperature", (Param("value", "number", True, minimum=0, maximum=2),), "Set the sampling temperature",
            "!/temperature(0.7)",
        ),
        CommandSpec("pwd", (), "Show the session's project directory", "!/pwd"),
        CommandSpec("route-list", (), "List the session's routes and the file rules", "!/route-list"),
        CommandSpec("route-explain", (), "Show which rules decide this request, and why, and the plan they make",
                    "!/route-explain"),
        CommandSpec(
            "route-clear", (Param("model", "name", True),), "Remove the session route for a model",
            "!/route-clear(gpt-4)",
        ),
        CommandSpec(
            "route-append", (Param("model", "name", True), Param("target", "chain", True)),
            "Add fallback target(s) at the end of a model's route", "!/route-append(gpt-4, anthropic:claude-3)",
        ),
        CommandSpec(
            "route-prepend", (Param("model", "name", True), Param("target", "chain", True)),
            "Add target(s) at the front of a model's route", "!/route-prepend(gpt-4, openai:gpt-3.5-turbo)",
        ),
    )
}


# ---- session settings (!/set, !/unset) and request overrides (rule `set:`) ---------------------

SESSION_SETTINGS: dict[str, Param] = {
    p.name: p
    for p in (
        Param("project", "string", help="project name"),
        Param("project_dir", "string", help="project directory shown by !/pwd"),
        Param("backend", "name", help="backend for this session"),
        Param("model", "target", help="model for this session"),
        Param("temperature", "number", minimum=0, maximum=2),
        Param("top_p", "number", minimum=0, maximum=1),
        Param("max_tokens", "int", minimum=1),
        Param("interactive", "bool"),
        Param("loop_detection", "bool", help="text loop detection on/off"),
        Param("tool_call_repair", "bool", help="repair tool calls written as text"),
        Param("tool_call_loop_detection", "bool", help="tool-call loop detection on/off"),
        Param("cache", "bool", help="response cache on/off for this session (rules opt in)"),
    )
}

# Settings that are request parameters: a rule's `set:` may override these.
REQUEST_OVERRIDES: dict[str, Param] = {k: SESSION_SETTINGS[k] for k in ("temperature", "top_p", "max_tokens")}


# ---- facts usable in `when:` -------------------------------------------------------------------

FactType = Literal["string", "number", "bool", "time", "weekday"]


@dataclass(frozen=True, slots=True)
class FactSpec:
    name: str
    type: FactType
    summary: str
    takes_arg: bool = False


FACTS: dict[str, FactSpec] = {
    f.name: f
    for f in (
        FactSpec("model", "string", "model the client asked for (without a backend: prefix)"),
        FactSpec("backend", "string", "backend named by the client (backend:model), or the session's"),
        FactSpec("frontend", "string", "wire format of the request: openai, anthropic, gemini or responses"),
        FactSpec("caller", "string", "id of the caller's API key (never the key itself)"),
        FactSpec("tokens", "number", "estimated prompt tokens"),
        FactSpec("stream", "bool", "the client asked for a stream"),
        FactSpec("tools", "bool", "the request declares tools"),
        FactSpec("time", "time", "local time of day, compared with \"HH:MM\""),
        FactSpec("weekday", "weekday", "mon, tue, wed, thu, fri, sat or sun"),
        FactSpec("header", "string", "a request header: header(\"x-team\")", takes_arg=True),
        FactSpec("session", "string", "a session field: session.project, session.backend, ..."),
        FactSpec("context_window", "number",
                 "context window of the requested model in tokens, from the model catalogue (unknown: missing)"),
    )
}
SESSION_FACT_FIELDS = ("project", "project_dir", "backend", "model", "id")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


# ---- limits and post-processors ----------------------------------------------------------------

LIMIT_SCOPES = ("backend", "key", "session", "caller")
LIMITS: dict[str, str] = {
    "rpm": "requests per minute",
    "tpm": "tokens per minute (debited from real usage)",
    "concurrency": "requests in flight at once",
    "budget": "money spent per hour, day or month, in the currency of `prices` (from recorded cost)",
}
BUDGET_WINDOWS = ("hour", "day", "month")
BUDGET_DEFAULTS = {"per": "caller", "window": "day"}


# ---- group strategies and error classes --------------------------------------------------------

STRATEGIES: dict[str, str] = {
    "fastest": "lowest recent time to first byte (exponentially weighted average; at most 5% of requests explore)",
    "least_busy": "fewest requests in flight",
    "cheapest": "lowest price for the request's estimated tokens (`prices`; a member without a price counts as dearest)",
}
"""``name(a | b ...)`` groups: one member is picked per request by what the proxy observed; the
members not picked stay fallbacks in the strategy's order. ``(a | b)`` and ``(70% a | 30% b)``
are the equal and weighted groups."""

ERROR_CLASSES: dict[str, str] = {
    "context_window": "the provider said the prompt is too long for the model",
    "content_policy": "the provider refused the prompt or reply on content policy",
    "rate_limit": "every key of the target is rate limited",
    "timeout": "the target did not answer in time",
    "server_error": "the provider failed (5xx, overloaded, connection)",
    "auth": "the provider refused the key",
}
"""Keys of a rule's ``on:`` map: the class of the last failure picks the fallback."""


@dataclass(frozen=True, slots=True)
class ProcessorSpec:
    name: str
    params: tuple[Param, ...]
    summary: str
    guard: bool = True  # an agent guard (router/guards); False for the response cache

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)


POST_PROCESSORS: dict[str, ProcessorSpec] = {
    spec.name: spec
    for spec in (
        ProcessorSpec(
            "tool_call_repair",
            (Param("enabled", "bool", default=True), Param("buffer_cap_bytes", "int", minimum=256)),
            "turn tool calls written as text into real tool calls",
        ),
        ProcessorSpec(
            "loop_detection",
            (
                Param("enabled", "bool", default=True),
                Param("min_pattern_length", "int", minimum=1),
                Param("max_pattern_length", "int", minimum=1),
                Param("min_repetitions", "int", minimum=2),
            ),
            "cut a response that repeats itself",
        ),
        ProcessorSpec(
            "tool_call_loop_detection",
            (
                Param("enabled", "bool", default=True),
                Param("max_repeats", "int", minimum=2),
                Param("ttl_seconds", "int", minimum=1),
                Param("mode", "enum", choices=("break", "chance_then_block")),
            ),
            "stop an agent that repeats the same tool call",
        ),
        ProcessorSpec(
            "cache",
            (Param("enabled", "bool", default=True), Param("ttl", "duration", minimum=1),
             Param("shared", "bool", default=False, help="callers share entries (default: each caller its own)")),
            "answer a caller's identical requests from a bounded in-process cache for ttl (default 5m)",
            guard=False,
        ),
    )
}
