"""OpenAI Chat Completions (``POST /v1/chat/completions``), both directions.

Choices where OpenAI cannot express something canonical:

- **Thinking** has no slot in OpenAI's Chat Completions. Replies carry it in the non-standard
  ``reasoning_content`` field (message and stream delta) that DeepSeek, vLLM and the chat UIs
  built on them read; SDKs keep unknown fields. Requests to a provider never carry it (DeepSeek
  refuses ``reasoning_content`` in input). When decoding a backend reply, ``reasoning_content`` /
  ``reasoning`` (OpenRouter) are read into thinking so nothing the backend gave is lost.
- **System** text goes to ``req.system``; on encode it is one ``system`` message joined by blank lines.
- **Finish reasons**: ``loop`` (the proxy cut a repeated-output loop) and ``error`` encode as
  ``"stop"`` because OpenAI's enum has nothing better; ``function_call`` decodes as ``tool_calls``.
- **Tool results**: ``is_error`` has no slot and is dropped; images in a tool result (allowed by
  Anthropic) are sent in a ``user`` message right after the tool messages.
- **Images in replies** and in assistant history have no slot and are dropped.
- ``reasoning_effort`` is kept as-is in ``extra`` and also mapped to ``thinking_budget``
  (low 1024, medium 8192, high 24576) for other formats; a budget is never turned into
  ``reasoning_effort`` because non-reasoning models reject the field.
- ``max_completion_tokens`` is used on encode when the client sent it, otherwise ``max_tokens``.
- **Legacy functions** (``role: "function"`` messages, an assistant's ``function_call``; deprecated
  but still in OpenAI's API description) decode as tool calls and results: a call gets the id
  ``call_fn<i>_<name>`` from its message index, and a function message answers the latest
  unanswered call of its name. They encode in today's ``tool_calls``/``tool`` form.
- **Files and audio** (``file`` and ``input_audio`` content parts) decode as ``FilePart``; the
  other encoders send what their provider can read and refuse the rest by name.
- ``tool_choice: {"type": "allowed_tools"}`` decodes as ``ToolChoice.allowed``.
- **Custom (freeform) tools** (``tools[].type: "custom"``, ``tool_calls[].type: "custom"``, a
  ``custom`` named tool choice) decode into ``Tool.custom`` and custom ``ToolCallPart`` s, and a
  client's custom calls are encoded back as ``type: "custom"`` (streamed: ``custom.input``
  fragments). Towards a provider they go in function form (``common.function_form``), which
  every OpenAI-compatible server takes; dispatch turns the calls back.

Streams end with ``finish_reason`` on the last choice chunk, then (when usage is known) a usage
chunk with empty ``choices``, then ``data: [DONE]``. ``StreamDecoder.finish()`` must be called on
``[DONE]`` (or end of body): OpenAI has no end event inside the JSON.
"""

from __future__ import annotations

import time
from typing import Any

from router.wire.canonical import (
    ChatRequest, ChatResponse, CustomFormat, FilePart, FinishReason, ImagePart, Message, Part, StreamEnd, StreamError,
    StreamEvent, StreamStart, TextDelta, TextPart, ThinkingDelta, ThinkingPart, Tool, ToolCallDelta,
    ToolCallPart, ToolCallStart, ToolChoice, ToolResultPart, Usage,
)
from router.wire.codec import CodecError, ErrorReport, WireError
from router.wire import fastjson, sse
from router.wire.common import (
    call_arguments, describe_file, dump_args, expect_object, fail, field_path, file_from_data, fill_tool_result_names,
    function_form, get_bool, get_int, get_list, MAX_MODEL_CHARS, nonempty_list, required_model,
    get_num, get_obj, get_str, image_from_url, image_to_url, leftover, lenient_int, merge_extra, new_id, one_of,
    str_list,
)

FORMAT = "openai"
_ROLES = ("system", "developer", "user", "assistant", "tool", "function")
_CONTENT_TYPES = {
    "system": ("text",), "developer": ("text",), "user": ("text", "image_url", "input_audio", "file"),
    "assistant": ("text", "refusal"), "tool": ("text",), "function": ("text",),
}
_AUDIO_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg"}
_AUDIO_FORMATS = {media: name for name, media in _AUDIO_TYPES.items()}
_CONSUMED = {"model", "messages", "stream", "stream_options", "temperature", "top_p", "max_tokens",
             "stop", "tools", "tool_choice"}
_EFFORT_BUDGET = {"none": None, "minimal": 512, "low": 1024, "medium": 8192, "high": 24576, "xhigh": 32768,
                 "max": 65536}
_FINISH_IN: dict[str, FinishReason] = {
    "stop": "stop", "length": "length", "tool_calls": "tool_calls", "function_call": "tool_calls",
    "content_filter": "content_filter", "error": "error",
}
_FINISH_OUT = {"stop": "stop", "length": "length", "tool_calls": "tool_calls",
               "content_filter": "content_filter", "error": "stop", "loop": "stop"}
# kind -> (error.type, error.code); OpenAI itself reports a bad key as invalid_request_error.
_ERROR_OUT = {
    "invalid_request": ("invalid_request_error", None),
    "authentication": ("invalid_request_error", "invalid_api_key"),
    "permission": ("permission_error", None),
    "not_found": ("invalid_request_error", "not_found"),
    "rate_limit": ("rate_limit_error", "rate_limit_exceeded"),
    "overloaded": ("server_error", "overloaded"),
    "timeout": ("server_error", "timeout"),
    "request_too_large": ("invalid_request_error", "request_too_large"),
    "api_error": ("server_error", None),
}


def _now() -> int:
    """Unix seconds for ``created`` when the source format had none (patched in golden tests)."""
    return int(time.time())


# --- requests -----------------------------------------------------------------------------------

_SIMPLE_KEYS = frozenset({"model", "messages", "stream", "stream_options", "temperature", "top_p", "max_tokens"})


def _number(value: Any) -> bool:
    return (type(value) is int or type(value) is float) and value == value


def _decode_simple(body: Any, model: str | None, stream: bool | None) -> ChatRequest | None:
    """The common request (text messages, a few scalar settings) decoded without the general
    checks; None for anything else, which the general path decodes (or rejects) as always.
    It must give exactly what the general path gives (property-tested)."""
    if type(body) is not dict or not body.keys() <= _SIMPLE_KEYS:
        return None
    model = model or body.get("model")
    raw_messages = body.get("messages")
    if type(model) is not str or not model or len(model) > MAX_MODEL_CHARS or type(raw_messages) is not list \
            or not raw_messages:
        return None
    system: list[TextPart] = []
    messages: list[Message] = []
    for raw in raw_messages:
        if type(raw) is not dict or len(raw) != 2:
            return None
        role, content = raw.get("role"), raw.get("content")
        if type(content) is not str:
            return None
        if role == "user":
            messages.append(Message("user", [TextPart(content)]))
        elif role == "assistant":
            messages.append(Message("assistant", [TextPart(content)] if content else []))
        elif role == "system" or role == "developer":
            system.append(TextPart(content))
        else:
            return None
    flag = body.get("stream")
    temperature, top_p, max_tokens = body.get("temperature"), body.get("top_p"), body.get("max_tokens")
    if (flag is not None and type(flag) is not bool) \
            or (temperature is not None and not _number(temperature)) \
            or (top_p is not None and not _number(top_p)) \
            or (max_tokens is not None and (type(max_tokens) is not int or max_tokens < 1)):
        return None
    return ChatRequest(
        model=model, messages=messages, system=system, tools=[], tool_choice=None,
        temperature=None if temperature is None else float(temperature),
        top_p=None if top_p is None else float(top_p), max_tokens=max_tokens, stop=[],
        stream=stream if stream is not None else bool(flag), thinking_budget=None, extra={FORMAT: {}},
    )


def decode_request(body: Any, *, model: str | None = None, stream: bool | None = None) -> ChatRequest:
    """Client body -> ChatRequest; every malformed field is a CodecError naming it."""
    simple = _decode_simple(body, model, stream)
    if simple is not None:
        return simple
    return _decode_general(body, model, stream)


def _decode_general(body: Any, model: str | None, stream: bool | None) -> ChatRequest:
    body = expect_object(body, "body")
    model = required_model(body, model)
    raw_messages = nonempty_list(body, "messages", "message")
    system: list[TextPart] = []
    messages: list[Message] = []
    functions: dict[str, list[str]] = {}  # legacy function name -> ids of calls not yet answered
    for i, raw in enumerate(raw_messages):
        _decode_message(raw, f"messages[{i}]", system, messages, functions)
    fill_tool_result_names(messages)
    effort = one_of(get_str(body, "reasoning_effort"), tuple(_EFFORT_BUDGET), "reasoning_effort")
    max_tokens = get_int(body, "max_completion_tokens", minimum=1)
    if max_tokens is None:
        max_tokens = get_int(body, "max_tokens", minimum=1)
    stream_flag = get_bool(body, "stream")
    return ChatRequest(
        model=model,
        messages=messages,
        system=system,
        tools=[_decode_tool(t, f"tools[{i}]") for i, t in enumerate(get_list(body, "tools"))],
        tool_choice=_decode_tool_choice(body.get("tool_choice")),
        temperature=get_num(body, "temperature"),
        top_p=get_num(body, "top_p"),
        max_tokens=max_tokens,
        stop=str_list(body, "stop"),
        stream=stream if stream is not None else bool(stream_flag),
        thinking_budget=_EFFORT_BUDGET.get(effort) if effort else None,
        extra={FORMAT: leftover(body, _CONSUMED)},
    )


def _content_items(raw: Any, param: str) -> list[Any]:
    """Content is a string (one text part), an array of parts, or null (no parts)."""
    if raw is None:
        return []
    if isinstance(raw, str):
        return [{"type": "text", "text": raw}]
    if not isinstance(raw, list):
        fail(param, "expected a string, an array of content parts or null")
    return raw


def _decode_parts(raw: Any, role: str, param: str) -> list[Part]:
    if type(raw) is str:  # the common case, and one that needs no checks
        return [TextPart(raw)]
    parts: list[Part] = []
    for j, item in enumerate(_content_items(raw, param)):
        p = field_path(param, j)
        item = expect_object(item, p)
        kind = one_of(get_str(item, "type", p, required=True), _CONTENT_TYPES[role], f"{p}.type")
        if kind == "text":
            parts.append(TextPart(get_str(item, "text", p, required=True) or ""))
        elif kind == "refusal":
            parts.append(TextPart(get_str(item, "refusal", p, required=True) or ""))
        elif kind == "input_audio":
            audio = get_obj(item, "input_audio", p, required=True) or {}
            fmt = one_of(get_str(audio, "format", f"{p}.input_audio", required=True), tuple(_AUDIO_TYPES),
                         f"{p}.input_audio.format")
            parts.append(FilePart(data=get_str(audio, "data", f"{p}.input_audio", required=True) or "",
                                  media_type=_AUDIO_TYPES[fmt or "wav"]))
        elif kind == "file":
            parts.append(_decode_file(get_obj(item, "file", p, required=True) or {}, f"{p}.file"))
        else:
            image = item.get("image_url")
            url = image if isinstance(image, str) else get_str(
                expect_object(image, f"{p}.image_url"), "url", f"{p}.image_url", required=True)
            parts.append(image_from_url(url or ""))
    return parts


def _decode_file(raw: dict[str, Any], param: str) -> FilePart:
    filename = get_str(raw, "filename", param)
    data, file_id = get_str(raw, "file_data", param), get_str(raw, "file_id", param)
    if data:
        return file_from_data(data, filename)
    if file_id:
        return FilePart(file_id=file_id, filename=filename)
    fail(param, "needs file_data or file_id")


def _decode_message(raw: Any, param: str, system: list[TextPart], out: list[Message],
                    functions: dict[str, list[str]]) -> None:
    raw = expect_object(raw, param)
    role = one_of(get_str(raw, "role", param, required=True), _ROLES, f"{param}.role")
    if role in ("system", "developer"):
        system.extend(p for p in _decode_parts(raw.get("content"), role, f"{param}.content")
                      if isinstance(p, TextPart))
    elif role == "user":
        if raw.get("content") is None:
            fail(f"{param}.content", "required field is missing")
        out.append(Message("user", _decode_parts(raw["content"], role, f"{param}.content")))
    elif role == "assistant":
        parts = [p for p in _decode_parts(raw.get("content"), role, f"{param}.content")
                 if not (isinstance(p, TextPart) and p.text == "")]
        for k, call in enumerate(get_list(raw, "tool_calls", param)):
            parts.append(_decode_tool_call(call, f"{param}.tool_calls[{k}]"))
        legacy = get_obj(raw, "function_call", param)
        if legacy is not None:
            name = get_str(legacy, "name", f"{param}.function_call", required=True) or ""
            call = ToolCallPart(id=f"call_fn{len(out)}_{name}", name=name,
                                arguments=_arguments(legacy.get("arguments")))
            functions.setdefault(name, []).append(call.id)
            parts.append(call)
        out.append(Message("assistant", parts))
    elif role == "function":
        name = get_str(raw, "name", param, required=True) or ""
        pending = functions.get(name)
        call_id = pending.pop(0) if pending else f"call_fn{len(out)}_{name}"
        text = [p for p in _decode_parts(raw.get("content"), role, f"{param}.content") if isinstance(p, TextPart)]
        out.append(Message("tool", [ToolResultPart(call_id, text, name=name)]))
    else:
        call_id = get_str(raw, "tool_call_id", param, required=True) or ""
        content = _decode_parts(raw.get("content"), role, f"{param}.content")
        text = [p for p in content if isinstance(p, TextPart)]
        out.append(Message("tool", [ToolResultPart(call_id, list(text))]))


def _decode_tool_call(raw: Any, param: str) -> ToolCallPart:
    raw = expect_object(raw, param)
    if one_of(get_str(raw, "type", param), ("function", "custom"), f"{param}.type") == "custom":
        custom = get_obj(raw, "custom", param, required=True) or {}
        return ToolCallPart(id=get_str(raw, "id", param, required=True) or "",
                            name=get_str(custom, "name", f"{param}.custom", required=True) or "",
                            arguments=get_str(custom, "input", f"{param}.custom", required=True) or "",
                            custom=True)
    fn = get_obj(raw, "function", param, required=True) or {}
    return ToolCallPart(
        id=get_str(raw, "id", param, required=True) or "",
        name=get_str(fn, "name", f"{param}.function", required=True) or "",
        arguments=_arguments(fn.get("arguments")),
    )


def _arguments(args: Any) -> str:
    if args is not None and not isinstance(args, str):
        args = dump_args(args)  # some clients send an object; keep its meaning
    return args or "{}"


def _decode_tool(raw: Any, param: str) -> Tool:
    raw = expect_object(raw, param)
    if one_of(get_str(raw, "type", param, required=True), ("function", "custom"), f"{param}.type") == "custom":
        return _decode_custom_tool(get_obj(raw, "custom", param, required=True) or {}, f"{param}.custom")
    fn = get_obj(raw, "function", param, required=True) or {}
    name = get_str(fn, "name", f"{param}.function", required=True)
    if not name:
        fail(f"{param}.function.name", "must not be empty")
    return Tool(name=name, description=get_str(fn, "description", f"{param}.function") or "",
                parameters=get_obj(fn, "parameters", f"{param}.function"))


def _decode_custom_tool(raw: dict[str, Any], param: str) -> Tool:
    name = get_str(raw, "name", param, required=True)
    if not name:
        fail(f"{param}.name", "must not be empty")
    form = get_obj(raw, "format", param) or {"type": "text"}
    if one_of(get_str(form, "type", f"{param}.format", required=True), ("text", "grammar"),
              f"{param}.format.type") == "text":
        custom = CustomFormat()
    else:
        grammar = get_obj(form, "grammar", f"{param}.format", required=True) or {}
        custom = CustomFormat(
            syntax=one_of(get_str(grammar, "syntax", f"{param}.format.grammar", required=True), ("lark", "regex"),
                          f"{param}.format.grammar.syntax"),
            definition=get_str(grammar, "definition", f"{param}.format.grammar", required=True))
    return Tool(name=name, description=get_str(raw, "description", param) or "", custom=custom)


def _decode_tool_choice(raw: Any) -> ToolChoice | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        return ToolChoice(one_of(raw, ("auto", "none", "required"), "tool_choice"))  # type: ignore[arg-type]
    raw = expect_object(raw, "tool_choice")
    kind = one_of(get_str(raw, "type", "tool_choice", required=True), ("function", "custom", "allowed_tools"),
                  "tool_choice.type")
    if kind == "allowed_tools":
        spec = get_obj(raw, "allowed_tools", "tool_choice", required=True) or {}
        mode = one_of(get_str(spec, "mode", "tool_choice.allowed_tools", required=True), ("auto", "required"),
                      "tool_choice.allowed_tools.mode")
        names: list[str] = []
        for i, tool in enumerate(get_list(spec, "tools", "tool_choice.allowed_tools")):
            p = f"tool_choice.allowed_tools.tools[{i}]"
            tool = expect_object(tool, p)
            named = get_obj(tool, "function", p) or get_obj(tool, "custom", p)
            name = get_str(named, "name", p) if named is not None else get_str(tool, "name", p)
            if not name:
                fail(p, "expected a tool like {\"type\": \"function\", \"function\": {\"name\": ...}}")
            names.append(name)
        return ToolChoice(mode, allowed=names)  # type: ignore[arg-type]
    fn = get_obj(raw, kind, "tool_choice", required=True) or {}
    return ToolChoice("required", get_str(fn, "name", f"tool_choice.{kind}", required=True))


def encode_request(req: ChatRequest) -> dict[str, Any]:
    """ChatRequest -> OpenAI body (for OpenAI-compatible backends)."""
    extra = req.extra.get(FORMAT)
    extra = dict(extra) if extra else {}
    messages: list[dict[str, Any]] = []
    if req.system:
        messages.append({"role": "system", "content": "\n\n".join(p.text for p in req.system)})
    for message in req.messages:
        messages.extend(_encode_message(message))
    body: dict[str, Any] = {"model": req.model, "messages": messages}
    if req.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    if req.temperature is not None:
        body["temperature"] = req.temperature
    if req.top_p is not None:
        body["top_p"] = req.top_p
    if req.max_tokens is not None:
        body["max_completion_tokens" if "max_completion_tokens" in extra else "max_tokens"] = req.max_tokens
    extra.pop("max_completion_tokens", None)
    if req.stop:
        body["stop"] = list(req.stop)
    if req.tools:
        body["tools"] = [_encode_tool(t) for t in req.tools]
    if req.tool_choice is not None:
        body["tool_choice"] = _encode_tool_choice(req.tool_choice)
    return merge_extra(body, extra) if extra else body


def _encode_user_content(parts: list[Part]) -> str | list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, TextPart):
            items.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            items.append({"type": "image_url", "image_url": {"url": image_to_url(part)}})
        elif isinstance(part, FilePart):
            items.append(_encode_file(part))
    if len(items) == 1 and items[0]["type"] == "text":
        return items[0]["text"]
    return items


def _encode_message(message: Message) -> list[dict[str, Any]]:
    parts = message.parts
    if len(parts) == 1 and type(parts[0]) is TextPart:  # one text part: most turns
        return [{"role": "assistant" if message.role == "assistant" else "user", "content": parts[0].text}]
    return _encode_message_general(message)


def _encode_message_general(message: Message) -> list[dict[str, Any]]:
    if message.role == "assistant":
        text = "".join(p.text for p in message.parts if isinstance(p, TextPart))
        calls = [_encode_tool_call(p) for p in message.parts if isinstance(p, ToolCallPart)]
        out: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None}
        if calls:
            out["tool_calls"] = calls
        return [out]
    results = [p for p in message.parts if isinstance(p, ToolResultPart)]
    rest = [p for p in message.parts if isinstance(p, (TextPart, ImagePart, FilePart))]
    encoded: list[dict[str, Any]] = []
    images: list[Part] = []
    for result in results:
        texts = [p.text for p in result.content if isinstance(p, TextPart)]
        images.extend(p for p in result.content if isinstance(p, ImagePart))
        content: Any = texts[0] if len(texts) == 1 else [{"type": "text", "text": t} for t in texts]
        encoded.append({"role": "tool", "tool_call_id": result.tool_call_id, "content": content})
    if images or rest:
        encoded.append({"role": "user", "content": _encode_user_content(images + rest)})
    return encoded


def _encode_file(part: FilePart) -> dict[str, Any]:
    if part.image:
        fail("messages", f"image {describe_file(part)!r} is given by file id, which Chat Completions cannot "
             "reference (image_url takes a URL or a data URL)")
    if part.url and part.data is None:
        fail("messages", f"file {describe_file(part)!r} is given by URL, which Chat Completions cannot "
             "reference (a file part takes file_data or file_id)")
    audio = _AUDIO_FORMATS.get(part.media_type or "")
    if audio and part.data is not None:
        return {"type": "input_audio", "input_audio": {"data": part.data, "format": audio}}
    file: dict[str, Any] = {}
    if part.data is not None:
        file["file_data"] = f"data:{part.media_type};base64,{part.data}" if part.media_type else part.data
    elif part.file_id:
        file["file_id"] = part.file_id
    if part.filename:
        file["filename"] = part.filename
    return {"type": "file", "file": file}


def _encode_tool_call(call: ToolCallPart) -> dict[str, Any]:
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call_arguments(call)}}


def _encode_reply_call(call: ToolCallPart) -> dict[str, Any]:
    """A call in a reply to the client: a custom call as the client declared it."""
    if call.custom:
        return {"id": call.id, "type": "custom", "custom": {"name": call.name, "input": call.arguments}}
    return _encode_tool_call(call)


def _encode_tool(tool: Tool) -> dict[str, Any]:
    tool = function_form(tool)
    fn: dict[str, Any] = {"name": tool.name}
    if tool.description:
        fn["description"] = tool.description
    fn["parameters"] = tool.parameters if tool.parameters is not None else {"type": "object", "properties": {}}
    return {"type": "function", "function": fn}


def _encode_tool_choice(choice: ToolChoice) -> Any:
    if choice.allowed is not None:
        return {"type": "allowed_tools", "allowed_tools": {
            "mode": "required" if choice.mode == "required" else "auto",
            "tools": [{"type": "function", "function": {"name": name}} for name in choice.allowed]}}
    if choice.name:
        return {"type": "function", "function": {"name": choice.name}}
    return choice.mode


# --- responses ----------------------------------------------------------------------------------

def _backend_error(err: CodecError) -> CodecError:
    return CodecError(err.param, f"backend returned a malformed OpenAI response: {err.message}")


def decode_usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    details = raw.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return Usage(prompt_tokens=lenient_int(raw.get("prompt_tokens")),
                 completion_tokens=lenient_int(raw.get("completion_tokens")), cached_tokens=lenient_int(cached))


def encode_usage(usage: Usage) -> dict[str, Any]:
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
            "prompt_tokens_details": {"cached_tokens": usage.cached_tokens}}


def _decode_simple_response(body: Any) -> ChatResponse | None:
    """A plain text reply decoded without the general checks; None for anything else (tool calls,
    reasoning, refusals, odd types), which the general path decodes or rejects. It must give
    exactly what the general path gives (property-tested)."""
    if type(body) is not dict:
        return None
    choices = body.get("choices")
    if type(choices) is not list or not choices or type(choices[0]) is not dict:
        return None
    choice = choices[0]
    message = choice.get("message")
    if type(message) is not dict:
        return None
    content = message.get("content")
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    refusal, calls = message.get("refusal"), message.get("tool_calls")
    if (content is not None and type(content) is not str) or (isinstance(reasoning, str) and reasoning) \
            or (isinstance(refusal, str) and refusal) or (calls is not None and calls != []):
        return None
    id_, model, created = body.get("id"), body.get("model"), body.get("created")
    if (id_ is not None and type(id_) is not str) or (model is not None and type(model) is not str) \
            or (created is not None and type(created) is not int):
        return None
    return ChatResponse(id=id_ or "", model=model or "", parts=[TextPart(content)] if content else [],
                        finish_reason=_FINISH_IN.get(str(choice.get("finish_reason")), "stop"),
                        usage=decode_usage(body.get("usage")) or Usage(), created=created or 0)


def decode_response(body: Any) -> ChatResponse:
    """Backend reply -> ChatResponse (a malformed body is a CodecError; the connector makes it a 502)."""
    simple = _decode_simple_response(body)
    if simple is not None:
        return simple
    return _decode_general_response(body)


def _decode_general_response(body: Any) -> ChatResponse:
    try:
        body = expect_object(body, "body")
        choices = get_list(body, "choices")
        choice = expect_object(choices[0], "choices[0]") if choices else {}
        message = get_obj(choice, "message", "choices[0]") or {}
        parts: list[Part] = []
        reasoning = message.get("reasoning_content") or message.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            parts.append(ThinkingPart(reasoning))
        for part in _decode_parts(message.get("content"), "assistant", "choices[0].message.content"):
            if not isinstance(part, TextPart) or part.text:
                parts.append(part)
        if isinstance(message.get("refusal"), str) and message["refusal"]:
            parts.append(TextPart(message["refusal"]))
        for k, call in enumerate(get_list(message, "tool_calls", "choices[0].message")):
            parts.append(_decode_tool_call(call, f"choices[0].message.tool_calls[{k}]"))
        finish = _FINISH_IN.get(str(choice.get("finish_reason")), "stop")
        if finish == "stop" and any(isinstance(p, ToolCallPart) for p in parts):
            finish = "tool_calls"  # some compatible servers say "stop" after tool calls
        return ChatResponse(id=get_str(body, "id") or "", model=get_str(body, "model") or "",
                            parts=parts, finish_reason=finish, usage=decode_usage(body.get("usage")) or Usage(),
                            created=get_int(body, "created") or 0)
    except CodecError as err:
        raise _backend_error(err) from None


def encode_response(resp: ChatResponse) -> dict[str, Any]:
    parts = resp.parts
    if len(parts) == 1 and type(parts[0]) is TextPart:  # a plain text reply: most replies
        text, calls = parts[0].text, []
    else:
        text, calls = resp.text(), [_encode_reply_call(p) for p in resp.tool_calls()]
    # ``refusal`` is required (nullable) by OpenAI's API description: a refusal the backend gave
    # is decoded into text, so the proxy never has one of its own to report.
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None,
                               "refusal": None}
    thinking = "".join(p.text for p in parts if isinstance(p, ThinkingPart))
    if thinking:
        message["reasoning_content"] = thinking
    if calls:
        message["tool_calls"] = calls
    return {
        "id": resp.id, "object": "chat.completion", "created": resp.created or _now(),
        "model": resp.model,
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": _FINISH_OUT[resp.finish_reason]}],
        "usage": encode_usage(resp.usage),
    }


def encode_error(err: ErrorReport) -> dict[str, Any]:
    kind, code = _ERROR_OUT.get(err.kind, _ERROR_OUT["api_error"])
    return {"error": {"message": err.message, "type": kind, "param": err.param, "code": code}}


def _error_kind(error: Any) -> str:
    """Best-effort kind from an OpenAI error object (backends, mid-stream errors)."""
    if not isinstance(error, dict):
        return "api_error"
    code, kind = str(error.get("code") or ""), str(error.get("type") or "")
    for name, (t, c) in _ERROR_OUT.items():
        if c and c == code:
            return name
    return {"invalid_request_error": "invalid_request", "rate_limit_error": "rate_limit"}.get(kind, "api_error")


# --- streams ------------------------------------------------------------------------------------

def encoder_options(body: Any) -> dict[str, Any]:
    """Keyword arguments for :class:`StreamEncoder` from the request body: ``include_usage``.

    OpenAI sends the final usage chunk (empty ``choices``) only when asked with
    ``stream_options.include_usage``: clients that did not ask may read ``chunk.choices[0]`` of
    every chunk. The HTTP edge calls this for every front end; it knows nothing of the option.
    """
    options = body.get("stream_options") if isinstance(body, dict) else None
    if options is None:
        return {"include_usage": False}
    if not isinstance(options, dict) or not isinstance(options.get("include_usage", False), bool):
        fail("stream_options", 'expected an object like {"include_usage": true}')
    return {"include_usage": bool(options.get("include_usage"))}


_TEXT_CHUNK_END = b'},"logprobs":null,"finish_reason":null}]}\n\n'
_TEXT_CHUNK_END_USAGE = b'},"logprobs":null,"finish_reason":null}],"usage":null}\n\n'


class StreamEncoder:
    """Canonical events -> ``chat.completion.chunk`` SSE frames.

    ``include_usage=False`` leaves out the final usage chunk (empty ``choices``) for clients that did
    not ask for it with ``stream_options.include_usage`` and may index ``choices[0]`` blindly. With
    it, every chunk before that one carries ``"usage": null``, as OpenAI's API description says.
    """

    def __init__(self, include_usage: bool = True) -> None:
        self._id, self._model, self._created = new_id("chatcmpl-"), "", 0
        self._include_usage = include_usage
        self._custom: set[int] = set()  # indexes of custom (freeform) calls: their deltas are raw input
        self._text_prefix: bytes | None = None

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        chunk = {
            "id": self._id, "object": "chat.completion.chunk", "created": self._created,
            "model": self._model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if self._include_usage:
            chunk["usage"] = None
        return sse.frame(chunk)

    def _text_chunk(self, text: str) -> bytes:
        """``_chunk({"content": text})``, with only the text encoded per event.

        Speed trick (one place; ``tests/wire/test_openai_stream_text.py`` checks it gives the bytes of
        ``_chunk``): text deltas are nearly every event of a stream, and everything of their chunk
        but the text is the same for the whole stream, so it is encoded once, at the first text
        delta, instead of building and encoding the chunk's dict per event.
        """
        prefix = self._text_prefix
        if prefix is None:
            prefix = self._text_prefix = (
                b'data: {"id":' + fastjson.dumps(self._id) + b',"object":"chat.completion.chunk","created":'
                + fastjson.dumps(self._created) + b',"model":' + fastjson.dumps(self._model)
                + b',"choices":[{"index":0,"delta":{"content":')
        return prefix + fastjson.dumps(text) + (_TEXT_CHUNK_END_USAGE if self._include_usage else _TEXT_CHUNK_END)

    def encode(self, event: StreamEvent) -> bytes:
        if type(event) is TextDelta:
            return self._text_chunk(event.text) if event.text else b""
        if isinstance(event, StreamStart):
            self._id, self._model = event.id or self._id, event.model
            self._created = event.created or _now()
            self._text_prefix = None
            return self._chunk({"role": "assistant", "content": ""})
        if isinstance(event, ToolCallStart):
            if event.custom:
                self._custom.add(event.index)
                call = {"index": event.index, "id": event.id, "type": "custom",
                        "custom": {"name": event.name, "input": ""}}
            else:
                call = {"index": event.index, "id": event.id, "type": "function",
                        "function": {"name": event.name, "arguments": ""}}
            return self._chunk({"tool_calls": [call]})
        if isinstance(event, ToolCallDelta):
            if not event.arguments:
                return b""
            if event.index in self._custom:
                return self._chunk({"tool_calls": [{"index": event.index, "custom": {"input": event.arguments}}]})
            call = {"index": event.index, "function": {"arguments": event.arguments}}
            return self._chunk({"tool_calls": [call]})
        if isinstance(event, StreamEnd):
            out = self._chunk({}, _FINISH_OUT[event.finish_reason])
            if event.usage is not None and self._include_usage:
                out += sse.frame({"id": self._id, "object": "chat.completion.chunk",
                                  "created": self._created, "model": self._model, "choices": [],
                                  "usage": encode_usage(event.usage)})
            return out + sse.frame("[DONE]")
        if isinstance(event, StreamError):
            error = encode_error(WireError(500, event.message, event.kind))
            return sse.frame(error) + sse.frame("[DONE]")
        if isinstance(event, ThinkingDelta) and event.text:
            return self._chunk({"reasoning_content": event.text})
        return b""


class StreamDecoder:
    """``chat.completion.chunk`` data objects -> canonical events. Call ``finish()`` on ``[DONE]``."""

    def __init__(self) -> None:
        self._started = self._ended = False
        self._finish: FinishReason | None = None
        self._usage: Usage | None = None
        self._tools: set[int] = set()

    def feed(self, data: Any) -> list[StreamEvent]:
        if self._ended or not isinstance(data, dict):
            return []
        if "error" in data and not data.get("choices"):
            self._ended = True
            error = data["error"] if isinstance(data["error"], dict) else {"message": str(data["error"])}
            return [StreamError(str(error.get("message") or "backend error"), _error_kind(error))]
        events: list[StreamEvent] = []
        if not self._started:
            self._started = True
            events.append(StreamStart(id=str(data.get("id") or ""), model=str(data.get("model") or ""),
                                      created=lenient_int(data.get("created"))))
        usage = decode_usage(data.get("usage"))
        if usage is not None:
            self._usage = usage
        choices = data.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            events.extend(self._choice(choices[0]))
        if self._finish is not None and usage is not None:
            events.extend(self.finish())
        return events

    def _choice(self, choice: dict[str, Any]) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            events.append(ThinkingDelta(reasoning))
        if isinstance(delta.get("content"), str) and delta["content"]:
            events.append(TextDelta(delta["content"]))
        calls = delta.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            if isinstance(call, dict):
                events.extend(self._tool_call(call))
        if choice.get("finish_reason"):
            self._finish = _FINISH_IN.get(str(choice["finish_reason"]), "stop")
        return events

    def _tool_call(self, call: dict[str, Any]) -> list[StreamEvent]:
        index = lenient_int(call.get("index")) if "index" in call else len(self._tools)
        custom = isinstance(call.get("custom"), dict)
        fn = call.get("custom" if custom else "function")
        fn = fn if isinstance(fn, dict) else {}
        events: list[StreamEvent] = []
        if index not in self._tools:
            self._tools.add(index)
            events.append(ToolCallStart(index, str(call.get("id") or new_id("call_")), str(fn.get("name") or ""),
                                        custom))
        args = fn.get("input" if custom else "arguments")
        if isinstance(args, str) and args:
            events.append(ToolCallDelta(index, args))
        return events

    def finish(self) -> list[StreamEvent]:
        """End of the backend stream (``[DONE]`` or EOF): the final StreamEnd if not yet sent."""
        if self._ended:
            return []
        self._ended = True
        events: list[StreamEvent] = [] if self._started else [StreamStart(id="", model="")]
        finish = self._finish or "stop"
        if finish == "stop" and self._tools:
            finish = "tool_calls"
        return events + [StreamEnd(finish, self._usage)]
