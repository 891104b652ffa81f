"""OpenAI Responses API (``POST /v1/responses``), both directions: Codex CLI's only wire format.

Choices where the Responses API and the canonical model differ:

- **Input**: a string is one user message. ``system`` and ``developer`` messages (Codex sends its
  whole prompt as ``developer`` messages, not ``instructions``) join ``instructions`` in
  ``req.system``, in order, wherever they stand. Consecutive model-side items (assistant
  messages, ``function_call``, ``custom_tool_call``, ``reasoning``, hosted-tool calls) form one
  assistant turn; ``function_call_output`` / ``custom_tool_call_output`` items a ``tool`` turn.
  ``input_file`` parts (``file_data``, ``file_url``, ``file_id``) and ``input_image`` by ``file_id``
  are :class:`FilePart` s: a Responses backend gets them as sent, the other encoders send what
  their provider reads and refuse the rest by name (400 naming the file and the backend).
- **Reasoning** items with summary text are :class:`ThinkingPart` s whose text is the summary
  (parts joined by a blank line) and whose ``source`` is the whole item: other formats show the
  summary as thinking (Anthropic ``thinking`` blocks, Gemini thought parts, OpenAI chat
  ``reasoning_content``), while a Responses client or backend gets the item back verbatim,
  ``encrypted_content`` untouched. Items without summary text are kept whole as
  :class:`OpaquePart` (reaching a Responses backend as sent, dropped elsewhere). Thinking of
  another provider (an Anthropic signature, a Gemini thought signature) is sent to a Responses
  client as a reasoning item whose ``encrypted_content`` is ``lip1.`` + base64 of the text and
  signature; Codex echoes it back and it decodes into the same :class:`ThinkingPart`, so a
  signed thinking block survives the round trip through a client that stores nothing.
- **Custom tools** (freeform, ``apply_patch``) are canonical ``Tool.custom`` (a
  :class:`CustomFormat`); their calls are :class:`ToolCallPart` with ``custom=True`` and the raw
  input as ``arguments``. Formats without them get a function with one string argument ``input``.
- **Hosted tools** (``web_search``, ``tool_search``, ``file_search``, ``namespace``, ``mcp``...)
  and a ``tool_choice`` naming one are kept in ``extra["responses"]``: passed on to a Responses
  backend only, dropped towards the others. Hosted-tool call items and ``item_reference`` are
  :class:`OpaquePart` like reasoning.
- **Fields** the canonical model has no slot for (``store``, ``include``, ``reasoning``, ``text``,
  ``metadata``, ``prompt_cache_key``, ``parallel_tool_calls``, ``user``, Codex's
  ``client_metadata``...) stay in ``extra["responses"]`` for a Responses backend; ``reasoning.effort``
  is also mapped to a thinking budget (the OpenAI codec's table) for providers that have one.
  ``previous_response_id`` is resolved by the front end before decoding (``router/responses_store.py``).
- **Replies**: ``status`` is ``completed``, or ``incomplete`` (``max_output_tokens``,
  ``content_filter``) for ``length`` / ``content_filter``; ``loop`` and ``error`` are ``completed``.
  Item ids are derived from the response id and the item's position (a ``function_call`` from
  its ``call_id``), so the JSON reply and the stream name the same items.
- **Streams** emit the whole event sequence with ``sequence_number`` (``response.created`` first:
  the SDK's ``responses.stream()`` needs it; Codex reads items only from
  ``response.output_item.done``). A failure after the first byte is ``response.failed`` with the
  ``error.code`` Codex acts on (``context_length_exceeded``, ``insufficient_quota``,
  ``rate_limit_exceeded``, else ``server_error``), never a bare ``error`` event, which Codex ignores.
- From a Responses backend's stream, ``response.reasoning_summary_text.delta`` events are thinking
  deltas (the first carries the announced item, for its id; ``response.output_item.done`` sends
  the rest of the text with the complete item), so other clients see the summary as it streams
  and a Responses client gets the same item ids and the complete item verbatim.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
from typing import Any

from router.wire import sse
from router.wire.canonical import (
    ChatRequest, ChatResponse, CustomFormat, FilePart, FinishReason, ImagePart, Message, OpaqueItem, OpaquePart,
    Part,
    StreamEnd, StreamError, StreamEvent, StreamStart, TextDelta, TextPart, ThinkingDelta, ThinkingPart, Tool,
    ToolCallDelta, ToolCallPart, ToolCallStart, ToolChoice, ToolResultPart, Usage,
)
from router.wire.codec import CodecError, ErrorReport, WireError
from router.wire.common import (
    expect_object, fail, field_path, file_from_data, fill_tool_result_names, get_bool, get_int, get_list, get_num,
    get_obj, get_str, image_from_url, image_to_url, leftover, lenient_int, merge_extra, new_id, one_of,
    required_model,
)

FORMAT = "responses"
_ROLES = ("user", "assistant", "system", "developer")
_CONSUMED = {"model", "input", "instructions", "stream", "temperature", "top_p", "max_output_tokens", "tools",
             "tool_choice", "stream_options"}
_EFFORT_BUDGET = {"none": None, "minimal": 512, "low": 1024, "medium": 8192, "high": 24576, "xhigh": 32768,
                  "max": 32768}
_MODEL_SIDE = {"function_call", "custom_tool_call", "reasoning"}
_OUTPUTS = {"function_call_output", "custom_tool_call_output"}
# Items of hosted tools and references: kept whole for a Responses backend (OpaquePart).
_OPAQUE_ITEMS = {
    "item_reference", "web_search_call", "file_search_call", "computer_call", "local_shell_call", "shell_call",
    "apply_patch_call", "mcp_call", "mcp_list_tools", "mcp_approval_request", "image_generation_call",
    "code_interpreter_call", "tool_search_call", "compaction", "program",
}
_OPAQUE_OUTPUTS = {"computer_call_output", "local_shell_call_output", "shell_call_output",
                   "apply_patch_call_output", "mcp_approval_response", "tool_search_output", "program_output"}
_PLAIN_ID = re.compile(r"[A-Za-z0-9_.:-]{1,100}")
_THINKING_PREFIX = "lip1."  # our encrypted_content: base64 of {"t": text, "s": signature}
# kind -> (error.type, error.code), as OpenAI reports them.
_ERROR_OUT = {
    "invalid_request": ("invalid_request_error", None),
    "authentication": ("invalid_request_error", "invalid_api_key"),
    "permission": ("permission_error", None),
    "not_found": ("invalid_request_error", "not_found"),
    "previous_response_not_found": ("invalid_request_error", "previous_response_not_found"),
    "rate_limit": ("rate_limit_error", "rate_limit_exceeded"),
    "overloaded": ("server_error", "overloaded"),
    "timeout": ("server_error", "timeout"),
    "request_too_large": ("invalid_request_error", "request_too_large"),
    "api_error": ("server_error", "server_error"),
}
_FINISH_STATUS = {"length": ("incomplete", "max_output_tokens"), "content_filter": ("incomplete", "content_filter")}


def _now() -> int:
    """Unix seconds for ``created_at`` when the source had none (patched in golden tests)."""
    return int(time.time())


# --- requests -----------------------------------------------------------------------------------

def decode_request(body: Any, *, model: str | None = None, stream: bool | None = None) -> ChatRequest:
    """Client body -> ChatRequest; every malformed field is a CodecError naming it."""
    body = expect_object(body, "body")
    model = required_model(body, model)
    system: list[TextPart] = []
    instructions = get_str(body, "instructions")
    if instructions:
        system.append(TextPart(instructions))
    messages = _decode_input(body.get("input"), system)
    extra = leftover(body, _CONSUMED)
    tools: list[Tool] = []
    for i, raw in enumerate(get_list(body, "tools")):
        tool = _decode_tool(raw, f"tools[{i}]")
        if tool is None:
            extra.setdefault("tools", []).append(raw)  # hosted: a Responses backend runs it
        else:
            tools.append(tool)
    reasoning = get_obj(body, "reasoning")
    effort = one_of(get_str(reasoning, "effort", "reasoning"), tuple(_EFFORT_BUDGET), "reasoning.effort") \
        if reasoning is not None else None
    choice = _decode_tool_choice(body.get("tool_choice"), extra)
    return ChatRequest(
        model=model, messages=messages, system=system, tools=tools, tool_choice=choice,
        temperature=get_num(body, "temperature"), top_p=get_num(body, "top_p"),
        max_tokens=get_int(body, "max_output_tokens", minimum=1),
        stream=stream if stream is not None else bool(get_bool(body, "stream")),
        thinking_budget=_EFFORT_BUDGET.get(effort) if effort else None,
        extra={FORMAT: extra},
    )


def input_items(raw: Any) -> list[Any]:
    """``input`` as a list of items: a string is one user message (the front end uses this to
    join a stored conversation with a follow-up)."""
    if isinstance(raw, str):
        return [{"type": "message", "role": "user", "content": raw}]
    if raw is None:
        return []
    if not isinstance(raw, list):
        fail("input", "expected a string or an array of input items")
    return raw


def _decode_input(raw: Any, system: list[TextPart]) -> list[Message]:
    if raw is None:
        fail("input", "required field is missing")
    items = input_items(raw)
    if not items:
        fail("input", "must contain at least one input item")
    messages: list[Message] = []
    for i, item in enumerate(items):
        _decode_item(item, f"input[{i}]", system, messages)
    fill_tool_result_names(messages)
    return messages


def _add(messages: list[Message], role: str, part: Part) -> None:
    """``part`` onto the last message when it has ``role`` (assistant and tool turns gather items)."""
    if messages and messages[-1].role == role and role != "user":
        messages[-1].parts.append(part)
    else:
        messages.append(Message(role, [part]))  # type: ignore[arg-type]


def _decode_item(item: Any, p: str, system: list[TextPart], messages: list[Message]) -> None:
    item = expect_object(item, p)
    kind = get_str(item, "type", p)
    if kind is None and "role" in item:
        kind = "message"
    elif kind is None and "id" in item:
        kind = "item_reference"  # the description lets a reference leave its type out
    if kind == "message":
        role = one_of(get_str(item, "role", p, required=True), _ROLES, f"{p}.role")
        parts = _decode_content(item.get("content"), role or "user", f"{p}.content")
        if role in ("system", "developer"):
            system.extend(part for part in parts if isinstance(part, TextPart))
        elif role == "assistant":
            for part in parts:
                _add(messages, "assistant", part)
            if not parts:
                _add(messages, "assistant", TextPart(""))
        else:
            messages.append(Message("user", parts))
    elif kind == "function_call":
        _add(messages, "assistant", ToolCallPart(
            id=get_str(item, "call_id", p, required=True) or "", name=_name(item, p),
            arguments=get_str(item, "arguments", p) or "{}"))
    elif kind == "custom_tool_call":
        _add(messages, "assistant", ToolCallPart(
            id=get_str(item, "call_id", p, required=True) or "", name=_name(item, p),
            arguments=get_str(item, "input", p) or "", custom=True))
    elif kind in _OUTPUTS:
        _add(messages, "tool", ToolResultPart(get_str(item, "call_id", p, required=True) or "",
                                              _decode_output(item.get("output"), f"{p}.output")))
    elif kind == "reasoning":
        _add(messages, "assistant", _decode_reasoning(item, p))
    elif kind in _OPAQUE_ITEMS:
        _add(messages, "assistant", OpaquePart(FORMAT, item))
    elif kind in _OPAQUE_OUTPUTS:
        _add(messages, "tool", OpaquePart(FORMAT, item))
    else:
        fail(f"{p}.type", f"unknown input item type {kind!r}" if kind else "required field is missing")


def _name(item: dict[str, Any], p: str) -> str:
    name = get_str(item, "name", p, required=True)
    if not name:
        fail(f"{p}.name", "must not be empty")
    return name


def _decode_content(raw: Any, role: str, p: str) -> list[Part]:
    if isinstance(raw, str):
        return [TextPart(raw)] if raw or role == "user" else []
    if raw is None:
        fail(p, "required field is missing")
    if not isinstance(raw, list):
        fail(p, "expected a string or an array of content parts")
    parts: list[Part] = []
    for j, item in enumerate(raw):
        q = field_path(p, j)
        item = expect_object(item, q)
        kind = get_str(item, "type", q, required=True)
        if kind in ("input_text", "output_text", "text", "summary_text"):
            parts.append(TextPart(get_str(item, "text", q, required=True) or ""))
        elif kind == "refusal":
            parts.append(TextPart(get_str(item, "refusal", q, required=True) or ""))
        elif kind == "input_image":
            url, file_id = get_str(item, "image_url", q), get_str(item, "file_id", q)
            if url:
                parts.append(image_from_url(url))
            elif file_id:
                parts.append(FilePart(file_id=file_id, image=True))
            else:
                fail(f"{q}.image_url", "an input_image needs image_url or file_id")
        elif kind == "input_file":
            parts.append(_decode_file(item, q))
        else:
            fail(f"{q}.type", f"unknown content part type {kind!r}")
    return parts


def _decode_file(item: dict[str, Any], q: str) -> FilePart:
    """An ``input_file`` part: inline ``file_data`` (a data URL or bare base64), ``file_url`` or
    ``file_id``, first found in that order."""
    filename = get_str(item, "filename", q)
    data, url, file_id = get_str(item, "file_data", q), get_str(item, "file_url", q), get_str(item, "file_id", q)
    if data:
        return file_from_data(data, filename)
    if url:
        return FilePart(url=url, filename=filename)
    if file_id:
        return FilePart(file_id=file_id, filename=filename)
    fail(q, "an input_file needs file_data, file_url or file_id")


def _decode_output(raw: Any, p: str) -> list[TextPart | ImagePart]:
    """A tool output: a string, or a list of input_text / input_image parts."""
    if isinstance(raw, str):
        return [TextPart(raw)]
    if raw is None:
        fail(p, "required field is missing")
    parts = _decode_content(raw, "user", p)
    return [part for part in parts if isinstance(part, (TextPart, ImagePart))]


def _decode_reasoning(item: dict[str, Any], p: str) -> Part:
    """A reasoning item: our own (``lip1.``) thinking, thinking shown as its summary and kept whole
    (``source``), or, with no summary text, an opaque item."""
    encrypted = get_str(item, "encrypted_content", p)
    if encrypted and encrypted.startswith(_THINKING_PREFIX):
        thinking = _read_thinking(encrypted)
        if thinking is not None:
            return thinking
    summary = summary_text(item)
    if summary:
        return ThinkingPart(summary, source=OpaquePart(FORMAT, item))
    return OpaquePart(FORMAT, item)


def summary_text(item: dict[str, Any]) -> str:
    """The text of a reasoning item's summary parts, joined by a blank line ("" when none)."""
    summary = item.get("summary")
    texts = [part["text"] for part in summary if isinstance(part, dict) and isinstance(part.get("text"), str)
             and part["text"]] if isinstance(summary, list) else []
    return "\n\n".join(texts)


def _responses_source(part: ThinkingPart) -> dict[str, Any] | None:
    """The Responses item a thinking part came from, if it came from one."""
    return part.source.item if part.source is not None and part.source.format == FORMAT else None


def _read_thinking(encrypted: str) -> ThinkingPart | None:
    try:
        data = json.loads(base64.b64decode(encrypted[len(_THINKING_PREFIX):], validate=True))
    except (binascii.Error, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("t"), str) \
            or not isinstance(data.get("s"), (str, type(None))):
        return None
    return ThinkingPart(data["t"], data.get("s"))


def _write_thinking(part: ThinkingPart) -> str:
    raw = json.dumps({"t": part.text, "s": part.signature}, separators=(",", ":")).encode()
    return _THINKING_PREFIX + base64.b64encode(raw).decode("ascii")


def _decode_tool(raw: Any, p: str) -> Tool | None:
    """A function or custom tool; None for a hosted tool (kept for a Responses backend)."""
    raw = expect_object(raw, p)
    kind = get_str(raw, "type", p, required=True)
    if kind == "function":
        schema = get_obj(raw, "parameters", p)
        return Tool(name=_name(raw, p), description=get_str(raw, "description", p) or "",
                    parameters=schema, strict=get_bool(raw, "strict", p))
    if kind == "custom":
        fmt = get_obj(raw, "format", p) or {}
        fmt_kind = one_of(get_str(fmt, "type", f"{p}.format") or "text", ("text", "grammar"), f"{p}.format.type")
        custom = CustomFormat()
        if fmt_kind == "grammar":
            custom = CustomFormat(get_str(fmt, "syntax", f"{p}.format") or "lark",
                                  get_str(fmt, "definition", f"{p}.format", required=True))
        return Tool(name=_name(raw, p), description=get_str(raw, "description", p) or "", custom=custom)
    return None


def _decode_tool_choice(raw: Any, extra: dict[str, Any]) -> ToolChoice | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        return ToolChoice(one_of(raw, ("auto", "none", "required"), "tool_choice"))  # type: ignore[arg-type]
    raw = expect_object(raw, "tool_choice")
    kind = get_str(raw, "type", "tool_choice", required=True)
    if kind in ("function", "custom"):
        return ToolChoice("required", get_str(raw, "name", "tool_choice", required=True))
    extra["tool_choice"] = raw  # a hosted tool or allowed_tools: for a Responses backend
    return None


def encode_request(req: ChatRequest) -> dict[str, Any]:
    """ChatRequest -> Responses body (for a backend with ``api: responses``)."""
    extra = dict(req.extra.get(FORMAT, {}))
    body: dict[str, Any] = {"model": req.model}
    if req.system:
        body["instructions"] = "\n\n".join(p.text for p in req.system)
    items: list[dict[str, Any]] = []
    custom_ids = {p.id for m in req.messages for p in m.parts if isinstance(p, ToolCallPart) and p.custom}
    for message in req.messages:
        items.extend(_encode_message(message, custom_ids))
    body["input"] = items
    tools = [_encode_tool(t) for t in req.tools] + list(extra.pop("tools", []))
    if tools:
        body["tools"] = tools
    if req.tool_choice is not None:
        body["tool_choice"] = _encode_tool_choice(req.tool_choice)
    if req.temperature is not None:
        body["temperature"] = req.temperature
    if req.top_p is not None:
        body["top_p"] = req.top_p
    if req.max_tokens is not None:
        body["max_output_tokens"] = req.max_tokens
    if req.stream:
        body["stream"] = True
    return merge_extra(body, extra)


def _encode_message(message: Message, custom_ids: set[str]) -> list[dict[str, Any]]:
    """One canonical message -> input items (thinking of other providers is dropped: OpenAI
    cannot read it)."""
    if message.role == "user":
        content = _encode_user_content(message.parts)
        return [{"type": "message", "role": "user", "content": content}] if content else []
    out: list[dict[str, Any]] = []
    text: list[dict[str, Any]] = []

    def flush() -> None:
        if text:
            out.append({"type": "message", "role": "assistant", "content": list(text)})
            text.clear()

    for part in message.parts:
        if isinstance(part, TextPart):
            if part.text:
                text.append({"type": "output_text", "text": part.text})
            continue
        flush()
        if isinstance(part, ToolCallPart):
            out.append(_encode_call(part))
        elif isinstance(part, ToolResultPart):
            out.append(_encode_result(part, part.tool_call_id in custom_ids))
        elif isinstance(part, OpaquePart) and part.format == FORMAT:
            out.append(part.item)
        elif isinstance(part, ThinkingPart) and _responses_source(part) is not None:
            out.append(_responses_source(part))  # type: ignore[arg-type]
    flush()
    return out


def _encode_user_content(parts: list[Part]) -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, TextPart):
            content.append({"type": "input_text", "text": part.text})
        elif isinstance(part, ImagePart):
            content.append({"type": "input_image", "image_url": image_to_url(part)})
        elif isinstance(part, FilePart):
            content.append(_encode_file(part))
    return content


def _encode_file(part: FilePart) -> dict[str, Any]:
    if part.image:
        return {"type": "input_image", "file_id": part.file_id, "detail": "auto"}
    out: dict[str, Any] = {"type": "input_file"}
    if part.data is not None:
        out["file_data"] = f"data:{part.media_type};base64,{part.data}" if part.media_type else part.data
    elif part.url:
        out["file_url"] = part.url
    elif part.file_id:
        out["file_id"] = part.file_id
    if part.filename:
        out["filename"] = part.filename
    return out


def _encode_call(part: ToolCallPart) -> dict[str, Any]:
    if part.custom:
        return {"type": "custom_tool_call", "call_id": part.id, "name": part.name, "input": part.arguments}
    return {"type": "function_call", "call_id": part.id, "name": part.name, "arguments": part.arguments}


def _encode_result(part: ToolResultPart, custom: bool) -> dict[str, Any]:
    texts = [p for p in part.content if isinstance(p, TextPart)]
    if len(part.content) == len(texts):
        output: Any = "".join(p.text for p in texts)
    else:
        output = _encode_user_content(list(part.content))
    return {"type": "custom_tool_call_output" if custom else "function_call_output", "call_id": part.tool_call_id,
            "output": output}


def _encode_tool(tool: Tool) -> dict[str, Any]:
    if tool.custom is not None:
        out: dict[str, Any] = {"type": "custom", "name": tool.name}
        if tool.description:
            out["description"] = tool.description
        if tool.custom.syntax or tool.custom.definition:
            out["format"] = {"type": "grammar", "syntax": tool.custom.syntax or "lark",
                             "definition": tool.custom.definition or ""}
        else:
            out["format"] = {"type": "text"}
        return out
    out = {"type": "function", "name": tool.name}
    if tool.description:
        out["description"] = tool.description
    out["parameters"] = tool.parameters if tool.parameters is not None else {"type": "object", "properties": {}}
    if tool.strict is not None:
        out["strict"] = tool.strict
    return out


def _encode_tool_choice(choice: ToolChoice) -> Any:
    if choice.name:
        return {"type": "function", "name": choice.name}
    return choice.mode


# --- responses ----------------------------------------------------------------------------------

def response_id(source: str) -> str:
    """The Responses id of a reply: the provider's own when it is short and plain (a store key
    and a header value), else ``resp_`` and a digest of it, else a new id."""
    if _PLAIN_ID.fullmatch(source):
        return source
    if source:
        return "resp_" + hashlib.sha256(source.encode()).hexdigest()[:32]
    return _new_response_id()


def _new_response_id() -> str:
    """A fresh id for a reply whose source had none (patched in golden tests)."""
    return new_id("resp_")


def _item_id(prefix: str, rid: str, n: int) -> str:
    return f"{prefix}_{rid.removeprefix('resp_')}_{n}"


def _call_item_id(part: ToolCallPart) -> str:
    return ("ctc_" if part.custom else "fc_") + part.id.removeprefix("call_")


def encode_usage(usage: Usage) -> dict[str, Any]:
    return {"input_tokens": usage.prompt_tokens, "input_tokens_details": {"cached_tokens": usage.cached_tokens,
                                                                                  "cache_write_tokens": 0},
            "output_tokens": usage.completion_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": usage.total_tokens}


def decode_usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    details = raw.get("input_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return Usage(prompt_tokens=lenient_int(raw.get("input_tokens")),
                 completion_tokens=lenient_int(raw.get("output_tokens")), cached_tokens=lenient_int(cached))


def _message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {"type": "message", "id": item_id, "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}] if text or
            status == "completed" else []}


def _call_item(part: ToolCallPart, status: str = "completed") -> dict[str, Any]:
    if part.custom:
        return {"type": "custom_tool_call", "id": _call_item_id(part), "status": status, "call_id": part.id,
                "name": part.name, "input": part.arguments}
    return {"type": "function_call", "id": _call_item_id(part), "status": status, "call_id": part.id,
            "name": part.name, "arguments": part.arguments}


def _reasoning_item(item_id: str, part: ThinkingPart) -> dict[str, Any]:
    summary = [{"type": "summary_text", "text": part.text}] if part.text else []
    return {"type": "reasoning", "id": item_id, "summary": summary,
            "encrypted_content": _write_thinking(part) if part.signature else None}


def output_items(parts: list[Part], rid: str) -> list[dict[str, Any]]:
    """Canonical reply parts -> Responses output items (text runs become one message each)."""
    out: list[dict[str, Any]] = []
    text: list[str] = []

    def flush() -> None:
        if text:
            out.append(_message_item(_item_id("msg", rid, len(out)), "".join(text)))
            text.clear()

    for part in parts:
        if isinstance(part, TextPart):
            text.append(part.text)
            continue
        flush()
        if isinstance(part, ToolCallPart):
            out.append(_call_item(part))
        elif isinstance(part, ThinkingPart):
            source = _responses_source(part)
            out.append(source if source is not None else _reasoning_item(_item_id("rs", rid, len(out)), part))
        elif isinstance(part, OpaquePart) and part.format == FORMAT:
            out.append(part.item)
    flush()
    return out


def _status(finish: FinishReason) -> tuple[str, dict[str, Any] | None]:
    status, reason = _FINISH_STATUS.get(finish, ("completed", None))
    return status, ({"reason": reason} if reason else None)


def _response_object(rid: str, model: str, created: int, status: str, output: list[dict[str, Any]],
                     usage: Usage | None, incomplete: dict[str, Any] | None = None,
                     error: dict[str, Any] | None = None) -> dict[str, Any]:
    # The request's settings the description requires in every Response are given as null (the
    # canonical reply does not carry them; a client that needs them has its own request).
    body = {"id": rid, "object": "response", "created_at": created, "status": status, "error": error,
            "incomplete_details": incomplete, "instructions": None, "metadata": None, "model": model,
            "output": output, "parallel_tool_calls": True, "temperature": None, "tool_choice": "auto",
            "tools": [], "top_p": None}
    if usage is not None:  # not nullable in the description: absent until it is known
        body["usage"] = encode_usage(usage)
    return body


def encode_response(resp: ChatResponse) -> dict[str, Any]:
    rid = response_id(resp.id)
    status, incomplete = _status(resp.finish_reason)
    return _response_object(rid, resp.model, resp.created or _now(), status, output_items(resp.parts, rid),
                            resp.usage, incomplete)


def decode_response(body: Any) -> ChatResponse:
    """Backend reply -> ChatResponse (a malformed body is a CodecError; the connector makes it a 502)."""
    try:
        body = expect_object(body, "body")
        parts = _decode_output_items(get_list(body, "output", required=True), "output")
        status = get_str(body, "status") or "completed"
        details = body.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, dict) else None
        finish: FinishReason = "stop"
        if any(isinstance(p, ToolCallPart) for p in parts):
            finish = "tool_calls"
        if status == "incomplete":
            finish = "content_filter" if reason == "content_filter" else "length"
        elif status == "failed":
            finish = "error"
        return ChatResponse(id=get_str(body, "id") or "", model=get_str(body, "model") or "", parts=parts,
                            finish_reason=finish, usage=decode_usage(body.get("usage")) or Usage(),
                            created=lenient_int(body.get("created_at")))
    except CodecError as err:
        raise CodecError(err.param, f"backend returned a malformed Responses reply: {err.message}") from None


def _decode_output_items(items: list[Any], p: str) -> list[Part]:
    parts: list[Part] = []
    for i, item in enumerate(items):
        q = field_path(p, i)
        item = expect_object(item, q)
        kind = get_str(item, "type", q, required=True)
        if kind == "message":
            text = "".join(part.text for part in _decode_content(item.get("content") or [], "assistant",
                                                                  f"{q}.content") if isinstance(part, TextPart))
            if text:
                parts.append(TextPart(text))
        elif kind == "function_call":
            parts.append(ToolCallPart(get_str(item, "call_id", q, required=True) or "", _name(item, q),
                                      get_str(item, "arguments", q) or "{}"))
        elif kind == "custom_tool_call":
            parts.append(ToolCallPart(get_str(item, "call_id", q, required=True) or "", _name(item, q),
                                      get_str(item, "input", q) or "", custom=True))
        elif kind == "reasoning":
            parts.append(_decode_reasoning(item, q))
        else:
            parts.append(OpaquePart(FORMAT, item))
    return parts


def _failure_code(kind: str, message: str) -> str:
    """The ``error.code`` of a ``response.failed`` event: the codes Codex acts on."""
    lowered = message.lower()
    if "context_length" in lowered or "context window" in lowered or "maximum context" in lowered \
            or "prompt is too long" in lowered or "too many tokens" in lowered:
        return "context_length_exceeded"
    if "insufficient_quota" in lowered or "quota" in lowered or "credit balance" in lowered:
        return "insufficient_quota"
    if kind == "rate_limit":
        return "rate_limit_exceeded"
    if kind == "invalid_request":
        return "invalid_request_error"
    return "server_error"


def encode_error(err: ErrorReport) -> dict[str, Any]:
    kind, code = _ERROR_OUT.get(err.kind, _ERROR_OUT["api_error"])
    return {"error": {"message": err.message, "type": kind, "param": err.param, "code": code}}


def _error_kind(code: str) -> str:
    for name, (_type, known) in _ERROR_OUT.items():
        if known == code:
            return name
    if code in ("context_length_exceeded", "invalid_request_error", "invalid_prompt"):
        return "invalid_request"
    if code == "insufficient_quota":
        return "rate_limit"
    return "api_error"


# --- streams ------------------------------------------------------------------------------------

def encoder_options(body: Any) -> dict[str, Any]:
    """Keyword arguments for :class:`StreamEncoder` from the request body: none (the front end
    adds its own ``on_complete`` to keep the reply for ``previous_response_id``)."""
    return {}


class StreamEncoder:
    """Canonical events -> the Responses event sequence, each with its ``sequence_number``.

    ``on_complete`` (optional) gets the final response object when the stream ends well (the front
    end stores it for ``previous_response_id``)."""

    def __init__(self, on_complete: Any = None) -> None:
        self._seq = 0
        self._rid, self._model, self._created = "", "", 0
        self._output: list[dict[str, Any]] = []
        self._open: tuple[str, int] | None = None  # ("message"|"reasoning"|"tool", output_index)
        self._text: list[str] = []
        self._thinking = ThinkingPart("")
        self._reasoning_item: dict[str, Any] | None = None  # the complete item of a Responses backend
        self._tools: dict[int, tuple[int, ToolCallPart]] = {}  # tool index -> (output index, call)
        self._on_complete = on_complete

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return sse.frame(data, event=kind)

    def _response(self, status: str, usage: Usage | None = None, incomplete: dict[str, Any] | None = None,
                  error: dict[str, Any] | None = None) -> dict[str, Any]:
        return _response_object(self._rid, self._model, self._created, status, list(self._output), usage,
                                incomplete, error)

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        kind, index = self._open
        self._open = None
        if kind == "message":
            text = "".join(self._text)
            self._text = []
            item = _message_item(self._output[index]["id"], text)
            part = item["content"][0]
            out = self._event("response.output_text.done", item_id=item["id"], output_index=index,
                              content_index=0, text=text, logprobs=[])
            out += self._event("response.content_part.done", item_id=item["id"], output_index=index,
                               content_index=0, part=part)
        elif kind == "reasoning":
            item = self._reasoning_item or _reasoning_item(self._output[index]["id"], self._thinking)
            self._reasoning_item = None
            out = b""
            item_id = self._output[index]["id"]
            if self._thinking.text:
                part = {"type": "summary_text", "text": self._thinking.text}
                out += self._event("response.reasoning_summary_text.done", item_id=item_id,
                                   output_index=index, summary_index=0, text=self._thinking.text)
                out += self._event("response.reasoning_summary_part.done", item_id=item_id,
                                   output_index=index, summary_index=0, part=part)
            self._thinking = ThinkingPart("")
        else:
            call = next(c for i, c in self._tools.values() if i == index)
            item = _call_item(call)
            if call.custom:
                out = self._event("response.custom_tool_call_input.done", item_id=item["id"], output_index=index,
                                  input=call.arguments)
            else:
                out = self._event("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                                  name=call.name, arguments=call.arguments)
        self._output[index] = item
        return out + self._event("response.output_item.done", output_index=index, item=item)

    def _open_item(self, kind: str, item: dict[str, Any]) -> bytes:
        out = self._close()
        index = len(self._output)
        self._output.append(item)
        self._open = (kind, index)
        return out + self._event("response.output_item.added", output_index=index, item=item)

    def encode(self, event: StreamEvent) -> bytes:
        if isinstance(event, StreamStart):
            self._rid, self._model = response_id(event.id), event.model
            self._created = event.created or _now()
            return self._event("response.created", response=self._response("in_progress")) + \
                self._event("response.in_progress", response=self._response("in_progress"))
        if isinstance(event, TextDelta):
            if not event.text:
                return b""
            out = b""
            if self._open is None or self._open[0] != "message":
                item_id = _item_id("msg", self._rid, len(self._output))
                out = self._open_item("message", _message_item(item_id, "", "in_progress"))
                out += self._event("response.content_part.added", item_id=item_id, output_index=self._open[1],
                                   content_index=0, part={"type": "output_text", "text": "", "annotations": [],
                                                          "logprobs": []})
            self._text.append(event.text)
            index = self._open[1]  # type: ignore[index]
            return out + self._event("response.output_text.delta", item_id=self._output[index]["id"],
                                     output_index=index, content_index=0, delta=event.text, logprobs=[])
        if isinstance(event, ThinkingDelta):
            return self._reasoning(event)
        if isinstance(event, ToolCallStart):
            call = ToolCallPart(event.id, event.name, "", custom=event.custom)
            out = self._open_item("tool", _call_item(call, "in_progress"))
            self._tools[event.index] = (self._open[1], call)  # type: ignore[index]
            return out
        if isinstance(event, ToolCallDelta):
            entry = self._tools.get(event.index)
            if entry is None or not event.arguments or self._open != ("tool", entry[0]):
                return b""  # a late fragment for a call already closed cannot be added to it
            index, call = entry
            call.arguments += event.arguments
            kind = "response.custom_tool_call_input.delta" if call.custom else "response.function_call_arguments.delta"
            return self._event(kind, item_id=self._output[index]["id"], output_index=index, delta=event.arguments)
        if isinstance(event, OpaqueItem):
            if event.part.format != FORMAT:
                return b""
            out = self._close()
            index = len(self._output)
            self._output.append(event.part.item)
            return out + self._event("response.output_item.added", output_index=index, item=event.part.item) + \
                self._event("response.output_item.done", output_index=index, item=event.part.item)
        if isinstance(event, StreamEnd):
            out = self._close()
            for _index, call in self._tools.values():
                if not call.custom and not call.arguments:
                    call.arguments = "{}"
            status, incomplete = _status(event.finish_reason)
            final = self._response(status, event.usage or Usage(), incomplete)
            if self._on_complete is not None:
                self._on_complete(final)
            kind = "response.completed" if status == "completed" else "response.incomplete"
            return out + self._event(kind, response=final)
        if isinstance(event, StreamError):
            error = {"code": _failure_code(event.kind, event.message), "message": event.message}
            return self._close() + self._event("response.failed", response=self._response("failed", error=error))
        return b""

    def _reasoning(self, event: ThinkingDelta) -> bytes:
        source = event.source.item if event.source is not None and event.source.format == FORMAT else None
        if not event.text and not event.signature and source is None:
            return b""
        out = b""
        open_id = self._output[self._open[1]]["id"] if self._open is not None and self._open[0] == "reasoning" \
            else None
        source_id = source.get("id") if source is not None and isinstance(source.get("id"), str) else None
        if open_id is None or (source_id is not None and source_id != open_id):
            item_id = source_id or _item_id("rs", self._rid, len(self._output))
            out = self._open_item("reasoning", {"type": "reasoning", "id": item_id, "summary": []})
        index = self._open[1]  # type: ignore[index]
        if event.text:
            if not self._thinking.text:  # the item's first text opens its summary part
                out += self._event("response.reasoning_summary_part.added", item_id=self._output[index]["id"],
                                   output_index=index, summary_index=0, part={"type": "summary_text", "text": ""})
            self._thinking.text += event.text
            out += self._event("response.reasoning_summary_text.delta", item_id=self._output[index]["id"],
                               output_index=index, summary_index=0, delta=event.text)
        if event.signature:
            self._thinking.signature = event.signature
        if source is not None:
            self._reasoning_item = source  # written verbatim when the item closes
        return out


def _lenient_text(part: Any) -> str:
    """The text of an output content part of a provider's stream, or "" for anything odd."""
    if not isinstance(part, dict):
        return ""
    text = part.get("text") if part.get("text") is not None else part.get("refusal")
    return text if isinstance(text, str) else ""


class StreamDecoder:
    """A Responses backend's event data objects (dispatching on ``type``) -> canonical events."""

    def __init__(self) -> None:
        self._started = self._ended = False
        self._tools: dict[int, int] = {}  # output index -> tool index
        self._sent: dict[int, int] = {}  # output index -> characters of text / arguments already sent
        self._calls = False
        self._announced: dict[int, dict[str, Any]] = {}  # output index -> reasoning item not yet streamed
        self._summary_index: dict[int, int] = {}  # output index -> summary part being streamed

    def feed(self, data: Any) -> list[StreamEvent]:
        if self._ended or not isinstance(data, dict):
            return []
        kind = data.get("type")
        events: list[StreamEvent] = []
        if not self._started:
            self._started = True
            response = data.get("response") if isinstance(data.get("response"), dict) else {}
            events.append(StreamStart(id=str(response.get("id") or ""), model=str(response.get("model") or ""),
                                      created=lenient_int(response.get("created_at"))))
        index = lenient_int(data.get("output_index"))
        if kind == "response.output_text.delta" and isinstance(data.get("delta"), str):
            self._sent[index] = self._sent.get(index, 0) + len(data["delta"])
            events.append(TextDelta(data["delta"]))
        elif kind == "response.output_item.added":
            events.extend(self._added(index, data.get("item")))
        elif kind == "response.reasoning_summary_text.delta" and isinstance(data.get("delta"), str):
            events.extend(self._summary_delta(index, lenient_int(data.get("summary_index")), data["delta"]))
        elif kind in ("response.function_call_arguments.delta", "response.custom_tool_call_input.delta"):
            if index in self._tools and isinstance(data.get("delta"), str):
                self._sent[index] = self._sent.get(index, 0) + len(data["delta"])
                events.append(ToolCallDelta(self._tools[index], data["delta"]))
        elif kind == "response.output_item.done":
            events.extend(self._done(index, data.get("item")))
        elif kind in ("response.completed", "response.incomplete"):
            self._ended = True
            response = data.get("response") if isinstance(data.get("response"), dict) else {}
            details = response.get("incomplete_details")
            reason = details.get("reason") if isinstance(details, dict) else None
            finish: FinishReason = "tool_calls" if self._calls else "stop"
            if kind == "response.incomplete":
                finish = "content_filter" if reason == "content_filter" else "length"
            events.append(StreamEnd(finish, decode_usage(response.get("usage"))))
        elif kind in ("response.failed", "error"):
            self._ended = True
            response = data.get("response") if isinstance(data.get("response"), dict) else {}
            error = response.get("error") if kind == "response.failed" else data
            error = error if isinstance(error, dict) else {}
            events.append(StreamError(str(error.get("message") or "backend error"),
                                      _error_kind(str(error.get("code") or ""))))
        return events

    def _summary_delta(self, index: int, summary_index: int, delta: str) -> list[StreamEvent]:
        """Summary text as thinking: parts after the first are set off by a blank line; the first
        delta of an item carries the item as announced (its id) for a Responses encoder."""
        if not delta:
            return []
        sent = self._sent.get(index, 0)
        if sent and summary_index != self._summary_index.get(index, summary_index):
            delta = "\n\n" + delta
        self._summary_index[index] = summary_index
        self._sent[index] = sent + len(delta)
        announced = self._announced.pop(index, None)
        return [ThinkingDelta(delta, source=OpaquePart(FORMAT, announced) if announced is not None else None)]

    def _added(self, index: int, item: Any) -> list[StreamEvent]:
        if isinstance(item, dict) and item.get("type") == "reasoning":
            self._announced[index] = item
            return []
        if not isinstance(item, dict) or item.get("type") not in ("function_call", "custom_tool_call"):
            return []
        self._calls = True
        self._tools[index] = len(self._tools)
        return [ToolCallStart(self._tools[index], str(item.get("call_id") or new_id("call_")),
                              str(item.get("name") or ""), custom=item.get("type") == "custom_tool_call")]

    def _done(self, index: int, item: Any) -> list[StreamEvent]:
        """The whole item: what its deltas did not already carry (servers may send no deltas)."""
        if not isinstance(item, dict):
            return []
        kind = item.get("type")
        if kind == "message":
            content = item.get("content") if isinstance(item.get("content"), list) else []
            text = "".join(_lenient_text(c) for c in content)
            rest = text[self._sent.get(index, 0):]
            return [TextDelta(rest)] if rest else []
        if kind in ("function_call", "custom_tool_call"):
            events = [] if index in self._tools else self._added(index, item)
            whole = item.get("arguments" if kind == "function_call" else "input")
            rest = whole[self._sent.get(index, 0):] if isinstance(whole, str) else ""
            return events + ([ToolCallDelta(self._tools[index], rest)] if rest else [])
        if kind == "reasoning":
            self._announced.pop(index, None)
            part = _decode_reasoning(item, "item") if isinstance(item.get("encrypted_content"), (str, type(None))) \
                else OpaquePart(FORMAT, item)
            sent = self._sent.get(index, 0)
            if isinstance(part, ThinkingPart):  # the rest of the text its summary deltas did not carry,
                # with the complete item (it replaces the one announced with the first delta)
                return [ThinkingDelta(part.text[sent:], part.signature, OpaquePart(FORMAT, item))]
            if sent:  # summary text was streamed, the finished item has none: close it with the item
                return [ThinkingDelta("", source=OpaquePart(FORMAT, item))]
            return [OpaqueItem(part)]  # type: ignore[arg-type]
        return [OpaqueItem(OpaquePart(FORMAT, item))]

    def finish(self) -> list[StreamEvent]:
        """End of the backend stream: an error when it ended before a terminal event."""
        if self._ended:
            return []
        self._ended = True
        events: list[StreamEvent] = [] if self._started else [StreamStart(id="", model="")]
        return events + [StreamError("the Responses stream ended before response.completed", "api_error")]
