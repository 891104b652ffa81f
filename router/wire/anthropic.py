"""Anthropic Messages (``POST /v1/messages``), both directions.

Choices where Anthropic cannot express something canonical (or the other way round):

- **Tokens**: Anthropic's ``input_tokens`` excludes cached input, canonical ``prompt_tokens``
  includes it (as OpenAI does): decode adds ``cache_read_input_tokens`` and
  ``cache_creation_input_tokens``; encode subtracts ``cached_tokens``.
- **Finish reasons**: ``loop`` (the proxy cut a repeated-output loop) and ``error`` encode as
  ``end_turn``; ``content_filter`` as ``refusal``. ``stop_sequence``/``pause_turn`` decode as ``stop``,
  ``model_context_window_exceeded`` as ``length``.
- **Thinking** blocks keep their ``signature``. Unsigned (or text-less) thinking cannot be sent back
  to Anthropic, so ``encode_request`` drops such thinking parts. ``redacted_thinking`` has no
  canonical slot and is dropped.
- **Tool results** decode into ``tool`` messages (split out of the user turn, order kept); on encode
  they go back into ``user`` turns with ``tool_result`` blocks first, and consecutive same-role
  messages are merged (Anthropic requires alternation).
- **Images** in assistant turns or replies have no slot and are dropped; ``document`` blocks are
  accepted with a plain-text source (as text), a base64 or a URL one (as a ``FilePart``).
- **Files** (``FilePart``) encode as ``document`` blocks: PDFs as base64 or by URL (a URL whose
  extension says nothing is sent as a PDF: Anthropic fetches only PDFs), plain text as text; any
  other file, audio, or a provider file id is refused by name (Anthropic cannot read it).
- OpenAI's ``allowed_tools`` becomes the declared tools themselves: only the allowed ones are sent.
- Server tools (``{"type": "web_search_20250305", ...}``) and other fields without a canonical slot
  (``metadata``, ``top_k``, ``context_management``, a non-``enabled`` ``thinking``) are kept in
  ``extra["anthropic"]`` and passed on only to an Anthropic backend. ``cache_control`` is dropped.
- **Tool history without tools** (Codex's compaction request: ``tools: []`` and a history of calls)
  is refused by Anthropic, so ``encode_request`` then writes the calls and results as text.
- ``encode_request`` clamps ``temperature`` to 1, defaults ``max_tokens`` to 4096, and keeps a
  thinking budget valid (>= 1024 and < ``max_tokens``). It leaves out what Anthropic rejects:
  ``top_p`` when ``temperature`` is sent (newer models refuse both), ``temperature`` (unless 1) and a
  ``top_p`` below 0.95 with thinking, and thinking itself when ``tool_choice`` forces a tool.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from router.wire.canonical import (
    ChatRequest, ChatResponse, FilePart, FinishReason, ImagePart, Message, Part, StreamEnd, StreamError,
    StreamEvent, StreamStart, TextDelta, TextPart, ThinkingDelta, ThinkingPart, Tool, ToolCallDelta,
    ToolCallPart, ToolCallStart, ToolChoice, ToolResultPart, Usage,
)
from router.wire.codec import CodecError, ErrorReport, WireError
from router.wire import sse
from router.wire.common import (
    args_object, describe_file, dump_args, expect_object, fail, field_path, fill_tool_result_names,
    function_form, get_bool, get_int, get_list, get_num, get_obj, get_str, has_tool_history, leftover,
    lenient_int, merge_extra, new_id, nonempty_list, offered_tools, one_of, required_model, str_list,
    tool_history_as_text, url_media_type,
)

FORMAT = "anthropic"
DEFAULT_MAX_TOKENS = 4096
_MIN_THINKING = 1024
_BLOCKS = {"user": ("text", "image", "document", "tool_result"),
           "assistant": ("text", "thinking", "redacted_thinking", "tool_use")}
_CONSUMED = {"model", "messages", "system", "max_tokens", "stop_sequences", "stream", "temperature",
             "top_p", "tools", "tool_choice", "thinking"}
_FINISH_IN: dict[str, FinishReason] = {
    "end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop", "max_tokens": "length",
    "model_context_window_exceeded": "length", "tool_use": "tool_calls", "refusal": "content_filter",
}
_FINISH_OUT = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
               "content_filter": "refusal", "error": "end_turn", "loop": "end_turn"}
_ERROR_OUT = {
    "invalid_request": "invalid_request_error", "authentication": "authentication_error",
    "permission": "permission_error", "not_found": "not_found_error", "rate_limit": "rate_limit_error",
    "overloaded": "overloaded_error", "timeout": "api_error", "request_too_large": "request_too_large",
    "api_error": "api_error",
}
_ERROR_IN = {v: k for k, v in _ERROR_OUT.items() if k != "timeout"}


# --- requests -----------------------------------------------------------------------------------

def decode_request(body: Any, *, model: str | None = None, stream: bool | None = None) -> ChatRequest:
    """Client body -> ChatRequest; every malformed field is a CodecError naming it."""
    body = expect_object(body, "body")
    model = required_model(body, model)
    max_tokens = get_int(body, "max_tokens", required=True, minimum=1)
    raw_messages = nonempty_list(body, "messages", "message")
    messages: list[Message] = []
    mid_system: list[TextPart] = []
    for i, raw in enumerate(raw_messages):
        if isinstance(raw, dict) and raw.get("role") == "system":
            # Claude Code's mid-conversation system beta: no canonical slot mid-stream, so the
            # text joins the system prompt (what the OpenAI decoder does with system messages too).
            mid_system.extend(_decode_system_message(raw, f"messages[{i}]"))
            continue
        messages.extend(_decode_message(raw, f"messages[{i}]"))
    if not messages:
        fail("messages", "must contain at least one user or assistant message")
    fill_tool_result_names(messages)
    extra = leftover(body, _CONSUMED)
    tools: list[Tool] = []
    for i, raw in enumerate(get_list(body, "tools")):
        tool = _decode_tool(raw, f"tools[{i}]")
        if isinstance(tool, Tool):
            tools.append(tool)
        else:
            extra.setdefault("tools", []).append(tool)
    budget = _decode_thinking(body, extra)
    return ChatRequest(
        model=model, messages=messages, system=_decode_system(body.get("system")) + mid_system, tools=tools,
        tool_choice=_decode_tool_choice(get_obj(body, "tool_choice")),
        temperature=get_num(body, "temperature"), top_p=get_num(body, "top_p"), max_tokens=max_tokens,
        stop=str_list(body, "stop_sequences"),
        stream=stream if stream is not None else bool(get_bool(body, "stream")),
        thinking_budget=budget, extra={FORMAT: extra},
    )


def _decode_system(raw: Any) -> list[TextPart]:
    if raw is None:
        return []
    if isinstance(raw, str):
        return [TextPart(raw)] if raw else []
    if not isinstance(raw, list):
        fail("system", "expected a string or an array of text blocks")
    parts = []
    for i, block in enumerate(raw):
        p = f"system[{i}]"
        block = expect_object(block, p)
        one_of(get_str(block, "type", p, required=True), ("text",), f"{p}.type")
        parts.append(TextPart(get_str(block, "text", p, required=True) or ""))
    return parts


def _decode_system_message(raw: dict[str, Any], param: str) -> list[TextPart]:
    content = raw.get("content")
    if isinstance(content, str):
        return [TextPart(content)] if content else []
    if not isinstance(content, list):
        fail(f"{param}.content", "expected a string or an array of text blocks")
    parts = []
    for j, block in enumerate(content):
        p = field_path(f"{param}.content", j)
        block = expect_object(block, p)
        one_of(get_str(block, "type", p, required=True), ("text",), f"{p}.type")
        parts.append(TextPart(get_str(block, "text", p, required=True) or ""))
    return parts


def _decode_thinking(body: dict[str, Any], extra: dict[str, Any]) -> int | None:
    thinking = get_obj(body, "thinking")
    if thinking is None:
        return None
    kind = get_str(thinking, "type", "thinking", required=True)
    if kind != "enabled":
        extra["thinking"] = thinking  # disabled / adaptive: same-format backends get it verbatim
        return None
    return get_int(thinking, "budget_tokens", "thinking", required=True, minimum=1)


def _decode_message(raw: Any, param: str) -> list[Message]:
    raw = expect_object(raw, param)
    role = one_of(get_str(raw, "role", param, required=True), ("user", "assistant"), f"{param}.role")
    content = raw.get("content")
    if isinstance(content, str):
        return [Message(role, [TextPart(content)])]  # type: ignore[arg-type]
    if not isinstance(content, list):
        fail(f"{param}.content", "expected a string or an array of content blocks")
    out: list[Message] = []
    for j, block in enumerate(content):
        part = _decode_block(block, role or "user", field_path(f"{param}.content", j))
        if part is None:
            continue
        part_role = "tool" if isinstance(part, ToolResultPart) else role
        if out and out[-1].role == part_role:
            out[-1].parts.append(part)
        else:
            out.append(Message(part_role, [part]))  # type: ignore[arg-type]
    return out or [Message(role, [])]  # type: ignore[arg-type]


def _decode_image(block: dict[str, Any], p: str) -> ImagePart:
    source = get_obj(block, "source", p, required=True) or {}
    kind = one_of(get_str(source, "type", f"{p}.source", required=True), ("base64", "url"), f"{p}.source.type")
    if kind == "url":
        return ImagePart(url=get_str(source, "url", f"{p}.source", required=True))
    return ImagePart(data=get_str(source, "data", f"{p}.source", required=True),
                     media_type=get_str(source, "media_type", f"{p}.source", required=True))


def _decode_block(block: Any, role: str, p: str) -> Part | None:
    block = expect_object(block, p)
    kind = one_of(get_str(block, "type", p, required=True), _BLOCKS[role], f"{p}.type")
    if kind == "text":
        return TextPart(get_str(block, "text", p, required=True) or "")
    if kind == "image":
        return _decode_image(block, p)
    if kind == "document":
        source = get_obj(block, "source", p, required=True) or {}
        kind = one_of(get_str(source, "type", f"{p}.source", required=True), ("text", "base64", "url"),
                      f"{p}.source.type")
        if kind == "url":
            return FilePart(url=get_str(source, "url", f"{p}.source", required=True), filename=get_str(block, "title", p))
        data = get_str(source, "data", f"{p}.source", required=True) or ""
        if kind == "base64":
            return FilePart(data=data, media_type=get_str(source, "media_type", f"{p}.source", required=True),
                            filename=get_str(block, "title", p))
        return TextPart(data)
    if kind == "thinking":
        return ThinkingPart(get_str(block, "thinking", p, required=True) or "", get_str(block, "signature", p) or None)
    if kind == "redacted_thinking":
        return None
    if kind == "tool_use":
        return ToolCallPart(id=get_str(block, "id", p, required=True) or "",
                            name=get_str(block, "name", p, required=True) or "",
                            arguments=dump_args(get_obj(block, "input", p, required=True)))
    return _decode_tool_result(block, p)


def _decode_tool_result(block: dict[str, Any], p: str) -> ToolResultPart:
    raw = block.get("content")
    content: list[TextPart | ImagePart] = []
    if isinstance(raw, str):
        content.append(TextPart(raw))
    elif raw is not None:
        if not isinstance(raw, list):
            fail(f"{p}.content", "expected a string or an array of text/image blocks")
        for k, item in enumerate(raw):
            ip = f"{p}.content[{k}]"
            item = expect_object(item, ip)
            kind = one_of(get_str(item, "type", ip, required=True), ("text", "image"), f"{ip}.type")
            content.append(TextPart(get_str(item, "text", ip, required=True) or "") if kind == "text"
                           else _decode_image(item, ip))
    return ToolResultPart(tool_call_id=get_str(block, "tool_use_id", p, required=True) or "",
                          content=content, is_error=bool(get_bool(block, "is_error", p)))


def _decode_tool(raw: Any, p: str) -> Tool | dict[str, Any]:
    raw = expect_object(raw, p)
    kind = get_str(raw, "type", p)
    if kind not in (None, "custom"):
        return raw  # a server tool (web search, bash, ...): Anthropic-only, kept in extra
    name = get_str(raw, "name", p, required=True)
    if not name:
        fail(f"{p}.name", "must not be empty")
    return Tool(name=name, description=get_str(raw, "description", p) or "",
                parameters=get_obj(raw, "input_schema", p, required=True))


def _decode_tool_choice(raw: dict[str, Any] | None) -> ToolChoice | None:
    if raw is None:
        return None
    kind = one_of(get_str(raw, "type", "tool_choice", required=True), ("auto", "any", "tool", "none"),
                  "tool_choice.type")
    if kind == "tool":
        return ToolChoice("required", get_str(raw, "name", "tool_choice", required=True))
    return ToolChoice({"auto": "auto", "any": "required", "none": "none"}[kind or "auto"])  # type: ignore[arg-type]


def encode_request(req: ChatRequest) -> dict[str, Any]:
    """ChatRequest -> Anthropic body (for the Anthropic backend)."""
    extra = dict(req.extra.get(FORMAT, {}))
    messages = req.messages
    if not req.tools and not extra.get("tools") and has_tool_history(messages):
        messages = tool_history_as_text(messages)  # Anthropic refuses tool blocks without tools
    body: dict[str, Any] = {"model": req.model, "messages": _encode_messages(messages)}
    max_tokens = req.max_tokens or DEFAULT_MAX_TOKENS
    if req.system:
        body["system"] = [{"type": "text", "text": p.text} for p in req.system if p.text]
    thinking = None
    forced_tool = req.tool_choice is not None and req.tool_choice.mode == "required"
    if req.thinking_budget and not forced_tool:  # Anthropic rejects thinking with a forced tool
        if req.max_tokens is None:
            max_tokens = max(max_tokens, req.thinking_budget + DEFAULT_MAX_TOKENS)
        budget = min(max(req.thinking_budget, _MIN_THINKING), max_tokens - 1)
        if budget >= _MIN_THINKING:
            thinking = {"type": "enabled", "budget_tokens": budget}
            body["thinking"] = thinking
    body["max_tokens"] = max_tokens
    if req.temperature is not None and (thinking is None or req.temperature == 1):
        body["temperature"] = min(max(req.temperature, 0.0), 1.0)
    if req.top_p is not None and "temperature" not in body and (thinking is None or req.top_p >= 0.95):
        body["top_p"] = req.top_p
    if req.stop:
        body["stop_sequences"] = list(req.stop)
    if req.stream:
        body["stream"] = True
    tools = [_encode_tool(t) for t in offered_tools(req)] + list(extra.pop("tools", []))
    if tools:
        body["tools"] = tools
    if req.tool_choice is not None:
        body["tool_choice"] = _encode_tool_choice(req.tool_choice)
    return merge_extra(body, extra)


def _encode_messages(messages: list[Message]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for message in messages:
        role = "assistant" if message.role == "assistant" else "user"
        blocks = [b for b in (_encode_part(p, role) for p in message.parts) if b is not None]
        if not blocks:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    for message in out:  # tool_result blocks must open a user turn
        if message["role"] == "user":
            message["content"].sort(key=lambda b: b["type"] != "tool_result")
    return out


def _encode_image(image: ImagePart) -> dict[str, Any]:
    if image.data is not None:
        source = {"type": "base64", "media_type": image.media_type or "image/png", "data": image.data}
    else:
        source = {"type": "url", "url": image.url or ""}
    return {"type": "image", "source": source}


def _encode_file(part: FilePart) -> dict[str, Any]:
    if part.url and part.data is None and (url_media_type(part) or "application/pdf") == "application/pdf":
        return {"type": "document", "source": {"type": "url", "url": part.url}}
    if part.data is not None and part.media_type == "application/pdf":
        return {"type": "document", "source": {"type": "base64", "media_type": part.media_type, "data": part.data}}
    if part.data is not None and part.media_type == "text/plain":
        try:
            text = base64.b64decode(part.data, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            fail("messages", f"file {describe_file(part)!r} says text/plain but is not base64 UTF-8 text")
        return {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": text}}
    fail("messages", f"{'image' if part.image else 'file'} {describe_file(part)!r} "
         f"({part.media_type or url_media_type(part) or 'unknown type'}"
         f"{', a provider file id' if part.file_id else ''}{', by URL' if part.url else ''}) cannot be sent to "
         "Anthropic, which reads PDF and plain-text files given inline and PDFs by URL")


def _encode_part(part: Part, role: str) -> dict[str, Any] | None:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text} if part.text else None
    if isinstance(part, ImagePart):
        return _encode_image(part) if role == "user" else None
    if isinstance(part, FilePart):
        return _encode_file(part) if role == "user" else None
    if isinstance(part, ThinkingPart):
        if role != "assistant" or not part.signature or not part.text:
            return None  # the signature covers the text: without both Anthropic rejects the block
        return {"type": "thinking", "thinking": part.text, "signature": part.signature}
    if isinstance(part, ToolCallPart):
        if role != "assistant":
            return None
        return {"type": "tool_use", "id": part.id, "name": part.name, "input": args_object(part)}
    if role != "user" or not isinstance(part, ToolResultPart):
        return None
    return _encode_tool_result(part)


def _encode_tool_result(part: ToolResultPart) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": part.tool_call_id}
    items = [{"type": "text", "text": p.text} if isinstance(p, TextPart) else _encode_image(p)
             for p in part.content if not (isinstance(p, TextPart) and not p.text)]
    if len(items) == 1 and items[0]["type"] == "text":
        block["content"] = items[0]["text"]
    elif items:
        block["content"] = items
    if part.is_error:
        block["is_error"] = True
    return block


def _encode_tool(tool: Tool) -> dict[str, Any]:
    tool = function_form(tool)
    out: dict[str, Any] = {"name": tool.name}
    if tool.description:
        out["description"] = tool.description
    out["input_schema"] = tool.parameters if tool.parameters is not None else {"type": "object", "properties": {}}
    return out


def _encode_tool_choice(choice: ToolChoice) -> dict[str, Any]:
    if choice.name and choice.mode != "none":
        return {"type": "tool", "name": choice.name}
    return {"type": {"auto": "auto", "required": "any", "none": "none"}[choice.mode]}


# --- responses ----------------------------------------------------------------------------------

def decode_usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    cached = lenient_int(raw.get("cache_read_input_tokens"))
    prompt = lenient_int(raw.get("input_tokens")) + cached + lenient_int(raw.get("cache_creation_input_tokens"))
    return Usage(prompt_tokens=prompt, completion_tokens=lenient_int(raw.get("output_tokens")), cached_tokens=cached)


def encode_usage(usage: Usage) -> dict[str, Any]:
    return {"input_tokens": max(usage.prompt_tokens - usage.cached_tokens, 0),
            "output_tokens": usage.completion_tokens, "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": usage.cached_tokens}


def decode_response(body: Any) -> ChatResponse:
    """Backend reply -> ChatResponse (a malformed body is a CodecError; the connector makes it a 502)."""
    try:
        body = expect_object(body, "body")
        parts: list[Part] = []
        for j, block in enumerate(get_list(body, "content")):
            p = f"content[{j}]"
            block = expect_object(block, p)
            kind = get_str(block, "type", p, required=True)
            if kind in ("text", "thinking", "tool_use"):
                part = _decode_block(block, "assistant", p)
                if part is not None and not (isinstance(part, TextPart) and not part.text):
                    parts.append(part)
        finish = _FINISH_IN.get(str(body.get("stop_reason")), "stop")
        return ChatResponse(id=get_str(body, "id") or "", model=get_str(body, "model") or "", parts=parts,
                            finish_reason=finish, usage=decode_usage(body.get("usage")) or Usage())
    except CodecError as err:
        raise CodecError(err.param, f"backend returned a malformed Anthropic response: {err.message}") from None


def _encode_reply_part(part: Part) -> dict[str, Any] | None:
    if isinstance(part, ThinkingPart):
        return {"type": "thinking", "thinking": part.text, "signature": part.signature or ""}
    if isinstance(part, (TextPart, ToolCallPart)):
        return _encode_part(part, "assistant")
    return None


def encode_response(resp: ChatResponse) -> dict[str, Any]:
    content = [b for b in (_encode_reply_part(p) for p in resp.parts) if b is not None]
    return {"id": resp.id or new_id("msg_"), "type": "message", "role": "assistant", "model": resp.model,
            "content": content, "stop_reason": _FINISH_OUT[resp.finish_reason], "stop_sequence": None,
            "usage": encode_usage(resp.usage)}


def encode_error(err: ErrorReport) -> dict[str, Any]:
    return {"type": "error", "error": {"type": _ERROR_OUT.get(err.kind, "api_error"), "message": err.message}}


# --- streams ------------------------------------------------------------------------------------

def encoder_options(body: Any) -> dict[str, Any]:
    """Keyword arguments for :class:`StreamEncoder` from the request body: none in this format
    (the HTTP edge asks every codec, see ``openai.encoder_options``)."""
    return {}


class StreamEncoder:
    """Canonical events -> ``message_start`` / ``content_block_*`` / ``message_delta`` / ``message_stop``."""

    def __init__(self) -> None:
        self._next_index = 0
        self._open: tuple[str, int] | None = None  # (block kind, block index) of the open block
        self._tool_blocks: dict[int, int] = {}  # canonical tool index -> block index

    @staticmethod
    def _frame(data: dict[str, Any]) -> bytes:
        return sse.frame(data, event=data["type"])

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        index, self._open = self._open[1], None
        return self._frame({"type": "content_block_stop", "index": index})

    def _start(self, kind: str, block: dict[str, Any]) -> bytes:
        out = self._close()
        self._open = (kind, self._next_index)
        self._next_index += 1
        return out + self._frame({"type": "content_block_start", "index": self._open[1], "content_block": block})

    def _delta(self, index: int, delta: dict[str, Any]) -> bytes:
        return self._frame({"type": "content_block_delta", "index": index, "delta": delta})

    def encode(self, event: StreamEvent) -> bytes:
        if isinstance(event, StreamStart):
            usage = encode_usage(event.usage or Usage())
            message = {"id": event.id or new_id("msg_"), "type": "message", "role": "assistant", "content": [],
                       "model": event.model, "stop_reason": None, "stop_sequence": None, "usage": usage}
            return self._frame({"type": "message_start", "message": message})
        if isinstance(event, TextDelta):
            if not event.text:
                return b""
            out = b"" if self._open and self._open[0] == "text" else self._start("text", {"type": "text", "text": ""})
            return out + self._delta(self._open[1], {"type": "text_delta", "text": event.text})  # type: ignore[index]
        if isinstance(event, ThinkingDelta):
            return self._thinking(event)
        if isinstance(event, ToolCallStart):
            out = self._start("tool", {"type": "tool_use", "id": event.id, "name": event.name, "input": {}})
            self._tool_blocks[event.index] = self._open[1]  # type: ignore[index]
            return out
        if isinstance(event, ToolCallDelta):
            index = self._tool_blocks.get(event.index)
            if index is None or not event.arguments:
                return b""
            # A late delta for an earlier call keeps that call's block index (SDKs accumulate by index).
            return self._delta(index, {"type": "input_json_delta", "partial_json": event.arguments})
        if isinstance(event, StreamEnd):
            usage = encode_usage(event.usage or Usage())
            delta = {"type": "message_delta", "delta": {"stop_reason": _FINISH_OUT[event.finish_reason],
                                                         "stop_sequence": None}, "usage": usage}
            return self._close() + self._frame(delta) + self._frame({"type": "message_stop"})
        if isinstance(event, StreamError):
            return self._close() + self._frame(encode_error(WireError(500, event.message, event.kind)))
        return b""

    def _thinking(self, event: ThinkingDelta) -> bytes:
        if not event.text and not event.signature:
            return b""
        out = b""
        if not (self._open and self._open[0] == "thinking"):
            out = self._start("thinking", {"type": "thinking", "thinking": "", "signature": ""})
        index = self._open[1]  # type: ignore[index]
        if event.text:
            out += self._delta(index, {"type": "thinking_delta", "thinking": event.text})
        if event.signature:
            out += self._delta(index, {"type": "signature_delta", "signature": event.signature})
        return out


class StreamDecoder:
    """Anthropic event data objects (dispatching on their ``type``) -> canonical events."""

    def __init__(self) -> None:
        self._started = self._ended = False
        self._tool_of_block: dict[int, int] = {}
        self._usage = Usage()
        self._finish: FinishReason = "stop"

    def feed(self, data: Any) -> list[StreamEvent]:
        if self._ended or not isinstance(data, dict):
            return []
        kind = data.get("type")
        if kind == "error":
            self._ended = True
            error = data.get("error") if isinstance(data.get("error"), dict) else {}
            return [StreamError(str(error.get("message") or "backend error"),
                                _ERROR_IN.get(str(error.get("type")), "api_error"))]
        events: list[StreamEvent] = []
        if not self._started:
            self._started = True
            message = data.get("message") if isinstance(data.get("message"), dict) else {}
            self._usage = decode_usage(message.get("usage")) or Usage()
            events.append(StreamStart(id=str(message.get("id") or ""), model=str(message.get("model") or ""),
                                      usage=Usage(self._usage.prompt_tokens, 0, self._usage.cached_tokens)))
        if kind == "content_block_start":
            events.extend(self._block_start(data))
        elif kind == "content_block_delta":
            events.extend(self._block_delta(data))
        elif kind == "message_delta":
            self._message_delta(data)
        elif kind == "message_stop":
            self._ended = True
            events.append(StreamEnd(self._finish, self._usage))
        return events

    def _block_start(self, data: dict[str, Any]) -> list[StreamEvent]:
        block = data.get("content_block") if isinstance(data.get("content_block"), dict) else {}
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str) and block["text"]:
            return [TextDelta(block["text"])]
        if kind == "thinking":
            text, sig = block.get("thinking"), block.get("signature")
            if (isinstance(text, str) and text) or (isinstance(sig, str) and sig):
                return [ThinkingDelta(text if isinstance(text, str) else "", sig if isinstance(sig, str) and sig else None)]
        if kind == "tool_use":
            tool_index = len(self._tool_of_block)
            self._tool_of_block[lenient_int(data.get("index"))] = tool_index
            events: list[StreamEvent] = [ToolCallStart(tool_index, str(block.get("id") or new_id("toolu_")),
                                                       str(block.get("name") or ""))]
            if isinstance(block.get("input"), dict) and block["input"]:
                events.append(ToolCallDelta(tool_index, dump_args(block["input"])))
            return events
        return []

    def _block_delta(self, data: dict[str, Any]) -> list[StreamEvent]:
        delta = data.get("delta") if isinstance(data.get("delta"), dict) else {}
        kind = delta.get("type")
        value = {"text_delta": "text", "thinking_delta": "thinking", "signature_delta": "signature",
                 "input_json_delta": "partial_json"}.get(str(kind))
        text = delta.get(value) if value else None
        if not isinstance(text, str) or not text:
            return []
        if kind == "text_delta":
            return [TextDelta(text)]
        if kind == "thinking_delta":
            return [ThinkingDelta(text)]
        if kind == "signature_delta":
            return [ThinkingDelta("", text)]
        tool_index = self._tool_of_block.get(lenient_int(data.get("index")))
        return [] if tool_index is None else [ToolCallDelta(tool_index, text)]

    def _message_delta(self, data: dict[str, Any]) -> None:
        delta = data.get("delta") if isinstance(data.get("delta"), dict) else {}
        if delta.get("stop_reason"):
            self._finish = _FINISH_IN.get(str(delta["stop_reason"]), "stop")
        usage = data.get("usage")
        if isinstance(usage, dict):
            if "input_tokens" in usage or "cache_read_input_tokens" in usage:
                decoded = decode_usage(usage) or Usage()
                self._usage.prompt_tokens = decoded.prompt_tokens or self._usage.prompt_tokens
                self._usage.cached_tokens = decoded.cached_tokens or self._usage.cached_tokens
            self._usage.completion_tokens = lenient_int(usage.get("output_tokens"))

    def finish(self) -> list[StreamEvent]:
        """End of body: StreamEnd after ``message_stop``; a truncated stream becomes a StreamError."""
        if self._ended:
            return []
        self._ended = True
        events: list[StreamEvent] = [] if self._started else [StreamStart(id="", model="")]
        return events + [StreamError("backend stream ended before message_stop", "api_error")]
