"""The canonical chat model every wire format decodes into and encodes from.

Front ends decode a client's body into a :class:`ChatRequest`; backends encode it into a
provider's body; replies travel back as a :class:`ChatResponse` or as a sequence of
:class:`StreamEvent` objects. Each wire format is written once (``router/wire``) and used in both
directions, so OpenAI-in/Anthropic-out is just two codecs composed.

The model is deliberately a little richer than any single format (thinking parts, tool-call ids,
cached tokens) so that nothing a client sent is lost on the way through and a Responses-API front
end can be added later.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal, Union

Role = Literal["user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error", "loop"]


@dataclass(slots=True)
class TextPart:
    text: str
    type: Literal["text"] = "text"


@dataclass(slots=True)
class ImagePart:
    """An image given either inline (``data`` base64 + ``media_type``) or by ``url``."""

    url: str | None = None
    data: str | None = None
    media_type: str | None = None
    type: Literal["image"] = "image"


@dataclass(slots=True)
class FilePart:
    """A document or audio clip the user attached: inline (``data`` base64 + ``media_type``, e.g.
    ``application/pdf``, ``audio/wav``), by ``url`` (the Responses API's ``file_url``), or by a
    provider's file id (``file_id``: OpenAI's Files API, so only an OpenAI backend can read it;
    other encoders refuse it by name). ``image`` marks an image given by file id (a Responses
    ``input_image`` with ``file_id``), which has no :class:`ImagePart` form."""

    data: str | None = None
    media_type: str | None = None
    filename: str | None = None
    file_id: str | None = None
    url: str | None = None
    image: bool = False
    type: Literal["file"] = "file"


@dataclass(slots=True)
class ThinkingPart:
    """Model reasoning. ``signature`` is Anthropic's opaque token that must be echoed back.

    ``source`` is the same reasoning as the whole item of a format that carries reasoning as items
    (a Responses backend's ``reasoning`` item, its ``encrypted_content`` included): that format's
    codec writes the item back verbatim instead of ``text``; every other codec shows ``text``
    (the item's summary) and ignores it."""

    text: str
    signature: str | None = None
    source: OpaquePart | None = None
    type: Literal["thinking"] = "thinking"


@dataclass(slots=True)
class ToolCallPart:
    """A call the assistant makes. ``arguments`` is the JSON text exactly as produced; for a call
    of a freeform tool (``custom``, see :class:`CustomFormat`) it is the raw input text instead."""

    id: str
    name: str
    arguments: str = "{}"
    custom: bool = False
    type: Literal["tool_call"] = "tool_call"

    def parsed_arguments(self) -> Any:
        """Arguments as a JSON value; unparsable text is wrapped so no data is dropped."""
        try:
            return json.loads(self.arguments) if self.arguments.strip() else {}
        except json.JSONDecodeError:
            return {"_raw": self.arguments}


@dataclass(slots=True)
class ToolResultPart:
    """The result of a tool call, sent by the client. ``name`` is needed by Gemini."""

    tool_call_id: str
    content: list[TextPart | ImagePart] = field(default_factory=list)
    name: str | None = None
    is_error: bool = False
    type: Literal["tool_result"] = "tool_result"


@dataclass(slots=True)
class OpaquePart:
    """An item of one wire format that no other format can carry and the proxy need not read:
    Responses ``reasoning`` items with ``encrypted_content``, hosted-tool calls (``web_search_call``).
    The codec of ``format`` writes ``item`` back verbatim, in place; every other codec drops it
    (so a Responses client's reasoning reaches a Responses backend and nothing else)."""

    format: str
    item: dict[str, Any]
    type: Literal["opaque"] = "opaque"


Part = Union[TextPart, ImagePart, FilePart, ThinkingPart, ToolCallPart, ToolResultPart, OpaquePart]

# Coding agents put context of their own in separate text parts of the user's message (Claude
# Code's <system-reminder>, Gemini CLI's <session_context>). What the *user* typed is the rest.
CLIENT_INJECTED_PREFIXES = ("<system-reminder>", "<session_context>")


def is_client_injected(part: object) -> bool:
    return isinstance(part, TextPart) and part.text.lstrip().startswith(CLIENT_INJECTED_PREFIXES)


@dataclass(slots=True)
class Message:
    role: Role
    parts: list[Part] = field(default_factory=list)

    def text(self) -> str:
        """Concatenated text parts (commands, token estimates and echo use this)."""
        return "".join(p.text for p in self.parts if isinstance(p, TextPart))

    def typed_text(self) -> str:
        """The text the person typed: text parts minus client-injected context parts."""
        return "".join(p.text for p in self.parts if isinstance(p, TextPart) and not is_client_injected(p))


@dataclass(slots=True)
class CustomFormat:
    """The input format of a freeform tool: the model writes the tool's input as raw text, not as
    JSON arguments. ``syntax`` None means free text; otherwise the text must match ``definition``
    written in ``syntax`` (``"lark"`` grammars, ``"regex"``). OpenAI's Responses API calls these
    ``custom`` tools (Codex's ``apply_patch``), and so does OpenAI chat (``{"type": "custom"}``):
    any codec that reads such a tool puts it here.

    Formats without freeform tools get a function with one string argument ``input`` and the
    grammar in its description (:func:`router.wire.common.function_form`); a call of that function
    is turned back into a custom call on the way out (:mod:`router.wire.custom_tools`)."""

    syntax: str | None = None
    definition: str | None = None


@dataclass(slots=True)
class Tool:
    name: str
    description: str = ""
    parameters: dict[str, Any] | None = None  # JSON Schema of the arguments
    custom: CustomFormat | None = None  # set: a freeform tool (parameters unused)
    strict: bool | None = None  # OpenAI's strict schema adherence, when the client said


@dataclass(slots=True)
class ToolChoice:
    """``mode`` auto|none|required; ``name`` set forces that one tool. ``allowed`` (OpenAI's
    ``allowed_tools``) limits the tools the model may call to these names, ``mode`` applying
    among them; formats without the notion send only the allowed tools, which means the same."""

    mode: Literal["auto", "none", "required"] = "auto"
    name: str | None = None
    allowed: list[str] | None = None


@dataclass(slots=True)
class ChatRequest:
    model: str
    messages: list[Message]
    system: list[TextPart] = field(default_factory=list)
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolChoice | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    stream: bool = False
    # Thinking budget in tokens when the client asked for reasoning (Anthropic/Gemini), else None.
    thinking_budget: int | None = None
    # Fields of the source format with no canonical slot, keyed by format name
    # ("openai" / "anthropic" / "gemini"); a backend of the same format may pass them on.
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Bytes of the client's body this request was decoded from: size-proportional work on it
    # (command scan, token estimate, encoding for a provider) leaves the loop when it is large
    # (``wire/offload.py``). Not part of what the request means.
    size: int = field(default=0, compare=False)

    def last_user_message(self) -> Message | None:
        for message in reversed(self.messages):
            if message.role == "user":
                return message
        return None


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    estimated: bool = False  # True when the provider reported nothing and we counted ourselves

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(slots=True)
class ChatResponse:
    id: str
    model: str
    parts: list[Part] = field(default_factory=list)  # assistant content in order
    finish_reason: FinishReason = "stop"
    usage: Usage = field(default_factory=Usage)
    created: int = 0  # unix seconds

    def text(self) -> str:
        return "".join(p.text for p in self.parts if isinstance(p, TextPart))

    def tool_calls(self) -> list[ToolCallPart]:
        return [p for p in self.parts if isinstance(p, ToolCallPart)]


# ---------------------------------------------------------------------------------------------
# Stream events. A stream is: StreamStart, then any number of deltas, then exactly one StreamEnd
# (or a StreamError after which nothing follows). Tool-call deltas are addressed by ``index``,
# which counts tool calls within the response from 0.


@dataclass(slots=True)
class StreamStart:
    id: str
    model: str
    created: int = 0
    usage: Usage | None = None  # prompt tokens when known up front (Anthropic message_start)


@dataclass(slots=True)
class TextDelta:
    text: str


@dataclass(slots=True)
class ThinkingDelta:
    """A fragment of thinking. ``source`` (see :class:`ThinkingPart`) comes with the first delta
    of a reasoning item of a Responses backend (the item as announced, for its id) and with its
    last (the complete item): a Responses encoder opens and closes its item with them, a new
    ``source`` id starts a new thinking part; other encoders ignore it."""

    text: str = ""
    signature: str | None = None
    source: OpaquePart | None = None


@dataclass(slots=True)
class ToolCallStart:
    index: int
    id: str
    name: str
    custom: bool = False  # the deltas are raw input text of a freeform tool, not JSON


@dataclass(slots=True)
class OpaqueItem:
    """A whole :class:`OpaquePart` in a stream (a Responses backend's reasoning item)."""

    part: OpaquePart


@dataclass(slots=True)
class ToolCallDelta:
    index: int
    arguments: str  # a fragment of the JSON arguments text


@dataclass(slots=True)
class StreamEnd:
    finish_reason: FinishReason = "stop"
    usage: Usage | None = None


@dataclass(slots=True)
class StreamError:
    """Ends a stream that already started: encoders turn it into the format's error event."""

    message: str
    kind: str = "api_error"


StreamEvent = Union[StreamStart, TextDelta, ThinkingDelta, ToolCallStart, ToolCallDelta, OpaqueItem, StreamEnd,
                    StreamError]


def response_to_events(response: ChatResponse) -> list[StreamEvent]:
    """Replay a complete response as stream events (proxy replies, cache replay)."""
    events: list[StreamEvent] = [StreamStart(id=response.id, model=response.model, created=response.created)]
    tool_index = 0
    for part in response.parts:
        if isinstance(part, TextPart):
            events.append(TextDelta(part.text))
        elif isinstance(part, ThinkingPart):
            events.append(ThinkingDelta(part.text, part.signature, part.source))
        elif isinstance(part, ToolCallPart):
            events.append(ToolCallStart(tool_index, part.id, part.name, part.custom))
            events.append(ToolCallDelta(tool_index, part.arguments))
            tool_index += 1
        elif isinstance(part, OpaquePart):
            events.append(OpaqueItem(part))
    events.append(StreamEnd(response.finish_reason, response.usage))
    return events


class ResponseAccumulator:
    """Folds stream events back into a :class:`ChatResponse` (usage records, non-stream backends)."""

    def __init__(self) -> None:
        self.response = ChatResponse(id="", model="")
        self._text: list[str] = []
        self._thinking: list[ThinkingPart] = []  # one per thinking block (a new source id starts one)
        self._thinking_text: list[list[str]] = []
        self._tools: dict[int, ToolCallPart] = {}
        self._tool_args: dict[int, list[str]] = {}
        self._opaque: list[OpaquePart] = []
        self._order: list[tuple[str, int]] = []  # ("text"|"thinking"|"tool"|"opaque", index) first-seen order

    def feed(self, event: StreamEvent) -> None:
        r = self.response
        if isinstance(event, StreamStart):
            r.id, r.model, r.created = event.id, event.model, event.created
            if event.usage:
                r.usage = event.usage
        elif isinstance(event, TextDelta):
            if ("text", 0) not in self._order:
                self._order.append(("text", 0))
            self._text.append(event.text)
        elif isinstance(event, ThinkingDelta):
            current = self._thinking[-1] if self._thinking else None
            if current is None or (event.source is not None and current.source is not None
                                   and event.source.item.get("id") != current.source.item.get("id")):
                current = ThinkingPart("")
                self._order.append(("thinking", len(self._thinking)))
                self._thinking.append(current)
                self._thinking_text.append([])
            self._thinking_text[-1].append(event.text)
            if event.signature:
                current.signature = event.signature
            if event.source is not None:
                current.source = event.source
        elif isinstance(event, ToolCallStart):
            self._tools[event.index] = ToolCallPart(id=event.id, name=event.name, arguments="", custom=event.custom)
            self._tool_args[event.index] = []
            self._order.append(("tool", event.index))
        elif isinstance(event, ToolCallDelta):
            self._tool_args.setdefault(event.index, []).append(event.arguments)
        elif isinstance(event, OpaqueItem):
            self._order.append(("opaque", len(self._opaque)))
            self._opaque.append(event.part)
        elif isinstance(event, StreamEnd):
            r.finish_reason = event.finish_reason
            if event.usage:
                merged = Usage(
                    prompt_tokens=event.usage.prompt_tokens or r.usage.prompt_tokens,
                    completion_tokens=event.usage.completion_tokens,
                    cached_tokens=event.usage.cached_tokens or r.usage.cached_tokens,
                    estimated=event.usage.estimated,
                )
                r.usage = merged
        elif isinstance(event, StreamError):
            r.finish_reason = "error"

    def result(self) -> ChatResponse:
        parts: list[Part] = []
        for kind, index in self._order:
            if kind == "text":
                parts.append(TextPart("".join(self._text)))
            elif kind == "thinking":
                part = self._thinking[index]
                part.text = "".join(self._thinking_text[index])
                parts.append(part)
            elif kind == "opaque":
                parts.append(self._opaque[index])
            else:
                call = self._tools[index]
                call.arguments = "".join(self._tool_args.get(index, [])) or ("" if call.custom else "{}")
                parts.append(call)
        self.response.parts = parts
        return self.response
